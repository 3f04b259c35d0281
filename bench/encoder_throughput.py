"""Encoder training throughput: how close full fine-tuning of a small encoder comes to the machine's GEMM
peak, what binds it, and what the levers buy.

    python bench/encoder_throughput.py [--model minilm-l6] [--method full] [--steps 40] [--batch-size 32]
                                       [--levers random,grouped,grouped-bf16] [--profile]
                                       [--data ../shared/data/banking77/train.csv] [--input text]
                                       [--target category] [--train-size 3000]

Trains the method with a classification head on the file through tunebench's own loop (prepare → the
loop's `train`, as a run does), once per lever, each from the same freshly prepared model:

- `random`: batches of random examples (`budget.group_by_length: false`); dynamic padding pads each
  batch to its longest example.
- `grouped`: batches from transformers' length-grouped order (`group_by_length: true`, the default).
- `grouped-bf16`: the same under bf16 autocast (`precision: bf16`), for CPUs whose bf16 GEMM is the faster.

Per lever it prints the seconds per step, non-padding tokens/s, how many tokens were computed per useful
one (padding), the useful GFLOP/s and that rate as a share of the GEMM peak of the precision the lever
computes in (measured in the same run, bench/hardware_limit.py). FLOPs are counted as BENCHMARKS counts
them: 6 × the weights of the encoder's linear layers per non-padding token (forward, input and weight
gradients); the head, embeddings and attention scores are left out (under 3% here).

--profile also runs torch.profiler over a few steps of each lever and prints where the time goes, by kind
of operator (matrix products, dropout's random masks, the optimizer, the rest).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).parent))  # hardware_limit, when run from anywhere

import torch
from hardware_limit import cpu_name, gemm_peak

LEVERS = {
    "random": {"group_by_length": False, "precision": "fp32"},
    "grouped": {"group_by_length": True, "precision": "fp32"},
    "grouped-bf16": {"group_by_length": True, "precision": "bf16"},
}

#: torch.profiler operator names by what they do, for the breakdown.
KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product"),
    "dropout masks": ("aten::bernoulli_",),
    "optimizer": ("aten::_fused_adamw_", "aten::linalg_vector_norm", "aten::_foreach"),
    "copies and fills": ("aten::copy_", "aten::fill_", "aten::zero_", "aten::to", "aten::clone"),
}


def prepared(args, lever: dict):
    """A freshly prepared method, its context and training examples, for one lever."""
    from tunebench.core.typed import build
    from tunebench.methods import METHODS
    from tunebench.methods.base import Context
    from tunebench.models import resolve_model
    from tunebench.tasks import build_task
    from tunebench.train.budget import Budget
    from tunebench.train.device import pick_device, use_bf16

    task = build_task(
        "file",
        {
            "path": args.data,
            "input": args.input,
            "target": args.target,
            "train_size": args.train_size,
            "dev_size": 1,
            "test_size": 1,
            "seed": 0,
        },
    )
    cls = METHODS.get(args.method)
    budget = Budget(
        steps=args.steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        precision=lever["precision"],
        group_by_length=lever["group_by_length"],
        cache_frozen=False,
    ).with_recipe(cls.recipe)
    device = pick_device()
    ctx = Context(
        model=resolve_model(args.model),
        task=task,
        splits=task.splits(),
        budget=budget,
        seed=0,
        device=device,
        bf16=use_bf16(budget.precision, device),
    )
    method = cls(build(cls.Options, {"head": "classifier"}, args.method))
    method.prepare(ctx)
    return method, ctx


def linear_weights(model: torch.nn.Module) -> int:
    """Weights of the encoder's linear layers (not the classification head)."""
    return sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and "classifier" not in name and "score" not in name
    )


