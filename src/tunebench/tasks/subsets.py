"""Nested training subsets, for "how much labelled data do I need?" (the spec's `data_sizes`).

Every method runs at each training-set size; the dev and test splits stay whole, so the scores at every
size are on the same test items and can be compared by paired tests.

The subsets are drawn from one fixed order of the training split: a permutation seeded by `data_sizes.seed`
(0 unless the spec says otherwise), never by a run's seed, so every method and every seed trains on the
same examples at a given size. The first n examples of that order make the subset of size n, so the
subsets are nested: the 100 examples are among the 300, which are among the 1,000. Per class, the order
is followed within each label: the subset of k per class is the first k examples of every label in that
order, nested too. A subset keeps the split's own order (the order only decides *which* examples are in
it), so `all` is the training split itself, and a run at `all` is the same run as one without
`data_sizes` (the same identity: it is reused, runs/grid.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from tunebench.core.errors import SpecError, did_you_mean
from tunebench.core.typed import build, coerce, require
from tunebench.tasks.base import Example

#: The size that means the whole training split.
ALL = "all"


@dataclass
class DataSizes:
    """Training-set sizes to run every method at (`data_sizes:` in a spec, `--data-sizes` on the command line).

    A list (`[100, 300, 1000, all]`) counts training examples; a mapping with `per_class`
    (`{per_class: [10, 30, all]}`) counts examples of every label, for classification tasks."""

    total: list[int | str] = field(default_factory=list)
    """Training examples, e.g. [100, 300, 1000, all] (`all`: the whole training split)."""
    per_class: list[int | str] = field(default_factory=list)
    """Examples of every label (classification tasks), e.g. [10, 30, all]."""
    seed: int = 0
    """Seed of the fixed order the subsets are drawn in: one order for every method and seed."""

    def check(self, where: str) -> None:
        require(
            not (self.total and self.per_class),
            where,
            "give either total (training examples) or per_class (examples of every label), not both",
        )
        key = "per_class" if self.per_class else "total"
        sizes = _normalized(self.per_class or self.total, f"{where}.{key}")
        if self.per_class:
            self.per_class = sizes
        else:
            self.total = sizes
        require(self.seed >= 0, f"{where}.seed", f"must be 0 or more, got {self.seed}")

    @property
    def by_class(self) -> bool:
        return bool(self.per_class)

    @property
    def sizes(self) -> list[int | str]:
        """The sizes, smallest first (`all` last)."""
        return list(self.per_class or self.total)

    def to_dict(self) -> dict:
        return {"per_class" if self.by_class else "total": self.sizes, "seed": self.seed}


def parse_data_sizes(value: object, where: str) -> DataSizes | None:
    """`data_sizes` from a spec: None, a list (or "100,300,all" from a flag), or a mapping."""
    if value is None:
        return None
    if isinstance(value, dict):
        return build(DataSizes, value, where)
    return DataSizes(total=_normalized(coerce(value, list[int | str], where), where))  # errors: data_sizes[i]


def _normalized(values: list[int | str], where: str) -> list[int | str]:
    """Positive counts and `all`, each once, smallest first; "300" from a flag becomes 300."""
    require(bool(values), where, "give at least one size, e.g. [100, 300, all]")
    out: list[int | str] = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            text = v.strip().lower()
            if text == ALL:
                v = ALL
            elif text.isdigit():
                v = int(text)
            else:
                raise SpecError(
                    f"{where}[{i}]: expected a number of examples or 'all', got {v!r}.{did_you_mean(text, [ALL])}"
                )
        if isinstance(v, int):
            require(v >= 1, f"{where}[{i}]", f"a size must be at least 1, got {v}")
        require(v not in out, where, f"{v} is listed twice")
        out.append(v)
    return sorted(out, key=lambda v: (v == ALL, v if isinstance(v, int) else 0))


@dataclass(frozen=True)
class TrainingSubset:
    """One training-set size as drawn from the training split: what a run records and is named by."""

    requested: int | str
    """The size as the spec gave it (a count, or `all`)."""
    per_class: bool
    """The count is per label."""
    examples: int
    """Training examples in the subset."""
    of: int
    """Training examples in the whole training split."""
    seed: int
    """The seed of the order the subset was drawn in."""
    fingerprint: str
    """A hash of the subset's examples, in order: part of a run's identity."""
    label_counts: tuple[tuple[str, int], ...] = ()
    """Per class: (label, examples of it in the subset)."""

    @property
    def whole(self) -> bool:
        """The subset is the whole training split."""
        return self.examples == self.of

    @property
    def tag(self) -> str:
        """The size in a run folder's name: n100, n-all, 10-per-class, all-per-class."""
        if self.per_class:
            return f"{self.requested}-per-class"
        return f"n{self.requested}" if self.requested != ALL else "n-all"

    @property
    def per_label(self) -> float:
        """Examples per label: the count asked for, or for `all` the mean over the labels."""
        if isinstance(self.requested, int):
            return float(self.requested)
        return self.examples / max(1, len(self.label_counts))

    def record(self) -> dict:
        """What result.json says of the size (`data_size`)."""
        return {
            "tag": self.tag,
            "requested": self.requested,
            "per_class": self.per_class,
            "examples": self.examples,
            "of": self.of,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "label_counts": dict(self.label_counts) if self.per_class else None,
        }


