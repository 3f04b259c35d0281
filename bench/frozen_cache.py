"""Frozen lower blocks computed once: how much faster `partial` trains, and whether its accuracy moves.

    python bench/frozen_cache.py [--spec experiments/banking77_full.yaml] [--blocks 2] [--lr 2e-5]
                                 [--seeds 0] [--epochs 3] [--out runs/bench-frozen-cache]

Trains `partial` (the last `--blocks` blocks and the head) twice per seed on the spec's model and data, with
one fixed learning rate (the rate the BANKING77 ladder chose for it, so no search: one training each),
once running every block at every step (`cache_frozen: false`) and once from the frozen blocks' cached
states (`cache_frozen: true`, train/frozen.py). The two differ in one thing besides speed: the cached path
has no dropout in the frozen blocks. Prints, per seed, each run's training time (the cached run's includes
computing the states, as `train.seconds` does) and test accuracy, the time ratio, and the paired test of the
two on the same test items (tunebench's own statistics: McNemar's exact test with one seed, the paired
bootstrap over seeds and items with several). Runs are cached under --out: a second call only prints, and
removing the cache's `hidden/` folder times the state computation again.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).parent))  # hardware_limit, when run from anywhere

from hardware_limit import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="experiments/banking77_full.yaml")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument(
        "--lr", type=float, default=2e-5, help="partial's rate (BANKING77's ladder chose 2e-5)"
    )
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", default="runs/bench-frozen-cache")
    args = parser.parse_args()

    from tunebench.cli.main import quiet_libraries
    from tunebench.config import load_yaml, parse_spec
    from tunebench.report.load import load_runs
    from tunebench.report.stats import compare
    from tunebench.runs.runner import run_experiment

    quiet_libraries()
    data = load_yaml(args.spec)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {}
    for cached in (False, True):
        name = f"partial-{'cached' if cached else 'uncached'}"
        spec = parse_spec(
            {
                **data,
                "name": name,
                "out": args.out,
                "seeds": seeds,
                "methods": [{"name": "partial", "blocks": args.blocks, "lr": args.lr}],
                "budget": {
                    **(data.get("budget") or {}),
                    "epochs": args.epochs,
                    "lr_search": "grid",
                    "cache_frozen": cached,
                },
            },
            source=args.spec,
        )
        run_experiment(spec)
        runs[cached] = [r for r in load_runs(f"{args.out}/{name}") if r.ok]

    print(f"CPU: {cpu_name()}; partial, last {args.blocks} blocks, lr {args.lr:g}, {args.epochs:g} epochs")
    print("seed | uncached: train s, accuracy | cached: train s (states s), accuracy | time ratio")
    for seed in seeds:
        plain = next(r for r in runs[False] if r.result["seed"] == seed)
        fast = next(r for r in runs[True] if r.result["seed"] == seed)
        cache = fast.result["train"]["frozen_cache"] or {}
        print(
            f"{seed} | {plain.result['train']['seconds']:.0f} s, {plain.result['metrics']['accuracy']:.1%} | "
            f"{fast.result['train']['seconds']:.0f} s ({cache.get('seconds', 0):.0f} s, "
            f"{'read' if cache.get('from_disk') else 'computed'}), {fast.result['metrics']['accuracy']:.1%} | "
            f"{fast.result['train']['seconds'] / plain.result['train']['seconds']:.2f}×"
        )
    c = compare(runs[True], runs[False])
    low, high = c.ci95 or (float("nan"), float("nan"))
    print(
        f"cached − uncached: {100 * c.diff:+.1f} points (95% CI {100 * low:+.1f}, {100 * high:+.1f}), "
        f"p {c.p_value if c.p_value is not None else float('nan'):.2f} ({c.test})"
    )


if __name__ == "__main__":
    main()
