"""An experiment from its spec: build the grid (model × method × seed), then let an executor run it.

Everything that can be checked is checked before the first run starts (names, options, the data), so
a bad spec writes nothing. Where a run's steps live: grid.py (the cells and their configs), selection.py
(the learning rate chosen on dev), cell.py (one run: prepare → train → evaluate → export), executors.py
(here one after the other, or on Ray).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tunebench.config import ExperimentSpec
from tunebench.core import store
from tunebench.models import resolve_model
from tunebench.runs.data_sizes import training_subsets
from tunebench.runs.executors import Executor, LocalExecutor, for_launch
from tunebench.runs.grid import Grid, check_dev_split
from tunebench.runs.progress import RunProgress
from tunebench.runs.tracking import Tracker
from tunebench.tasks import build_task
from tunebench.train import distributed


def run_experiment(
    spec: ExperimentSpec,
    *,
    force: bool = False,
    progress: RunProgress | None = None,
    executor: Executor | None = None,
    tracker: Tracker | None = None,
) -> list[dict]:
    """Run the grid on `executor` (default: here, one run after the other); `tracker` logs each run."""
    grid = build_grid(spec, force=force, progress=progress)
    if tracker is not None:
        grid.on_result = tracker.log_run
    return (executor or LocalExecutor()).run(grid)


def build_grid(spec: ExperimentSpec, *, force: bool = False, progress: RunProgress | None = None) -> Grid:
    """The experiment's grid: its task's splits read and checked, its models prepared, its spec written."""
    exp_dir = (Path(spec.out) / spec.name).resolve()  # absolute: a Ray worker may start in another folder
    store.check_writable(exp_dir)  # before minutes of model preparation; creates nothing
    spec = for_launch(spec)  # one of several processes (torchrun): what that supports
    task = build_task(spec.task.name, spec.task.options, f"{spec.source}: task")
    splits = task.splits()
    check_dev_split(spec, splits)
    subsets = training_subsets(spec, task, splits)  # a size the split cannot hold fails here
    models = [resolve_model(name) for name in spec.models]
    if distributed.is_main():  # of several processes, only the main one writes to the run store
        store.make_folder(exp_dir)
        store.write_text_atomic(exp_dir / "spec.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return Grid(spec, task, splits, models, exp_dir, force, progress or RunProgress(), subsets=subsets)
