"""Run the shipped default experiment and print wall time per method and training throughput.

    python bench/default_experiment.py [--out DIR]

Uses a fresh run store (so nothing is reused) and the model cache as it is (prepare the model first:
`tunebench prepare smollm2-135m`, so preparation is not counted). Prints one line per run and the total.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="run store (default: a temporary folder)")
    args = parser.parse_args()

    from tunebench.cli.main import quiet_libraries
    from tunebench.config import default_spec_path, load_yaml, parse_spec
    from tunebench.models import resolve_model
    from tunebench.runs.record import environment
    from tunebench.runs.runner import run_experiment

    quiet_libraries()
    out = args.out or tempfile.mkdtemp(prefix="tunebench-bench-")
    data = load_yaml(default_spec_path())
    data["out"] = out
    spec = parse_spec(data, source="default experiment")
    for name in spec.models:
        resolve_model(name)  # preparation is a one-off cost, not part of the comparison
    start = time.perf_counter()
    results = run_experiment(spec, force=True)
    total = time.perf_counter() - start

    env = environment()
    print(
        f"\ndefault experiment on {env['cpu']} ({env['threads']} threads), torch {env['packages']['torch']}"
    )
    print(
        f"{'run':<32} {'status':<7} {'metric':>7} {'wall s':>7} {'train s':>8} {'eval s':>7} "
        f"{'tokens/s':>9} {'peak MB':>8}"
    )
    for r in results:
        train, ev = r.get("train") or {}, r.get("eval") or {}
        metric = r["metrics"].get(r["primary_metric"]) if r["status"] == "ok" else None
        peak = max(x for x in (train.get("peak_rss_mb"), ev.get("peak_rss_mb"), 0) if x is not None)
        print(
            f"{r['model'] + '--' + r['method']:<32} {r['status']:<7} "
            f"{'' if metric is None else f'{metric:.1%}':>7} {r['wall_seconds']:>7.1f} "
            f"{train.get('seconds', 0):>8.1f} {ev.get('seconds', 0):>7.1f} "
            f"{train.get('tokens_per_s', 0):>9.0f} {peak:>8.0f}"
        )
    print(f"{'total':<32} {'':<7} {'':>7} {total:>7.1f}")


if __name__ == "__main__":
    main()
