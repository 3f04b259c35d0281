"""The machine's achievable matmul throughput, and the FLOPs a training step of a causal LM needs.

    python bench/hardware_limit.py [--device cpu|cuda] [--repeats 5]

Prints the best-of-N rate of large square GEMMs in fp32 and bf16 (and TF32 on CUDA). `train_vs_reference.py`
imports `gemm_peak` and `training_flops` to turn tokens/s into model-FLOPs utilisation (MFU).

FLOPs per token, counted for the work the loss needs (not the work an implementation happens to do):

- A linear layer with N weights costs 2·N FLOPs forward, 2·N for the gradient of its input and 2·N for the
  gradient of its weight. Full fine-tuning: 6·N per token.
- LoRA (frozen base, adapters with N_a weights): the base costs 2·N forward and 2·N for the input gradients
  (the earlier adapters need them) but no weight gradient; the adapters cost 6·N_a. Total 4·N + 6·N_a.
- N here is the weights of the transformer blocks' linear layers, applied at every non-padding token. The
  output head (vocabulary × hidden, tied to the embedding on SmolLM2) is counted only at target positions,
  the only ones whose logits the loss uses: 6·V·H there for full fine-tuning (its weight trains), 4·V·H for
  LoRA. The embedding lookup and the attention scores (4·T·d per layer and token, about 1% at T ≈ 17) are
  left out. Counting the head at every token instead (the usual 6 × all parameters) would credit an
  implementation for logits it need not compute.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cpu_name() -> str:
    """The CPU's model name, to quote figures with the machine they were measured on."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "?"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


def gemm_rate(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Best of `repeats` timings of one n×n @ n×n product, in FLOP/s."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    inner = 20 if device.type == "cuda" else 1  # a GPU product is too short to time alone
    a @ b  # first call picks kernels and allocates
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - start) / inner)
    return 2 * n**3 / best


def gemm_peak(dtype: torch.dtype, device: torch.device, repeats: int = 5, tf32: bool = False) -> float:
    """Best rate over a few large sizes, FLOP/s (the size that suits the BLAS best differs by machine)."""
    sizes = (2048, 4096, 8192) if device.type == "cuda" else (1024, 2048, 4096)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        return max(gemm_rate(n, dtype, device, repeats) for n in sizes)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


@dataclass(frozen=True)
class ModelShape:
    block_linear: int
    """Weights of the linear layers inside the transformer blocks."""
    head: int
    """Weights of the output head (vocabulary × hidden)."""


def model_shape(model: torch.nn.Module) -> ModelShape:
    """Counts from the model itself, looking through a PEFT wrapper and skipping LoRA's own layers."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = lm.get_output_embeddings()
    block = 0
    for name, module in lm.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) and module is not head
        if is_linear and "lora_" not in name:
            block += module.in_features * module.out_features
    return ModelShape(block_linear=block, head=head.in_features * head.out_features)


def training_flops(shape: ModelShape, tokens: int, target_tokens: int, adapter_params: int | None) -> float:
    """FLOPs a training run needs for `tokens` non-padding tokens of which `target_tokens` carry loss.

    `adapter_params` None means full fine-tuning; a number means LoRA with that many adapter weights.
    """
    if adapter_params is None:
        return 6 * shape.block_linear * tokens + 6 * shape.head * target_tokens
    return (4 * shape.block_linear + 6 * adapter_params) * tokens + 4 * shape.head * target_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"GEMM peak on {name} ({torch.get_num_threads()} threads), best of {args.repeats}:")
    print(f"  fp32: {gemm_peak(torch.float32, device, args.repeats) / 1e12:.3f} TFLOP/s")
    if device.type == "cuda":
        print(f"  tf32: {gemm_peak(torch.float32, device, args.repeats, tf32=True) / 1e12:.3f} TFLOP/s")
    print(f"  bf16: {gemm_peak(torch.bfloat16, device, args.repeats) / 1e12:.3f} TFLOP/s")


if __name__ == "__main__":
    main()
