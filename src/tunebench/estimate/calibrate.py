"""Calibration: the memory model beside tunebench's own measured peaks, on this machine.

    python -m tunebench.estimate.calibrate [--model smollm2-135m] [--methods lora,full] [--steps 3]

runs a short comparison through the runner, as `tunebench compare` would (tiny-llama first, then the real model), estimates
each run as it ran (`from_result.estimate_run`: same shapes, options, batch, measured tokens per example,
fp32 on a CPU without bf16 matrix units) and prints estimate beside measurement as a Markdown table.

What is measured: `train.peak_rss_mb`, the peak resident set of the run's process while training, sampled
every 20 ms. Every run has a process of its own (`ProcessExecutor`, forked from the same preloaded
server), so a peak does not depend on the runs before it. On a CPU it includes the process itself: the
interpreter, torch, transformers and PEFT with their kernels and caches, the tokenizer, the data. The
model treats it as the device's `overhead`, and it is measured, not guessed: the peak resident set of
training `tiny-llama` (2 blocks, 32 wide: its weights, gradients, Adam states and activations are under
1 MB) through the same runner, in a process started the same way. What remains of a real run's peak is what the cost
model predicts, with one more measured property of the CPU: glibc keeps much of what a forward pass frees
resident (its arenas are not trimmed mid-step), so the resident peak holds more than the live tensors.
`measure_slack` measures that multiple: the anonymous memory (weights are file-backed and excluded) that
a LoRA training forward pass of the real model adds, over the bytes of the tensors autograd keeps for the
backward pass (found with saved-tensor hooks).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import weakref
from pathlib import Path
from typing import Any

from tunebench.config import default_spec_path, keep_methods, load_yaml, parse_spec
from tunebench.estimate.devices import CPU_DYNAMIC_SLACK, cpu_device
from tunebench.estimate.from_result import estimate_run
from tunebench.methods import METHODS
from tunebench.models import resolve_model
from tunebench.models.load import load_causal_lm
from tunebench.runs.executors import ProcessExecutor
from tunebench.runs.runner import run_experiment
from tunebench.train.data import Batch
from tunebench.train.loss import target_loss
from tunebench.train.memory import release_memory

MB = 2**20
BASELINE_MODEL = "tiny-llama"


def _anonymous_mb() -> float:
    """Anonymous resident memory of this process (heap and mmap'd buffers; not file-backed weights)."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) / 1024
    raise OSError("no Anonymous line in /proc/self/smaps_rollup")


def measure_slack(
    model: str = "smollm2-135m", batch: int = 8, seq: int = 16, steps: int = 2
) -> dict[str, float]:
    """Anonymous memory a LoRA training forward pass adds, over the bytes autograd keeps alive after it
    (the highest ratio over `steps` forward passes, each from a trimmed heap). Linux only."""

    import torch  # lazy: slow import
    from peft import (  # lazy: slow import
        LoraConfig,
        get_peft_model,
    )

    lm = load_causal_lm(resolve_model(model), torch.device("cpu")).requires_grad_(False)
    lm = get_peft_model(
        lm, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    lm.train()
    torch.manual_seed(0)
    ids = torch.randint(0, lm.config.vocab_size, (batch, seq))  # (B, T)
    labels = ids.masked_fill(torch.arange(seq) < seq - 4, -100)  # the last 4 positions are targets
    params = {p.untyped_storage().data_ptr() for p in lm.parameters()}
    kept: dict[int, tuple[weakref.ref, int]] = {}  # storage → (a tensor on it, its bytes)

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            kept[ptr] = (weakref.ref(t), t.untyped_storage().nbytes())
        return t

    best = {"slack": 0.0}
    for _ in range(steps):
        kept.clear()
        release_memory()
        before = _anonymous_mb()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = target_loss(lm, Batch(ids, torch.ones_like(ids), labels))
        grown = _anonymous_mb() - before
        saved = sum(n for ref, n in kept.values() if ref() is not None) / MB
        if grown / saved > best["slack"]:
            best = {"slack": grown / saved, "anonymous_mb": grown, "saved_mb": saved}
        loss.backward()
        lm.zero_grad(set_to_none=True)
        del loss
    return best


def baseline_mb(results: list[dict[str, Any]]) -> float:
    """The process baseline: the highest training peak of the tiny baseline model's runs."""
    peaks = [
        r["train"]["peak_rss_mb"]
        for r in results
        if r.get("model") == BASELINE_MODEL and r.get("status") == "ok" and r.get("train")
    ]
    if not peaks:
        raise ValueError(f"no finished {BASELINE_MODEL} training run to take the process baseline from")
    return max(peaks)


def calibration_rows(
    results: list[dict[str, Any]], baseline: float, slack: float = CPU_DYNAMIC_SLACK
) -> list[dict[str, Any]]:
    """Estimate beside measurement for every finished training run of a real (non-baseline) model."""
    device = cpu_device(baseline, slack)
    rows = []
    for r in results:
        if r.get("model") == BASELINE_MODEL or r.get("status") != "ok" or not r.get("train"):
            continue
        if r["method"] not in METHODS:  # an objective's phases are not modelled
            continue
        e = estimate_run(r, device)
        measured = r["train"]["peak_rss_mb"]
        rows.append({
            "model": r["model"], "method": r["method"], "estimate_mb": e.peak / MB, "measured_mb": measured,
            "error": (e.peak / MB - measured) / measured,
            "achieved_gflops": e.flops_per_token * r["train"]["tokens_per_s"] / 1e9, "batch": e.setting["batch"],
            "seq_len": e.setting["seq_len"], "precision": e.setting["precision"],
            "components_mb": {k: v / MB for k, v in e.memory.items() if not k.endswith("_ckpt")},
        })  # fmt: skip
    return rows


def trained_methods() -> list[str]:
    """Registered methods that train: what calibration can compare."""
    return [m for m, cls in METHODS.items() if cls.trains]


def measure(
    out: Path, model: str, methods: list[str], steps: int = 3, batch: int = 8
) -> list[dict[str, Any]]:
    """Run the short comparison (baseline model first) and return every result record.

    In fp32: the memory model was calibrated on fp32 runs, and `precision: auto` turns bf16 autocast on
    where the CPU has AMX, whose cached bf16 copies of the weights it does not model (on such a CPU, in
    auto precision and with another job beside it, the adapter's measured peak was 26% above its estimate;
    in fp32 every method is within 25%)."""
    data = load_yaml(default_spec_path())
    data.update(
        name="calibration",
        models=[BASELINE_MODEL, model],
        methods=keep_methods(data, methods),
        task={**data["task"], "train_size": max(48, 2 * batch), "test_size": 8, "dev_size": 4},
        budget={**data["budget"], "steps": steps, "batch_size": batch, "precision": "fp32"},
        out=str(out),
    )
    # Each run in a process of its own: its peak is then its own, not what the runs before it left resident
    # (in one shared process a probe measured 625 MB first and 1,950 MB after three trained runs, FINDINGS §7a).
    run_experiment(parse_spec(data, source="calibration"), force=True, executor=ProcessExecutor())
    return [json.loads(p.read_text()) for p in sorted((out / "calibration").glob("*/result.json"))]


def markdown(rows: list[dict[str, Any]], baseline: float, slack: dict[str, float]) -> str:
    lines = [f"Process baseline (peak RSS training {BASELINE_MODEL}): {baseline:.0f} MB. Allocator slack: a "
             f"LoRA forward pass grew anonymous memory by {slack['anonymous_mb']:.0f} MB for "
             f"{slack['saved_mb']:.0f} MB of tensors kept for backward (× {slack['slack']:.2f}).", "",
             "| model | method | batch × tokens | estimate MB | measured MB | error | weights | grads | "
             "optimizer | activations | logits | allocator | achieved GFLOP/s |", "|" + "---|" * 13]  # fmt: skip
    for r in rows:
        c = r["components_mb"]
        lines.append(
            f"| {r['model']} | {r['method']} | {r['batch']} × {r['seq_len']} | {r['estimate_mb']:.0f} | "
            f"{r['measured_mb']:.0f} | {100 * r['error']:+.1f}% | {c['weights']:.0f} | {c['gradients']:.0f} | "
            f"{c['optimizer']:.0f} | {c['activations']:.0f} | {c['logits']:.0f} | {c['allocator']:.0f} | "
            f"{r['achieved_gflops']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", help="comma-separated (default: every registered method that trains)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", help="run store (default: a temporary folder)")
    args = parser.parse_args(argv)
    methods = args.methods.split(",") if args.methods else trained_methods()
    out = Path(args.out or tempfile.mkdtemp(prefix="tunebench-calibrate-"))
    results = measure(out, args.model, methods, args.steps, args.batch)
    base = baseline_mb(results)
    slack = measure_slack(args.model)  # after the runs, so its model does not sit in their baseline
    print(markdown(calibration_rows(results, base, slack["slack"]), base, slack))


if __name__ == "__main__":
    main()
