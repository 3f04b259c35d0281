"""The whole answer sooner: the tuned BANKING77 ladder with the speed levers off, then on.

    python bench/ladder_cost.py [--spec experiments/ladder_banking77_tuned.yaml] [--sides off,on]
                                [--methods probe,partial,...] [--out runs/bench-ladder-cost] [--force]

Runs the spec's ladder once per side, each method as its own experiment (so a long comparison can be split
by method across sessions: a method already measured on a side is read back, not rerun), and prints per
method and in total the wall time of each side, their ratio, the learning rate each side chose and the
paired test of the two sides' test answers (tunebench's own statistics: McNemar's exact test, one seed).

The levers (issue "The whole answer sooner"):

- **rung continuation** (runs/selection.py `CONTINUE_RUNGS`): a surviving learning-rate candidate of
  successive halving continues from the state its rung stopped at, and the final run continues the
  winner's last rung; off: every rung and the final run train from the start.
- **frozen lower blocks computed once** (`budget.cache_frozen`, train/frozen.py).
- **length-grouped batches** (`budget.group_by_length`, train/data.py).
- **run identity by content** does not act inside one ladder (no run is asked for twice); each side has
  its own runs folder so that it cannot borrow the other's runs either.

Both sides start cold: each has its own cache folder (TUNEBENCH_CACHE, the prepared models linked in), so
the probe's features and the frozen blocks' states are computed in the run that uses them. Run it alone on
the machine: the ratio is only as good as the two sides' equal conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).parent))  # hardware_limit, when run from anywhere

from hardware_limit import cpu_name

SIDES = {
    "off": {"continue_rungs": False, "budget": {"cache_frozen": False, "group_by_length": False}},
    "on": {"continue_rungs": True, "budget": {"cache_frozen": True, "group_by_length": True}},
}


def cold_cache(out: Path, side: str) -> Path:
    """A cache folder of the side's own, with the already prepared models linked in (preparing them is
    not what is measured)."""
    from tunebench.core.paths import cache_dir

    models = cache_dir() / "models"
    folder = out / f"cache-{side}"
    folder.mkdir(parents=True, exist_ok=True)
    if models.exists() and not (folder / "models").exists():
        (folder / "models").symlink_to(models.resolve(), target_is_directory=True)
    return folder


def run_side(spec_data: dict, source: str, out: Path, side: str, method: dict, force: bool) -> dict:
    """One method of the ladder on one side, timed; its record is kept in <out>/<side>/walls.json."""
    from tunebench.config import parse_spec
    from tunebench.runs import selection
    from tunebench.runs.runner import run_experiment

    walls_file = out / side / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    if method["name"] in walls and not force:
        return walls[method["name"]]
    levers = SIDES[side]
    spec = parse_spec(
        {
            **spec_data,
            "name": f"{method['name']}",
            "out": str(out / side),
            "methods": [method],
            "budget": {**(spec_data.get("budget") or {}), **levers["budget"]},
        },
        source=source,
    )
    cache = cold_cache(out, side)
    previous = os.environ.get("TUNEBENCH_CACHE")
    os.environ["TUNEBENCH_CACHE"] = str(cache)
    selection.CONTINUE_RUNGS = levers["continue_rungs"]
    try:
        start = time.perf_counter()
        (result,) = run_experiment(spec, force=True)
        wall = time.perf_counter() - start
    finally:
        selection.CONTINUE_RUNGS = True
        if previous is None:
            os.environ.pop("TUNEBENCH_CACHE", None)
        else:
            os.environ["TUNEBENCH_CACHE"] = previous
    walls[method["name"]] = {
        "wall_seconds": wall,
        "status": result.get("status"),
        "chosen_lr": (result.get("selection") or {}).get("chosen_lr"),
        "accuracy": (result.get("metrics") or {}).get("accuracy"),
        "train_seconds": (result.get("train") or {}).get("seconds"),
        "run": str(out / side / method["name"]),
        "cpu": cpu_name(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    walls_file.parent.mkdir(parents=True, exist_ok=True)
    walls_file.write_text(json.dumps(walls, indent=2))
    return walls[method["name"]]


def paired(out: Path, name: str) -> str:
    """The on side against the off side on the same test items."""
    from tunebench.report.load import load_runs
    from tunebench.report.stats import compare

    runs = {side: [r for r in load_runs(str(out / side / name)) if r.ok] for side in SIDES}
    if not runs["off"] or not runs["on"]:
        return "—"
    try:
        c = compare(runs["on"], runs["off"])
    except ValueError as e:
        return str(e)
    low, high = c.ci95 or (float("nan"), float("nan"))
    p = c.p_value if c.p_value is not None else float("nan")
    return f"{100 * c.diff:+.1f} ({100 * low:+.1f}, {100 * high:+.1f}), p {p:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="experiments/ladder_banking77_tuned.yaml")
    parser.add_argument("--sides", default="off,on", help="which sides to run now (off, on or both)")
    parser.add_argument("--methods", help="only these of the spec's methods now (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ladder-cost"))
    parser.add_argument("--force", action="store_true", help="measure again what was measured")
    args = parser.parse_args()

    from tunebench.cli.main import quiet_libraries
    from tunebench.config import load_yaml

    quiet_libraries()
    data = load_yaml(args.spec)
    methods = data["methods"]
    names = [m["name"] for m in methods]
    wanted = args.methods.split(",") if args.methods else names
    unknown = [m for m in wanted if m not in names]
    if unknown:
        raise SystemExit(f"--methods: {unknown[0]!r} is not in {args.spec} (its methods: {', '.join(names)})")
    sides = args.sides.split(",")
    if any(s not in SIDES for s in sides):
        raise SystemExit(f"--sides: expected off, on or off,on; got {args.sides!r}")
    for side in sides:
        for method in methods:
            if method["name"] in wanted:
                print(f"-- {side}: {method['name']}", flush=True)
                run_side(data, args.spec, args.out, side, method, args.force)

    walls = {}
    for side in SIDES:
        f = args.out / side / "walls.json"
        walls[side] = json.loads(f.read_text()) if f.exists() else {}
    print(f"\n{args.spec}, levers off against on; CPU: {cpu_name()}")
    print(
        "| method | off: wall s, lr, accuracy | on: wall s, lr, accuracy | on / off | same lr | on − off, paired |"
    )
    print("|---|---|---|---|---|---|")
    totals = {"off": 0.0, "on": 0.0}
    complete = True
    for name in names:
        off, on = walls["off"].get(name), walls["on"].get(name)
        if off is None or on is None:
            complete = False
        for side, w in (("off", off), ("on", on)):
            totals[side] += w["wall_seconds"] if w else 0.0

        def cell(w: dict | None) -> str:
            if w is None:
                return "not measured yet"
            lr = "—" if w["chosen_lr"] is None else f"{w['chosen_lr']:g}"
            acc = "—" if w["accuracy"] is None else f"{w['accuracy']:.1%}"
            return f"{w['wall_seconds']:.0f}, {lr}, {acc}"

        ratio = f"{on['wall_seconds'] / off['wall_seconds']:.2f}x" if off and on else "—"
        same = "—" if not (off and on) else ("yes" if off["chosen_lr"] == on["chosen_lr"] else "no")
        test = paired(args.out, name) if off and on else "—"
        print(f"| {name} | {cell(off)} | {cell(on)} | {ratio} | {same} | {test} |")
    if complete:
        print(
            f"| **total** | {totals['off']:.0f} s | {totals['on']:.0f} s | "
            f"**{totals['on'] / totals['off']:.2f}x** | | |"
        )
    else:
        print("(not every method is measured on both sides yet: no total)")


if __name__ == "__main__":
    main()
