"""Accelerators: memory and peak dense throughput of common GPUs, and a custom spec for anything else.

Throughputs are the vendors' dense (no 2:4 sparsity) tensor-core figures for bf16 (fp16 where the card
has no bf16) and the plain fp32 figure (no TF32), from the data sheets. Memory is the marketed size,
taken in GiB (an A100-80GB reports 81920 MiB). Time estimates multiply the peak by a model FLOPs
utilisation (MFU); 0.4 is typical of a well-tuned single-GPU fine-tune, and `--mfu` changes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psutil

from tunebench.core.errors import SpecError, UnknownNameError, did_you_mean

#: CUDA context, cuBLAS workspaces and kernels: memory the allocator's own counters never see.
CUDA_OVERHEAD_GIB = 0.5
_GIB = 2**30
_MB = 2**20
#: The process baseline measured on the 2-core development machine (torch 2.13 CPU, transformers 5.23,
#: PEFT 0.21): peak RSS while training tiny-llama through `tunebench compare` (see calibrate.py).
#: Used when no live measurement is at hand (the fast test, `cpu_device()` without an argument).
CPU_BASELINE_MB = 504.0
#: `measure_slack()` on the same machine: SmolLM2-135M, LoRA r=16, batch 8 × 16 tokens (269 MB of anonymous
#: memory for 154 MB of saved tensors).
CPU_DYNAMIC_SLACK = 1.74


@dataclass(frozen=True)
class Device:
    name: str
    memory_gib: float
    bf16_tflops: float | None
    """Dense 16-bit tensor-core peak (None: unknown, so no time estimate)."""
    fp32_tflops: float | None
    overhead_gib: float = CUDA_OVERHEAD_GIB
    """Memory the runtime takes before any tensor (CUDA context; the process baseline on a CPU)."""
    dynamic_slack: float = 1.0
    """What the measured peak holds per byte of a step's live temporaries (activations, logits, buffers):
    1.0 for torch's allocator counters on a GPU; above 1 where freed temporaries stay resident (glibc)."""
    note: str = ""

    def tflops(self, sixteen_bit: bool) -> float | None:
        return self.bf16_tflops if sixteen_bit else self.fp32_tflops


def _d(name: str, mem: float, bf16: float, fp32: float, note: str = "") -> Device:
    return Device(name, mem, bf16, fp32, note=note)


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        _d("H200", 141, 989, 67, "SXM"),
        _d("H100-80GB", 80, 989, 67, "SXM"),
        _d("H100-PCIe", 80, 756, 51),
        _d("A100-80GB", 80, 312, 19.5),
        _d("A100-40GB", 40, 312, 19.5),
        _d("L40S", 48, 362, 91.6),
        _d("A6000", 48, 154.8, 38.7, "RTX A6000, the 48 GB card of the QLoRA paper"),
        _d("A10", 24, 125, 31.2),
        _d("L4", 24, 121, 30.3),
        _d("RTX-4090", 24, 165.2, 82.6, "fp16 with fp32 accumulation"),
        _d("RTX-3090", 24, 71, 35.6, "fp16 with fp32 accumulation"),
        _d("V100-32GB", 32, 125, 15.7, "fp16 (no bf16)"),
        _d("V100-16GB", 16, 125, 15.7, "fp16 (no bf16)"),
        _d("T4", 16, 65, 8.1, "fp16 (no bf16)"),
        _d("MI300X", 192, 1307.4, 163.4),
        _d("MI250X", 128, 383, 47.9),
    )
}
ALIASES = {
    "h100": "H100-80GB",
    "a100": "A100-80GB",
    "4090": "RTX-4090",
    "3090": "RTX-3090",
    "v100": "V100-32GB",
    "rtx-a6000": "A6000",
    "a6000-48gb": "A6000",
    "h200-141gb": "H200",
}

_MEM_UNITS = {"mb": 2**-10, "mib": 2**-10, "gb": 1.0, "gib": 1.0, "tb": 2**10, "tib": 2**10}
_FLOP_UNITS = {"gflops": 1e-3, "tflops": 1.0, "pflops": 1e3}


def resolve_device(spec: str, *, flag: str = "--device") -> Device:
    """A name from the table (case-insensitive) or `custom:MEMORY:THROUGHPUT[:FP32_THROUGHPUT]`."""
    if spec.lower().startswith("custom:"):
        return parse_custom(spec, flag)
    by_lower = {name.lower(): d for name, d in DEVICES.items()}
    key = ALIASES.get(spec.lower(), spec.lower())
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    close = did_you_mean(spec.upper(), DEVICES) or did_you_mean(spec.lower(), ALIASES)
    raise UnknownNameError(
        f"{flag} {spec!r}: unknown device.{close} Known devices: {', '.join(DEVICES)}; or a custom spec "
        "such as custom:80GB:312TFLOPS (memory, peak 16-bit throughput, optionally an fp32 throughput)"
    )


def parse_custom(spec: str, flag: str = "--device") -> Device:
    parts = spec.split(":")[1:]
    if len(parts) not in (2, 3):
        raise SpecError(
            f"{flag} {spec!r}: expected custom:MEMORY:THROUGHPUT[:FP32_THROUGHPUT], e.g. custom:80GB:312TFLOPS"
        )
    memory = _quantity(parts[0], _MEM_UNITS, f"{flag} {spec!r}: memory", "80GB")
    peak = _quantity(parts[1], _FLOP_UNITS, f"{flag} {spec!r}: throughput", "312TFLOPS")
    fp32 = (
        _quantity(parts[2], _FLOP_UNITS, f"{flag} {spec!r}: fp32 throughput", "19.5TFLOPS")
        if len(parts) == 3
        else peak
    )
    return Device(spec, memory, peak, fp32, note="custom")


def _quantity(text: str, units: dict[str, float], where: str, example: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]+)\s*", text)
    if not match or match.group(2).lower() not in units:
        raise SpecError(
            f"{where} {text!r}: expected a number and a unit ({', '.join(units)}), e.g. {example}"
        )
    value = float(match.group(1)) * units[match.group(2).lower()]
    if value <= 0:
        raise SpecError(f"{where} {text!r}: must be positive")
    return value


def cpu_device(baseline_mb: float = CPU_BASELINE_MB, slack: float = CPU_DYNAMIC_SLACK) -> Device:
    """This machine as a device: its RAM, the process baseline as overhead, glibc's slack, no throughput."""
    return Device(
        "cpu (this machine)",
        psutil.virtual_memory().total / _GIB,
        None,
        None,
        overhead_gib=baseline_mb * _MB / _GIB,
        dynamic_slack=slack,
        note="process baseline as overhead",
    )
