"""Training levers measured one at a time on tunebench's own loop: seconds per optimizer step.

    python bench/levers.py [--methods lora,full] [--steps 12] [--warmup 4] [--levers fp32,bf16,compile]

`smollm2-135m`, 3-digit addition, batch 32 (the default experiment's), through the method's prepare → fit.
Each lever trains `warmup + steps` steps from the same start; the figure is the median time of the last
`steps` steps (the first ones pay one-off costs: allocator growth, and with torch.compile the compilation,
which is printed apart). Levers:

  fp32     the default on a CPU without AMX
  bf16     bf16 autocast (the budget's precision: bf16)
  compile  fp32, each decoder block compiled with torch.compile(dynamic=True) (dynamic padding changes
           the sequence length from batch to batch, so a static compile would recompile per length)

All levers run in one process one after another, so the ratios are measured under the same load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch

LORA = {"r": 16, "alpha": 32.0}
LEARNING_RATES = {"lora": 2e-3, "full": 1e-4}


def step_times(method_name: str, lever: str, task, splits, args) -> tuple[list[float], float]:
    """(seconds of each step, seconds from fit's start to the end of the first step)."""
    from tunebench.core.typed import build
    from tunebench.methods import METHODS
    from tunebench.methods.base import Context
    from tunebench.models import resolve_model
    from tunebench.train.budget import Budget
    from tunebench.train.device import pick_device

    cls = METHODS.get(method_name)
    budget = Budget(
        steps=args.warmup + args.steps,
        batch_size=32,
        max_length=64,
        lr=LEARNING_RATES[method_name],
        precision="bf16" if lever == "bf16" else "fp32",
    )
    stamps: list[float] = []
    device = pick_device()
    ctx = Context(
        model=resolve_model("smollm2-135m"),
        task=task,
        splits=splits,
        budget=budget,
        seed=0,
        device=device,
        bf16=lever == "bf16",
        on_train_step=lambda step, steps, loss: stamps.append(time.perf_counter()),
    )
    method = cls(build(cls.Options, LORA if method_name == "lora" else {}, method_name))
    method.prepare(ctx)
    if lever == "compile":
        for layer in _decoder_layers(method.model):
            layer.compile(dynamic=True)
    start = time.perf_counter()
    method.fit(ctx)
    times = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    return times, stamps[0] - start


def _decoder_layers(model) -> list[torch.nn.Module]:
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, torch.nn.ModuleList):
            return list(layers)
    raise SystemExit("no decoder layers found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--levers", default="fp32,bf16,compile")
    parser.add_argument("--steps", type=int, default=12, help="timed steps")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps first")
    args = parser.parse_args()

    from tunebench.cli.main import quiet_libraries
    from tunebench.tasks import build_task
    from tunebench.train.memory import release_memory

    quiet_libraries()
    task = build_task("arithmetic", {"op": "add", "digits": 3, "train_size": 2000, "test_size": 10})
    splits = task.splits()
    print(f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}")
    for method in args.methods.split(","):
        base = None
        for lever in args.levers.split(","):
            times, first = step_times(method, lever, task, splits, args)
            median = statistics.median(times[args.warmup :])
            base = base or median
            print(
                f"{method:<5} {lever:<8} {median:6.3f} s/step (median of {len(times) - args.warmup})  "
                f"{base / median:5.2f}x fp32's speed   first step {first:6.1f} s"
            )
            release_memory()


if __name__ == "__main__":
    main()
