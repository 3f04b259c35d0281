"""Every method on BANKING77 intent classification with an encoder, and QLoRA's memory against LoRA.

    python bench/methods_banking77.py [--data ../shared/data/banking77] [--train-size 3000] [--steps 150]
    python bench/methods_banking77.py --part qlora      # just the gemma3-270m memory comparison
    python bench/methods_banking77.py --part encoders   # just the BANKING77 table

Part 1 runs each method that fits an encoder on `minilm-l6` (a fresh run store, nothing reused) and
prints accuracy, macro-F1, trainable share, train seconds, end-to-end seconds and peak memory. Part 2
trains `lora` and `qlora` on `gemma3-270m` for a few steps and compares their peak memory during
training, both as the process's peak RSS and as what the run added above the process's resident size
before the model was loaded. Ratios are computed from figures measured in the same invocation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
ENCODER_METHODS = ["probe", "partial", "full", "lora", "dora", "ia3", "adapter", "prefix", "prompt", "qlora"]


def run(spec: dict) -> list[dict]:
    from tunebench.config import parse_spec
    from tunebench.runs.runner import run_experiment

    return run_experiment(parse_spec(spec, source="bench"), force=True)


def part1(args: argparse.Namespace, out: str) -> None:
    task = {
        "name": "file",
        "path": str(Path(args.data) / "train.csv"),
        "test_path": str(Path(args.data) / "test.csv"),
        "input": "text",
        "target": "category",
        "train_size": args.train_size,
        "test_size": args.test_size,
        "dev_size": 200,
        "seed": 0,
    }
    methods = [
        {"name": "probe"},
        {"name": "partial", "blocks": 2, "lr": 1e-3},
        {"name": "full", "lr": 1e-4},
        {"name": "lora", "lr": 2e-3},
        {"name": "dora", "lr": 2e-3},
        {"name": "ia3", "lr": 1e-2},
        {"name": "adapter", "lr": 2e-3},
        {"name": "prefix", "lr": 1e-2},
        {"name": "prompt", "lr": 1e-2},
        {"name": "qlora", "lr": 2e-3},
    ]
    spec = {
        "name": "banking77",
        "models": ["minilm-l6"],
        "task": task,
        "methods": methods,
        "seeds": [0],
        "out": out,
        "budget": {"steps": args.steps, "batch_size": 32, "max_length": 64, "eval_batch_size": 128},
    }
    results = run(spec)
    print(
        f"\nBANKING77 ({args.train_size} train / {args.test_size} test examples, 77 intents), minilm-l6, "
        f"{args.steps} steps × 32"
    )
    print(
        f"{'method':<9} {'status':<7} {'accuracy':>8} {'macro-F1':>8} {'trainable':>10} {'train s':>8} "
        f"{'total s':>8} {'peak MB':>8}"
    )
    seconds = {}
    for r in results:
        if r["status"] != "ok":
            print(f"{r['method']:<9} failed  {r['error']}")
            continue
        train, ev = r["train"] or {}, r["eval"]
        seconds[r["method"]] = r["wall_seconds"]
        peak = max(train.get("peak_rss_mb") or 0, ev["peak_rss_mb"] or 0)
        print(
            f"{r['method']:<9} {'ok':<7} {r['metrics']['accuracy']:>8.1%} {r['metrics']['macro_f1']:>8.3f} "
            f"{r['params']['trainable_pct']:>9.2f}% {train.get('seconds', 0):>8.1f} {r['wall_seconds']:>8.1f} "
            f"{peak:>8.0f}"
        )
    if "probe" in seconds and "full" in seconds:
        print(
            f"full / probe end-to-end time: {seconds['full'] / seconds['probe']:.1f}× "
            "(probe features cached from an earlier run are reused; the first run computes them)"
        )


def part2(args: argparse.Namespace, out: str) -> None:
    import peft  # noqa: F401  - libraries imported before any baseline is read, so both methods pay them alike
    import psutil
    import transformers  # noqa: F401

    import tunebench.runs.runner  # noqa: F401

    task = {"name": "arithmetic", "digits": 3, "train_size": 256, "dev_size": 8, "test_size": 16}
    rows = []
    for method in ("lora", "qlora"):
        before = psutil.Process().memory_info().rss / 2**20
        spec = {
            "name": f"qlora-memory-{method}",
            "models": ["gemma3-270m"],
            "task": task,
            "out": out,
            "seeds": [0],
            "methods": [{"name": method, "lr": 1e-3}],
            "budget": {"steps": args.qlora_steps, "batch_size": 8, "max_length": 32, "eval_batch_size": 16},
        }
        start = time.perf_counter()
        (r,) = run(spec)
        if r["status"] != "ok":
            print(f"{method}: failed: {r['error']}")
            return
        rows.append(
            (
                method,
                r["train"]["peak_rss_mb"],
                r["train"]["peak_rss_mb"] - before,
                r["train"]["seconds"],
                time.perf_counter() - start,
            )
        )
    print(f"\ngemma3-270m, {args.qlora_steps} training steps × 8, peak memory during training")
    print(f"{'method':<7} {'peak RSS MB':>12} {'added MB':>9} {'train s':>8}")
    for method, peak, added, secs, _ in rows:
        print(f"{method:<7} {peak:>12.0f} {added:>9.0f} {secs:>8.1f}")
    (_, lora_peak, lora_added, *_), (_, q_peak, q_added, *_) = rows
    print(
        f"qlora / lora: peak RSS {q_peak / lora_peak:.2f}, memory added by the run {q_added / lora_added:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77")
    )
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--qlora-steps", type=int, default=10)
    parser.add_argument("--part", choices=["all", "encoders", "qlora"], default="all")
    args = parser.parse_args()

    from tunebench.cli.main import quiet_libraries

    quiet_libraries()
    out = tempfile.mkdtemp(prefix="tunebench-bench-")
    if args.part in ("all", "encoders"):
        part1(args, out)
    if args.part in ("all", "qlora"):
        part2(args, out)


if __name__ == "__main__":
    main()
