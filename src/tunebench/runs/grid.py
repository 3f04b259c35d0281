"""The grid of one experiment: its cells (model × method × seed, × training-set size where the spec has
`data_sizes`: data_sizes.py), what they share, and each cell's config.

`run_experiment` (runner.py) builds a `Grid` once; an executor walks it, choosing each method's learning
rate first where the method asks for a search (selection.py), and runs every cell (cell.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import tunebench
from tunebench.config import ExperimentSpec, MethodSpec
from tunebench.core import store
from tunebench.core.errors import SpecError
from tunebench.models import ResolvedModel
from tunebench.models.fingerprint import fingerprint
from tunebench.runs.data_sizes import DATA_SIZE, add_to_config
from tunebench.runs.progress import RunProgress
from tunebench.tasks import Splits, Task
from tunebench.tasks.subsets import TrainingSubset

#: Budget fields that matter to a method that does not train; the others are left out of its config, so
#: that changing the training budget does not redo the prompting runs.
_INFERENCE_BUDGET = ("max_length", "precision", "eval_batch_size")
#: Budget fields that change how a run is carried out but not its results: left out of every config.
_OPERATIONAL_BUDGET = ("checkpoint_every",)
#: Config entries that say where a run was asked for, not what it computes: left out of its identity, so
#: that the same run asked for by another experiment, or with the model or data at another path, is reused.
_NOT_IDENTITY = ("experiment", "model_path", DATA_SIZE)
_TASK_PATHS = ("path", "test_path")
#: The libraries whose version can change a run's numbers; their versions are part of its identity.
_RESULT_LIBRARIES = ("torch", "transformers", "peft")


@dataclass
class Cell:
    """One run: a model, a method (with its budget), a seed, and the training-set size (None: the whole
    training split, in an experiment without `data_sizes`)."""

    model: ResolvedModel
    method: MethodSpec
    seed: int
    size: TrainingSubset | None = None

    @property
    def name(self) -> str:
        return store.run_name(
            self.model.name, self.method.name, self.seed, self.size.tag if self.size else None
        )

    @property
    def selection_name(self) -> str:
        """The folder of its learning-rate search: one per model, method and training-set size (the whole
        split shares the folder of an experiment without sizes: the same candidates, cached by identity)."""
        size = f"--{self.size.tag}" if self.size and not self.size.whole else ""
        return f"{self.model.name}--{store.safe_name(self.method.name)}{size}"

    @property
    def aliases(self) -> list[str]:
        """Folder names the same run may have in another experiment: its own, and for the whole training
        split, the name of the run an experiment without `data_sizes` makes (the same identity)."""
        plain = store.run_name(self.model.name, self.method.name, self.seed)
        return [self.name] + ([plain] if self.size is not None and self.size.whole else [])


def ignore_result(record: dict, folder: Path) -> None:
    """The default `Grid.on_result`: nobody is listening."""


@dataclass
class Grid:
    """Everything the runs of one experiment share, and where their records go."""

    spec: ExperimentSpec
    task: Task
    splits: Splits
    models: list[ResolvedModel]
    exp_dir: Path
    """Absolute: a Ray worker may start in another folder."""
    force: bool
    progress: RunProgress
    on_result: Callable[[dict, Path], None] = ignore_result
    """Called in this process with each run's record and folder (the tracker's hook)."""
    subsets: list[tuple[TrainingSubset, Splits]] = field(default_factory=list)
    """Each training-set size with its splits, smallest first (data_sizes.py); empty: the whole split only."""
    trials_apart: bool = False
    """Train each learning-rate candidate and search trial in a process of its own (runs/child.py; set by
    the process executor), as the runs are: its peak memory is then its own, and a process killed by the
    out-of-memory killer is one failed trial rather than the end of the grid."""

    @property
    def sizes(self) -> list[TrainingSubset | None]:
        return [size for size, _ in self.subsets] or [None]

    @property
    def total(self) -> int:
        return len(self.models) * len(self.sizes) * len(self.spec.methods) * len(self.spec.seeds)

    def groups(
        self,
    ) -> Iterator[tuple[ResolvedModel, MethodSpec, TrainingSubset | None, list[tuple[int, int]]]]:
        """(model, method, training-set size, [(index in the grid from 1, seed), …]) in grid order: every
        method at the smallest size first, so that the cheap end of a data-size study finishes first."""
        index = 0
        for model in self.models:
            for size in self.sizes:
                for method in self.spec.methods:
                    seeds = [(index + i + 1, seed) for i, seed in enumerate(self.spec.seeds)]
                    index += len(seeds)
                    yield model, method, size, seeds

    def splits_for(self, cell: Cell) -> Splits:
        """The splits a cell trains and is scored on: its training subset, the whole dev and test splits."""
        if cell.size is None:
            return self.splits
        return next(splits for size, splits in self.subsets if size.tag == cell.size.tag)

    def config(self, cell: Cell) -> dict[str, Any]:
        """The cell's resolved config, written to its config.json; its hash says whether a run is finished."""
        return add_to_config(cell_config(cell, self.spec, self.task, self.splits), cell.size)

    def digest(self, cell: Cell) -> str:
        """The cell's identity: the hash of what it computes (`identity`)."""
        return store.config_hash(identity(self.config(cell)))

    def finished(self, cell: Cell) -> tuple[str, dict | None]:
        """The cell's identity hash, and its earlier result when it finished here with the same identity."""
        digest = self.digest(cell)
        folder = self.exp_dir / cell.name
        if not self.force and store.is_finished(folder, digest):
            return digest, store.read_result(folder / store.RESULT)
        return digest, None

    def for_worker(self) -> Grid:
        """What a Ray task needs of the grid: no hook or progress bound to this process."""
        return dataclasses.replace(self, progress=RunProgress(), on_result=ignore_result)


