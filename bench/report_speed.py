"""How long `tunebench report` takes on a full-size experiment: 10 methods × 3 seeds, 3,080 test items each
(Banking77's test split), written to a temporary folder as the run store writes them (result.json,
predictions.jsonl, log.jsonl), then read and reported as the CLI does: `make_report` (loading, the
two-level bootstraps, the paired tests) and the rendering of the terminal table, HTML, Markdown, CSV and
JSON. Target: under 2 s in all on a 2-core CPU.

    python bench/report_speed.py [--repeat 3] [--methods 10] [--seeds 3] [--items 3080]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from tunebench.core import store
from tunebench.report import make_report
from tunebench.report.formats import render
from tunebench.report.terminal import render as render_terminal

LABELS = [f"intent_{i}" for i in range(77)]


def result_record(method: str, seed: int, correct: np.ndarray, trains: bool) -> dict:
    """A finished run's result.json with the fields the report reads, at realistic sizes."""
    steps = 300 if trains else None
    trainable = 1_200_000 if trains else 0
    return {
        "schema": 1, "status": "ok", "error": None, "failed_files": None, "experiment": "speed",
        "model": "smollm2-135m", "task": "banking77", "method": method, "seed": seed,
        "config": {"task": {"name": "banking77", "data_fingerprint": "bench"},
                   "budget": {"lr": 1e-3, "steps": steps, "batch_size": 16, "max_length": 64}},
        "config_hash": f"{method}-{seed}", "primary_metric": "accuracy",
        "metrics": {"accuracy": float(correct.mean()), "macro_f1": float(correct.mean()) - 0.01},
        "ci95": None,
        "params": {"trainable": trainable, "total": 134_515_008 + trainable,
                   "trainable_pct": 100 * trainable / 134_515_008},
        "train": {"seconds": 240.0 + seed, "steps": steps, "examples": 4800, "tokens": 200_000,
                  "tokens_per_s": 830.0, "peak_rss_mb": 2300.0, "peak_gpu_mb": None,
                  "dev_curve": [[s, 0.2 + s / 400] for s in range(30, 301, 30)],
                  "convergence": {"still_improving": method.endswith("-0"), "evidence": "dev curve",
                                  "detail": "dev 0.95 at step 300 against 0.90"},
                  "early_stopping": {"stopped_at": None, "best_step": None, "restored": False}}
        if trains else None,
        "eval": {"seconds": 60.0, "n": len(correct), "ms_per_example": 19.5, "peak_rss_mb": 1200.0},
        "latency": {"ms_per_example": 80.0, "merged_ms_per_example": 70.0 if trains else None},
        "drift": {"nll_increase": 0.2 if trains else 0.0},
        "artifact": {"path": "artifact", "bytes": 4 * trainable + 1000},
        "wall_seconds": 400.0, "task_info": {"kind": "classification", "labels": LABELS},
        "env": {"device": "cpu", "cpu": "bench cpu", "threads": 2, "packages": {"torch": "2"}},
    }  # fmt: skip


def write_experiment(root: Path, methods: int, seeds: int, items: int) -> None:
    """Methods of graded skill on items of graded difficulty, seeds differing by training noise: their
    errors overlap as real methods' do (a hard item is hard for all), so the paired tests have work."""
    rng = np.random.default_rng(0)
    difficulty = rng.random(items)
    inputs = [f"customer message {i}: how do I top up my card?" for i in range(items)]
    targets = [LABELS[i % 77] for i in range(items)]
    for m in range(methods):
        method = f"method-{m}"
        skill = 0.93 - 0.025 * m
        for seed in range(seeds):
            correct = difficulty + rng.normal(0, 0.08, items) < skill
            folder = root / store.run_name("smollm2-135m", method, seed)
            folder.mkdir(parents=True)
            rows = [
                {"input": x, "target": t, "prediction": t if c else "other", "answer": t if c else "other",
                 "correct": bool(c)}
                for x, t, c in zip(inputs, targets, correct, strict=True)
            ]  # fmt: skip
            store.write_jsonl_atomic(folder / store.PREDICTIONS, rows)
            losses = [{"event": "train_step", "step": s, "loss": 3.0 / s} for s in range(1, 301)]
            store.write_jsonl_atomic(folder / store.LOG, losses if m > 1 else [])
            store.write_json_atomic(folder / store.RESULT, result_record(method, seed, correct, m > 1))


def time_once(root: Path) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    data = make_report(root)
    times["make_report (load + statistics)"] = time.perf_counter() - start
    for name, fn in {
        "terminal": lambda: Console(file=io.StringIO(), width=100).print(render_terminal(data)),
        "html": lambda: render(data, "html"),
        "md": lambda: render(data, "md"),
        "csv": lambda: render(data, "csv"),
        "json": lambda: render(data, "json"),
    }.items():
        start = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--items", type=int, default=3080)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "speed"
        write_experiment(root, args.methods, args.seeds, args.items)
        runs = args.methods * args.seeds
        print(f"{runs} runs ({args.methods} methods × {args.seeds} seeds), {args.items:,} test items each")
        rounds = [time_once(root) for _ in range(args.repeat)]
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        print(f"  {name:<34} median {statistics.median(values):6.3f} s   min {min(values):6.3f} s")


if __name__ == "__main__":
    main()
