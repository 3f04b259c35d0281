"""What a training checkpoint costs: seconds and bytes per checkpoint against seconds per step.

    python bench/checkpoint_cost.py [MODEL:METHOD ...]     (default: tiny-llama and smollm2-135m, lora and full)

For each pair, prepares the method, trains a few steps of 3-digit addition (batch 8) with a checkpoint after
every step but the last, and prints the mean step time, the mean time to write one checkpoint, and its
size on disk. `budget.checkpoint_every` (default 50) is chosen from these figures: the overhead is
checkpoint seconds / (every × step seconds). Needs the packaged models prepared (no network).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")

STEPS = 4


def measure(model_name: str, method_name: str) -> dict:
    import torch

    from tunebench.core.store import dir_bytes
    from tunebench.methods import METHODS, Context
    from tunebench.models import resolve_model
    from tunebench.tasks import build_task
    from tunebench.train.budget import Budget
    from tunebench.train.checkpoint import Checkpointer

    task = build_task("arithmetic", {"train_size": 64, "dev_size": 4, "test_size": 4})
    budget = Budget(steps=STEPS, batch_size=8, max_length=64)
    ctx = Context(
        model=resolve_model(model_name),
        task=task,
        splits=task.splits(),
        budget=budget,
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )
    with tempfile.TemporaryDirectory() as folder:
        ctx.checkpoint = Checkpointer(Path(folder) / "checkpoint", every=1, tag="bench")
        method = METHODS.get(method_name)()
        method.prepare(ctx)
        stats = method.fit(ctx)
        size = dir_bytes(Path(folder) / "checkpoint")
    return {
        "pair": f"{model_name} {method_name}",
        "trainable": sum(p.numel() for p in method.model.parameters() if p.requires_grad),
        "step_s": stats.seconds / stats.steps,
        "checkpoint_s": stats.checkpoint_seconds / stats.checkpoints,
        "checkpoint_mb": size / 2**20,
    }


def main() -> int:
    pairs = sys.argv[1:] or ["tiny-llama:lora", "tiny-llama:full", "smollm2-135m:lora", "smollm2-135m:full"]
    print(f"{'model method':<22} {'trainable':>12} {'step s':>8} {'ckpt s':>8} {'ckpt MB':>9} {'% at 50':>8}")
    for pair in pairs:
        r = measure(*pair.split(":"))
        overhead = 100 * r["checkpoint_s"] / (50 * r["step_s"])
        print(
            f"{r['pair']:<22} {r['trainable']:>12,} {r['step_s']:>8.3f} {r['checkpoint_s']:>8.3f} "
            f"{r['checkpoint_mb']:>9.1f} {overhead:>7.2f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