def cell_config(cell: Cell, spec: ExperimentSpec, task: Task, splits: Splits) -> dict[str, Any]:
    budget = dataclasses.asdict(cell.method.budget)
    for key in _OPERATIONAL_BUDGET:
        del budget[key]
    if not cell.method.trains:
        budget = {k: budget[k] for k in _INFERENCE_BUDGET}
    return {
        "experiment": spec.name,
        "model": cell.model.name,
        "model_path": cell.model.path,
        "model_fingerprint": fingerprint(cell.model),
        "versions": library_versions(),
        "task": {
            "name": task.name,
            "registered_as": spec.task.name,
            **spec.task.options,
            "data_fingerprint": splits.fingerprint(),
            "sizes": {"train": len(splits.train), "dev": len(splits.dev), "test": len(splits.test)},
        },
        "method": {"name": cell.method.name, **cell.method.all_options()},
        "budget": budget,
        "seed": cell.seed,
    }


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a run computes, and nothing about where it was asked for: the model's weights (their
    fingerprint), the data (its fingerprint and the options that built it), the method and its options, the
    budget, the seed and the versions that affect the numbers. Its hash decides whether a run is finished,
    here or in another experiment."""
    kept = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    if isinstance(kept.get("task"), dict):
        kept["task"] = {k: v for k, v in kept["task"].items() if k not in _TASK_PATHS}
    return kept


@functools.cache
def library_versions() -> dict[str, str]:
    """tunebench's version and those of the libraries that compute a run's numbers."""
    versions = {"tunebench": tunebench.__version__}
    for name in _RESULT_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def needs_lr_search(method_spec: MethodSpec) -> bool:
    return bool(method_spec.trains and method_spec.budget.lr_grid)


def check_dev_split(spec: ExperimentSpec, splits: Splits) -> None:
    """Selection and dev curves score the dev split: say so before anything runs if it is empty."""
    if splits.dev:
        return
    for m in spec.methods:
        wants = {"search": m.search is not None}  # a search scores its trials on dev
        wants |= {key: bool(getattr(m.budget, key)) for key in ("lr_grid", "dev_every", "early_stopping")}
        for key, wanted in wants.items():
            if wanted:
                raise SpecError(
                    f"{spec.source}: methods ({m.name}).{key} needs a dev split, and the task's is "
                    "empty; give the task a dev_size (or dev_fraction)"
                )
