"""Does successive halving choose the learning rate that the full grid chooses? And at what cost?

    python bench/halving_vs_grid.py experiments/banking77_full.yaml --methods full --out runs

Runs only the learning-rate selection of each method (no final runs, no test split) twice on the same data
and seed (the spec's own search reuses what `tunebench compare SPEC` cached under the same --out): once as a grid (every rate on the whole budget) and once by successive halving (every rate on
the whole budget's schedule, stopped at 1/4, the better half at 1/2; runs/selection.py). Prints, per
method, each search's dev scores, the rate each chose and the optimizer steps each trained. Candidates
are cached in the runs folder, so a second call only prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="an experiment spec whose methods declare lr_grid")
    parser.add_argument("--methods", help="comma-separated methods of the spec (default: all that search)")
    parser.add_argument("--task-opt", action="append", default=[], help="KEY=VALUE task option override")
    parser.add_argument("--out", default="runs", help="runs folder (candidates are cached there)")
    args = parser.parse_args()

    import yaml

    from tunebench.cli.main import quiet_libraries
    from tunebench.config import load_yaml, parse_spec
    from tunebench.models import resolve_model
    from tunebench.runs.grid import Cell, needs_lr_search
    from tunebench.runs.runner import build_grid
    from tunebench.runs.selection import select_for_cell

    quiet_libraries()
    data = load_yaml(args.spec)
    data["task"] = {
        **data["task"],
        **{k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.task_opt)},
    }
    data["out"] = args.out
    if args.methods:
        wanted = args.methods.split(",")
        data["methods"] = [m for m in data["methods"] if (m if isinstance(m, str) else m["name"]) in wanted]
    rows = []
    own = (data.get("budget") or {}).get("lr_search", "grid")
    for search in ("grid", "halving"):
        # the spec's own search keeps the spec's name, so that the candidates a `compare` of the spec
        # already trained (cached under its folder) are reused; the other search gets a folder of its own
        name = data["name"] if search == own else f"{data['name']}-{search}"
        spec = parse_spec({**data, "name": name}, source=args.spec)
        grid = build_grid(spec)
        for method in (m for m in spec.methods if needs_lr_search(m)):
            method = dataclasses.replace(method, budget=dataclasses.replace(method.budget, lr_search=search))
            for model in spec.models:
                cell = Cell(resolve_model(model), method, spec.seeds[0])
                sel = select_for_cell(cell, grid)
                rows.append((method.name, model, search, sel))
    for name, model, search, sel in rows:
        steps = sum(c["steps"] - c.get("continued_from", 0) for c in sel["candidates"])  # rungs continue
        scores = ", ".join(
            f"{c['lr']:g}@{c['fraction']:g}: {c['dev_score']:.3f}"
            if c["status"] == "ok"
            else f"{c['lr']:g}: failed"
            for c in sel["candidates"]
        )
        print(f"{model} · {name} · {search:7s} chose {sel['chosen_lr']:g} ({steps} steps trained) | {scores}")


if __name__ == "__main__":
    main()