def measure(args, name: str, peaks: dict[str, float]) -> dict:
    from tunebench.train.loop import train

    method, ctx = prepared(args, LEVERS[name])
    examples, _ = method.head.encode(method, ctx)
    stats = train(
        method.model,
        method.head.loss_fn(method),
        examples,
        ctx.budget,
        seed=0,
        pad_id=method.tokenizer.pad_token_id,
        device=ctx.device,
        bf16=ctx.bf16,
        param_groups=method.param_groups(ctx),
    )
    n = linear_weights(method.model)
    useful = 6 * n * stats.tokens / stats.seconds
    peak = peaks["bf16" if ctx.bf16 else "fp32"]
    row = {
        "lever": name,
        "s_per_step": stats.seconds / stats.steps,
        "tokens_per_s": stats.tokens / stats.seconds,
        "padding": stats.padded_tokens / stats.tokens,
        "gflops": useful / 1e9,
        "mfu": useful / peak,
        "peak": "bf16" if ctx.bf16 else "fp32",
        "last_loss": stats.losses[-1],
        "linear_weights": n,
        "mean_length": stats.tokens / stats.examples,
    }
    if args.profile:
        row["profile"] = profile(method, ctx, examples)
    return row


def profile(method, ctx, examples, steps: int = 5) -> dict[str, float]:
    """Seconds per step by kind of operator, over `steps` more training steps."""
    from torch.profiler import profile as torch_profile

    from tunebench.train.data import batch_stream
    from tunebench.train.device import autocast
    from tunebench.train.loop import make_optimizer

    model, loss_fn = method.model.train(), method.head.loss_fn(method)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, ctx.budget.filled())
    stream = batch_stream(
        examples,
        ctx.budget.batch_size,
        1,
        method.tokenizer.pad_token_id,
        group_by_length=ctx.budget.group_by_length,
    )
    with torch_profile() as prof:
        start = time.perf_counter()
        for _ in range(steps):
            with autocast(ctx.device, ctx.bf16):
                loss = loss_fn(model, next(stream))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        wall = time.perf_counter() - start
    kinds = dict.fromkeys([*KINDS, "other operators"], 0.0)
    for event in prof.key_averages():
        kind = next((k for k, names in KINDS.items() if event.key.startswith(names)), "other operators")
        kinds[kind] += event.self_cpu_time_total / 1e6 / steps
    kinds["python and dispatch (wall − operators)"] = max(0.0, wall / steps - sum(kinds.values()))
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--method", default="full")
    parser.add_argument("--data", default="../shared/data/banking77/train.csv")
    parser.add_argument("--input", default="text")
    parser.add_argument("--target", default="category")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--levers", default="random,grouped,grouped-bf16")
    parser.add_argument("--profile", action="store_true", help="also break each lever's step time down")
    args = parser.parse_args()
    unknown = [x for x in args.levers.split(",") if x not in LEVERS]
    if unknown:
        raise SystemExit(f"--levers: unknown {unknown[0]!r}; known: {', '.join(LEVERS)}")

    from tunebench.cli.main import quiet_libraries

    quiet_libraries()
    device = torch.device("cpu")
    peaks = {"fp32": gemm_peak(torch.float32, device), "bf16": gemm_peak(torch.bfloat16, device)}
    print(
        f"CPU: {cpu_name()}, {torch.get_num_threads()} threads; torch {torch.__version__}; GEMM peak fp32 "
        f"{peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s"
    )
    print(
        f"{args.method} on {args.model}, classifier head, {args.train_size} examples of {args.data}, "
        f"{args.steps} steps x {args.batch_size}, max length {args.max_length}"
    )
    rows = [measure(args, name, peaks) for name in args.levers.split(",")]
    print(
        f"(linear weights {rows[0]['linear_weights'] / 1e6:.2f}M; mean example {rows[0]['mean_length']:.1f} "
        "tokens)"
    )
    print(
        "| lever | s/step | tokens/s (non-padding) | tokens computed per useful one | useful GFLOP/s | MFU | last loss |"
    )
    print("|---|---|---|---|---|---|---|")
    base = rows[0]["tokens_per_s"]
    for r in rows:
        print(
            f"| {r['lever']} | {r['s_per_step']:.3f} | {r['tokens_per_s']:.0f} ({r['tokens_per_s'] / base:.2f}x) | "
            f"{r['padding']:.2f} | {r['gflops']:.1f} | {r['mfu']:.1%} of the {r['peak']} peak | "
            f"{r['last_loss']:.3f} |"
        )
    if args.profile:
        kinds = list(rows[0]["profile"])
        print("\nseconds per step by kind of work (torch.profiler, 5 more steps):")
        print("| kind | " + " | ".join(r["lever"] for r in rows) + " |")
        print("|---|" + "---|" * len(rows))
        for kind in kinds:
            print(f"| {kind} | " + " | ".join(f"{r['profile'][kind]:.3f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
