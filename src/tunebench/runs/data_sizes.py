"""The training-set sizes of an experiment (`data_sizes`) as the grid uses them: one `Splits` per size,
and what a size adds to a run's config and identity.

A size is a dimension of the grid (model × size × method × seed). The subsets are drawn once, when the
grid is built (tasks/subsets.py: nested, from one fixed order, the same for every method and seed), so a
size that the split cannot hold is refused before anything runs. Learning-rate selection happens per size:
each (model, size, method) searches on its own (selection.py), since a rate that suits 100 examples need
not suit 10,000.

Identity. A subset adds `train_subset` {examples, fingerprint} to the task in a run's config, so runs at
different sizes never share an identity and the same subset (same examples, same order) is the same run
wherever it was asked for. The whole split (`all`) adds nothing: a run at `all` is the run an experiment
without `data_sizes` makes, and is reused as such. `data_size` (the size as asked for, with its tag) is
recorded in the config and in result.json but is not part of the identity.

Budgets. A budget in `steps` (tunebench's default) gives every size the same optimizer steps, so a small
subset is seen many times (150 steps × 32 = 4,800 examples: 48 passes over 100 examples); when the batch is
larger than the subset, each step takes the whole subset. A budget in `epochs` scales with the size: 3
epochs of 100 examples at batch 32 is 10 steps. docs/data-sizes.md says why steps are the default.
"""

from __future__ import annotations

from tunebench.config import ExperimentSpec
from tunebench.core.errors import SpecError
from tunebench.tasks import Splits, Task
from tunebench.tasks.subsets import TrainingSubset, draw_subsets

#: Config entries a size adds that are not part of a run's identity (runs/grid.py `identity`).
DATA_SIZE = "data_size"


def training_subsets(spec: ExperimentSpec, task: Task, splits: Splits) -> list[tuple[TrainingSubset, Splits]]:
    """Each size of the spec with its splits (the subset for training, the whole dev and test splits);
    empty when the spec has no `data_sizes`."""
    sizes = spec.data_sizes
    if sizes is None:
        return []
    where = f"{spec.source}: data_sizes"
    if sizes.by_class and task.kind != "classification":
        raise SpecError(
            f"{where}.per_class: counts examples of every label, but {task.name} is a {task.kind} task; "
            "give training examples instead, e.g. data_sizes: [100, 300, all]"
        )
    return [
        (subset, Splits(train=examples, dev=splits.dev, test=splits.test))
        for subset, examples in draw_subsets(
            splits.train, sizes, where + (".per_class" if sizes.by_class else "")
        )
    ]


def add_to_config(config: dict, subset: TrainingSubset | None) -> dict:
    """A run's config with its training-set size: `data_size` always (recorded), and, for a true subset,
    `task.train_subset` and the subset's `task.sizes.train` (its identity)."""
    if subset is None:
        return config
    config[DATA_SIZE] = subset.record()
    if not subset.whole:
        task = config["task"]
        task["train_subset"] = {"examples": subset.examples, "fingerprint": subset.fingerprint}
        task["sizes"] = {**task["sizes"], "train": subset.examples}
    return config