def draw_subsets(
    train: list[Example], sizes: DataSizes, where: str
) -> list[tuple[TrainingSubset, list[Example]]]:
    """Every size's subset of `train`, smallest first: nested, from one order seeded by `sizes.seed`.

    A size larger than the split (or, per class, than some label's examples) is an error naming the size
    and what the split holds; two sizes that come to the same examples are an error too."""
    require(bool(train), where, "the training split is empty, so there is nothing to subsample")
    order = np.random.default_rng(sizes.seed).permutation(len(train))
    if sizes.by_class:
        by_label: dict[str, list[int]] = {}
        for i in order:  # each label's examples, in the fixed order
            by_label.setdefault(train[i].target, []).append(int(i))
        labels = sorted(by_label)
    out: list[tuple[TrainingSubset, list[Example]]] = []
    for size in sizes.sizes:
        if sizes.by_class:
            picked = [i for label in labels for i in _first(by_label[label], size, label, where)]
            counts = tuple((label, len(_first(by_label[label], size, label, where))) for label in labels)
        else:
            picked = [int(i) for i in _first(list(order), size, None, where)]
            counts = ()
        examples = [train[i] for i in sorted(picked)]  # the split's own order: `all` is the split itself
        subset = TrainingSubset(size, sizes.by_class, len(examples), len(train), sizes.seed,
                                _fingerprint(examples), counts)  # fmt: skip
        same = next((s for s, _ in out if s.examples == subset.examples), None)
        if same is not None:
            raise SpecError(
                f"{where}: {same.requested} and {size}{' per class' if sizes.by_class else ''} are the same "
                f"{subset.examples} training examples (the training split has {len(train)}); keep one"
            )
        out.append((subset, examples))
    return out


def _first(indices: list[int], size: int | str, label: str | None, where: str) -> list[int]:
    """The first `size` indices (all of them for `all`), or an error naming the size and what there is."""
    if size == ALL:
        return indices
    assert isinstance(size, int)  # _normalized: a count or ALL
    if size > len(indices):
        what = f"examples of label {label!r}" if label is not None else "examples"
        raise SpecError(
            f"{where}: size {size}{' per class' if label is not None else ''} is more than the training "
            f"split's {len(indices)} {what}; use sizes up to {len(indices)}, or all"
        )
    return indices[:size]


def _fingerprint(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.input, ex.target]).encode())
    return h.hexdigest()[:16]
