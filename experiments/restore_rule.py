"""Which state should early stopping restore? Replays candidate rules on runs scored on test at every dev point.

    python experiments/restore_rule.py run experiments/restore_rule_banking77.yaml [--out runs] [--seeds 0,1,2]
    python experiments/restore_rule.py analyse runs/restore-rule-banking77 [--patience 4]

`run` is `tunebench compare` with one addition, made here and nowhere in tunebench: whenever a run scores
its dev split during training, it also scores its test split, and writes both, item by item, to
`test_curve.jsonl` in the run's folder. A study only: a real comparison never looks at test before the end.
The spec should let every run train its whole budget (a patience longer than the curve), so that every
rule can be replayed on the same curve.

`analyse` replays the rules on each run's curve, with the stopping of a patience of `--patience`
evaluations (tunebench's `early_stopping`), and prints, per method, the test accuracy of the state each
rule picks, and each rule's difference from tunebench's rule, paired by run. The rules, fixed before any
run of this study was looked at:

- earliest: the first state with the highest dev score (tunebench today; transformers' Trainer too);
- latest: the last state with the highest dev score (a tie goes to the later, longer-trained state);
- final: no restore: the state where training stopped;
- within-noise: the last state whose dev score is within the dev split's paired noise of the best
  (the best's lead over it is at most 1.96 standard errors of the paired difference on the dev items):
  restore an earlier state only for a lead the dev split can tell from chance.
- oracle: the state with the highest *test* score (not a rule; the ceiling on what a rule could reach).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from tunebench.runs.devcurve import paired_se

RULES = ("earliest", "latest", "final", "within-noise", "oracle")
CURVE_FILE = "test_curve.jsonl"


def run(spec_path: str, out: str, seeds: list[int] | None = None) -> None:
    """Run the spec with the test split scored at every dev point (see the module's docstring); `seeds`:
    only these of the spec's seeds (a long study runs by parts into one runs folder)."""
    from tunebench.config import load_yaml, parse_spec
    from tunebench.runs import devcurve, measure
    from tunebench.runs.runner import run_experiment

    original = devcurve.DevCurve.after_step

    def after_step(self: Any, step: int, steps: int, ctx: Any) -> bool:
        stop = original(self, step, steps, ctx)
        if self.curve and self.curve[-1][0] == step and ctx.folder is not None:
            test = ctx.splits.test
            quiet = dataclasses.replace(ctx, on_eval_batch=None)
            with measure.training_modes_kept(self.method):
                predictions = self.method.predict(quiet, [e.input for e in test])
            scores = ctx.task.score(predictions, [e.target for e in test])
            point = {
                "step": step,
                "dev": self.curve[-1][1],
                "dev_correct": [bool(c) for c in self.items[step]],
                "test": scores.metrics[scores.primary],
                "test_correct": [bool(c) for c in scores.correct],
            }
            with open(Path(ctx.folder) / CURVE_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(point) + "\n")
        return stop

    devcurve.DevCurve.after_step = after_step  # type: ignore[method-assign]
    data = load_yaml(spec_path)
    data["out"] = out
    if seeds is not None:
        data["seeds"] = seeds
    run_experiment(parse_spec(data, source=spec_path))


def stopped_curve(points: list[dict], patience: int) -> list[dict]:
    """The points an early-stopped run would have evaluated: it stops once `patience` evaluations in a row
    did not beat the best dev score (tunebench's DevCurve, min_delta 0)."""
    best, since = None, 0
    for i, p in enumerate(points):
        if best is None or p["dev"] > best:
            best, since = p["dev"], 0
        else:
            since += 1
        if since >= patience and i < len(points) - 1:
            return points[: i + 1]
    return points


def choose(points: list[dict], rule: str) -> dict:
    top = max(p["dev"] for p in points)
    if rule == "earliest":
        return next(p for p in points if p["dev"] == top)
    if rule == "latest":
        return [p for p in points if p["dev"] == top][-1]
    if rule == "final":
        return points[-1]
    if rule == "within-noise":
        best = next(p for p in points if p["dev"] == top)
        close = [
            p
            for p in points
            if top - p["dev"] <= 1.96 * paired_se(best["dev_correct"], p["dev_correct"]) + 1e-12
        ]
        return close[-1]
    if rule == "oracle":
        return max(points, key=lambda p: p["test"])
    raise ValueError(rule)


def analyse(folder: str, patience: int) -> None:
    from tunebench.tasks.metrics import bootstrap_ci  # the percentile bootstrap of a mean the runs use

    runs = sorted(Path(folder).glob(f"*/{CURVE_FILE}"))
    if not runs:
        raise SystemExit(f"{folder}: no run has a {CURVE_FILE} (was it run with `restore_rule.py run`?)")
    by_method: dict[str, list[dict[str, dict]]] = defaultdict(list)  # method → each run's pick per rule
    print(
        "| run | dev / test accuracy at each dev point (step: dev / test) | earliest | latest | final | within-noise |"
    )
    print("|---|---|---|---|---|---|")
    for path in runs:
        result_path = path.parent / "result.json"
        result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else {}
        if result.get("status") != "ok":
            continue  # a run still going, or one that failed: its curve is not whole
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        by_step = {p["step"]: p for p in lines}  # a resumed run scored some steps twice: the last counts
        seen = stopped_curve(sorted(by_step.values(), key=lambda p: p["step"]), patience)
        picks = {rule: choose(seen, rule) for rule in RULES}
        by_method[result["method"]].append(picks)
        name = path.parent.name
        curve = ", ".join(f"{p['step']}: {p['dev'] * 100:.1f} / {p['test'] * 100:.1f}" for p in seen)
        chosen = " | ".join(str(picks[r]["step"]) for r in RULES[:4])
        print(f"| {name} | {curve} | {chosen} |")
    print()
    print(
        f"Test accuracy of the state each rule restores (patience {patience}); Δ vs earliest, paired by run"
    )
    print(
        "(mean over runs, 95% bootstrap interval over runs; changed: runs where the rule picks another state)."
    )
    print()
    print("| method | runs | " + " | ".join(RULES) + " |")
    print("|---|---|" + "---|" * len(RULES))
    everything = [pick for picks in by_method.values() for pick in picks]
    for method, picks in [*sorted(by_method.items()), ("all", everything)]:
        cells = []
        for rule in RULES:
            acc = statistics.mean(p[rule]["test"] for p in picks)
            if rule == "earliest":
                cells.append(f"{acc * 100:.2f}")
                continue
            diffs = [(p[rule]["test"] - p["earliest"]["test"]) * 100 for p in picks]
            changed = sum(p[rule]["step"] != p["earliest"]["step"] for p in picks)
            lo, hi = bootstrap_ci(diffs, n_resamples=10000)  # of floats: the differences in points
            cells.append(
                f"{acc * 100:.2f} (Δ {statistics.mean(diffs):+.2f}, {lo:+.2f} to {hi:+.2f}; changed {changed})"
            )
        print(f"| {method} | {len(picks)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a spec, scoring test at every dev point")
    r.add_argument("spec")
    r.add_argument("--out", default="runs")
    r.add_argument("--seeds", help="comma-separated: only these of the spec's seeds")
    a = sub.add_parser("analyse", help="replay the rules on the runs' curves")
    a.add_argument("folder")
    a.add_argument("--patience", type=int, default=4)
    args = parser.parse_args()
    if args.command == "run":
        run(args.spec, args.out, [int(s) for s in args.seeds.split(",")] if args.seeds else None)
    else:
        analyse(args.folder, args.patience)


if __name__ == "__main__":
    main()
