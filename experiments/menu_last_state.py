r"""§7b's early restores against the same runs trained again under the new early-stopping rule.

    python experiments/menu_last_state.py findings/menu_banking77/runs findings/menu_banking77/last_state/runs \
        > findings/menu_banking77/last_state/analysis.md

For every run in the second folder (experiments/menu_banking77_last_state.yaml) it finds the menu run of the
same method and seed in the first, checks that the two trained alike (identical dev curves: same data, seed
and configuration, and deterministic training on one machine), and prints, as Markdown, the state each
evaluated and its test accuracy, the paired difference on the test items, and what the new rule decided.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np


def _runs(folder: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for path in sorted(folder.glob("*/result.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        if result.get("status") == "ok":
            result["_folder"] = path.parent
            out[(result["method"], result["seed"])] = result
    return out


def _correct(result: dict) -> list[bool]:
    lines = (result["_folder"] / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [bool(json.loads(line)["correct"]) for line in lines]


def main(menu: str, again: str) -> None:
    old, new = _runs(Path(menu)), _runs(Path(again))
    print(
        "| run | menu: state restored, test | again: state kept, test | Δ test (95% CI over items) | "
        "dev lead of the best state (only-best / only-last of 200, z) | same dev curve |"
    )
    print("|---|---|---|---|---|---|")
    diffs = []
    for (method, seed), b in sorted(new.items()):
        a = old[(method, seed)]
        ea, eb = a["train"]["early_stopping"], b["train"]["early_stopping"]
        acc_a, acc_b = a["metrics"]["accuracy"], b["metrics"]["accuracy"]
        ca, cb = _correct(a), _correct(b)
        d = np.array([int(y) - int(x) for x, y in zip(ca, cb, strict=True)], dtype=float)
        half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))  # the paired difference's normal interval
        lead = eb.get("lead") or {}
        z = "∞" if lead.get("z", 0) is None else f"{lead.get('z', 0):.2f}"
        same = a["train"]["dev_curve"] == b["train"]["dev_curve"]
        diffs.append(acc_b - acc_a)
        gained, lost = sum(v > 0 for v in d), sum(v < 0 for v in d)
        print(
            f"| {method} s{seed} | step {ea['best_step']}: {100 * acc_a:.1f}% | step {eb['kept_step']}: "
            f"{100 * acc_b:.1f}% | {100 * (acc_b - acc_a):+.1f} ({100 * (d.mean() - half):+.1f}, "
            f"{100 * (d.mean() + half):+.1f}; {gained} items gained, {lost} lost) | "
            f"{lead.get('best_only')} / {lead.get('last_only')}, z {z} | {'yes' if same else 'NO'} |"
        )
    rng = np.random.default_rng(0)
    values = np.array(diffs)
    means = values[rng.integers(0, len(values), (10_000, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    print(
        f"\nMean Δ over {len(diffs)} runs: {100 * values.mean():+.2f} points (95% CI over runs, percentile "
        f"bootstrap: {100 * lo:+.2f} to {100 * hi:+.2f})."
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
