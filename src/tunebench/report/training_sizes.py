"""How quality grows with labelled data: the report of an experiment with several training-set sizes
(`data_sizes`, runs/data_sizes.py). Pure data, no drawing.

Each size gets its own leaderboard (report/table.py: seeds aggregated, two-level bootstrap intervals),
all on the same test items. The report's main leaderboard, charts and recommendation are those of the
largest size; this module adds the curve of quality against training examples and the crossovers.

Crossovers come from paired tests, not from where two curves' means cross. The reference is the method
that is best at the largest size. At every size, each other method is compared with it on the same test
items (McNemar's exact test with one seed each, a paired bootstrap with several: report/stats.py),
Holm-corrected over that size's comparisons, and called *behind* (the reference is better), *tied* (the
test cannot tell them apart) or *ahead*. With several models the question is asked of each model: every
model has its own reference (its best method at the largest size), its other methods are compared with
that, and each model's reference with the best of all (a decoder's probe against its own fine-tuning,
not against another model's, says how much data that model needs). A crossover is where that verdict changes between two adjacent
sizes: "up to 30 examples per class the probe is as good as full fine-tuning; from 100 on full
fine-tuning is ahead" places it between 30 and 100, the resolution of the sizes tried. Tied means "not
distinguishable on this test set", so every verdict is given with its difference and interval.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tunebench.report import fmt, stats
from tunebench.report.load import ReportError, RunData
from tunebench.report.table import Entry, best_entry, leaderboard

BEHIND, TIED, AHEAD = "behind", "tied", "ahead"


@dataclass
class SizeLevel:
    """One training-set size and its leaderboard."""

    tag: str | None
    """The size's tag in run folder names (n100, 10-per-class); None for runs without a size."""
    label: str
    """As a table's header: '100', 'all (5,000)', '10 per class', 'all (25–31 per class)'."""
    long: str
    """In a sentence: '100 examples', 'all 5,000 training examples', '10 examples per class', 'all the
    training examples (25–31 per class)'."""
    examples: int
    """Training examples at this size."""
    x: float
    """Where it sits on the chart: training examples, or examples per label for per-class sizes."""
    entries: list[Entry] = field(default_factory=list)
    steps: float | None = None
    """Optimizer steps of the methods that trained at this size (the largest, when they differ)."""
    passes: float | None = None
    """Passes over this size's training examples those steps made (examples seen / examples)."""


@dataclass
class Verdict:
    """A method against its reference at one size: its difference (method − reference) and the test."""

    reference: str
    """The label of the entry it is compared with."""
    size: str
    """The size in a sentence (SizeLevel.long)."""
    x: float
    state: str
    """BEHIND, TIED or AHEAD (of the reference)."""
    diff: float
    ci95: tuple[float, float] | None
    p_adjusted: float | None


@dataclass
class Crossover:
    """One method's verdicts against its reference, smallest size first, and what they say."""

    label: str
    method: str
    reference: str
    verdicts: list[Verdict]
    sentence: str

    @property
    def steady(self) -> bool:
        """The same verdict at every size."""
        return len({v.state for v in self.verdicts}) == 1

    @property
    def crosses(self) -> bool:
        """The verdict at the largest size differs from the one at the smallest: a lasting change. A
        verdict that changes and comes back (ahead, tied, ahead) places no crossover: with one test per
        size, a single size's different verdict is as likely the test's noise as a change of regime."""
        return self.verdicts[0].state != self.verdicts[-1].state


@dataclass
class SizeStudy:
    per_class: bool
    levels: list[SizeLevel]
    """Smallest first; the last is the size of the main leaderboard."""
    reference: str | None
    """Label of the entry best at the largest size (with one model, the one every crossover is measured
    against)."""
    crossovers: list[Crossover]
    summary: str
    """The crossovers in sentences, for the recommendation."""
    budget_note: str
    references: list[str] = field(default_factory=list)
    """Every model's best entry at the largest size, the overall best first: what its other entries are
    compared with (one entry with one model)."""

    @property
    def unit(self) -> str:
        return "examples per class" if self.per_class else "training examples"

    @property
    def x_title(self) -> str:
        return "Training examples per class" if self.per_class else "Training examples"

    @property
    def largest(self) -> SizeLevel:
        return self.levels[-1]

    def curves(self) -> dict[str, list[tuple[float, Entry]]]:
        """Entry label → [(x, its entry at that size)] over the sizes where it finished, smallest first."""
        out: dict[str, list[tuple[float, Entry]]] = {}
        for level in self.levels:
            for e in level.entries:
                if e.ok:
                    out.setdefault(e.label, []).append((level.x, e))
        return out

    def verdict(self, label: str, size: str) -> Verdict | None:
        found = next((c for c in self.crossovers if c.label == label), None)
        return next((v for v in found.verdicts if v.size == size), None) if found else None


def reference_legend(study: SizeStudy) -> str:
    """What a row's reference is, for a table's note."""
    if len(study.references) > 1:
        return "each model's best at the largest size (that one: the best of all)"
    return "the best at the largest size"


def _size_of(run: RunData) -> dict[str, Any] | None:
    return run.result.get("data_size")


def split_by_size(runs: list[RunData]) -> list[tuple[dict[str, Any] | None, list[RunData]]]:
    """The runs grouped by training-set size, smallest first (a run without a size: the whole split)."""
    groups: dict[str | None, list[RunData]] = {}
    for run in runs:
        groups.setdefault((_size_of(run) or {}).get("tag"), []).append(run)
    sized = [(_size_of(rs[0]), rs) for rs in groups.values()]
    plain = groups.get(None)
    if plain and any(size is not None and size["examples"] == _examples(None, plain) for size, _ in sized):
        # runs without a size, beside a sized level of the whole split: the same runs (an experiment that
        # added data_sizes later reuses them), shown once, at that level
        sized = [(size, rs) for size, rs in sized if size is not None]
    return sorted(sized, key=lambda g: _examples(g[0], g[1]))


def _examples(size: dict[str, Any] | None, runs: list[RunData]) -> int:
    if size is not None:
        return int(size["examples"])
    sizes = [((r.result.get("config") or {}).get("task") or {}).get("sizes") or {} for r in runs]
    return max((int(s.get("train") or 0) for s in sizes), default=0)


def size_study(runs: list[RunData]) -> SizeStudy | None:
    """The study of an experiment with several training-set sizes; None with one size (or none)."""
    groups = split_by_size(runs)
    if len(groups) < 2:
        return None
    kinds = {bool(size.get("per_class")) for size, _ in groups if size is not None}
    if len(kinds) > 1:
        raise ReportError(
            "these results mix per-class training-set sizes with sizes in examples; report one experiment "
            "folder at a time (" + ", ".join(r.path for _, rs in groups for r in rs[:1]) + ")"
        )
    per_class = kinds == {True}
    levels = [_level(size, rs, per_class) for size, rs in groups]
    best = best_entry(levels[-1].entries)
    pairs = _reference_pairs(levels, best) if best is not None else {}
    crossovers = _crossovers(levels, pairs)
    references = list(dict.fromkeys([best.label, *pairs.values()])) if best is not None else []
    study = SizeStudy(
        per_class, levels, best.label if best else None, crossovers, "", _budget_note(levels), references
    )
    study.summary = summary(study)
    return study


def _reference_pairs(levels: list[SizeLevel], best: Entry) -> dict[str, str]:
    """Entry label → the label of the entry it is compared with: its model's best at the largest size, and
    for that best, the best of all. An entry that did not finish at the largest size is still compared
    at the sizes where it did. The pairs against the best of all come first."""
    by_model: dict[str, list[Entry]] = {}
    for e in levels[-1].entries:
        if e.ok:
            by_model.setdefault(e.model, []).append(e)
    refs = {
        model: best if model == best.model else best_entry(entries) for model, entries in by_model.items()
    }
    pairs: dict[str, str] = {}
    for level in reversed(levels):  # the largest size first: its order is the leaderboard's
        for e in level.entries:
            if not e.ok or e.label == best.label or e.label in pairs:
                continue
            ref = refs.get(e.model)
            pairs[e.label] = best.label if ref is None or ref.label == e.label else ref.label
    return dict(sorted(pairs.items(), key=lambda kv: kv[1] != best.label))


def _level(size: dict[str, Any] | None, runs: list[RunData], per_class: bool) -> SizeLevel:
    examples = _examples(size, runs)
    entries = leaderboard(runs)
    whole = size is None or size["requested"] == "all"
    if per_class and size is not None:
        counts = list((size.get("label_counts") or {}).values()) or [examples]
        x = examples / len(counts) if whole else float(size["requested"])
        spread = f"{min(counts):,}" if min(counts) == max(counts) else f"{min(counts):,}–{max(counts):,}"
        label = f"all ({spread} per class)" if whole else f"{size['requested']} per class"
        long = (
            f"all the training examples ({spread} per class)"
            if whole
            else f"{size['requested']} examples per class"
        )
    else:
        x = float(examples)
        label = f"all ({examples:,})" if whole else f"{examples:,}"
        long = f"all {examples:,} training examples" if whole else f"{examples:,} examples"
    trained = [e for e in entries if e.ok and e.trains]
    steps = max((e.planned_steps or e.steps or 0.0 for e in trained), default=None)
    seen = max((e.examples or 0.0 for e in trained), default=None)
    passes = seen / examples if seen and examples else None
    return SizeLevel((size or {}).get("tag"), label, long, examples, x, entries, steps, passes)


def _crossovers(levels: list[SizeLevel], pairs: dict[str, str]) -> list[Crossover]:
    """Every entry against its reference (`_reference_pairs`) at every size, Holm-corrected over each
    size's comparisons."""
    found: dict[str, list[Verdict]] = {}
    methods: dict[str, str] = {}
    for level in levels:
        by_label = {e.label: e for e in level.entries if e.ok}
        compared = [(by_label[a], by_label[b]) for a, b in pairs.items() if a in by_label and b in by_label]
        comparisons = [stats.compare_entries(e, ref) for e, ref in compared]
        stats.holm_adjust(comparisons)
        for (e, ref), c in zip(compared, comparisons, strict=True):
            if c.p_value is None:
                continue
            state = TIED if not c.distinguishable else AHEAD if c.diff > 0 else BEHIND
            verdict = Verdict(ref.label, level.long, level.x, state, c.diff, c.ci95, c.p_adjusted)
            found.setdefault(e.label, []).append(verdict)
            methods[e.label] = e.method
    return [
        Crossover(label, methods[label], pairs[label], verdicts, _sentence(label, pairs[label], verdicts))
        for label, verdicts in found.items()
    ]


def _segments(verdicts: list[Verdict]) -> list[list[Verdict]]:
    """Runs of adjacent sizes with the same verdict."""
    out: list[list[Verdict]] = []
    for v in verdicts:
        if out and out[-1][0].state == v.state:
            out[-1].append(v)
        else:
            out.append([v])
    return out


def _at(v: Verdict) -> str:
    """'at 300: Δ −5.1 points (−9.0, −1.2), p (Holm) = 0.02': the interval is the difference's own, the p
    is corrected over the size's comparisons (so an interval that excludes 0 may come with p > 0.05)."""
    p = fmt.pvalue(v.p_adjusted)
    shown = p.replace("<", "< ") if p.startswith("<") else "= " + p
    return f"at {v.size}: Δ {fmt.diff(v.diff, v.ci95)} points, p (Holm) {shown}"


def _sizes(verdicts: list[Verdict]) -> str:
    """The verdicts' sizes in a sentence: '10 examples per class', or 'a, b and c'."""
    names = [v.size for v in verdicts]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _short(state: str, label: str, reference: str) -> str:
    """A verdict in a few words, for a list of sizes: 'not distinguishable', 'probe ahead'."""
    return {TIED: "not distinguishable", BEHIND: f"{reference} ahead", AHEAD: f"{label} ahead"}[state]


def _phrase(state: str, label: str, reference: str) -> str:
    return {
        TIED: f"{label} is as good as {reference} (a paired test cannot tell them apart)",
        BEHIND: f"{reference} is ahead of {label}",
        AHEAD: f"{label} is ahead of {reference}",
    }[state]


def _sentence(label: str, reference: str, verdicts: list[Verdict]) -> str:
    """What the verdicts of one method say, smallest size first, with the crossovers placed between the
    sizes where the verdict changes."""
    segments = _segments(verdicts)
    if len(segments) == 1:
        seg = segments[0]
        sizes = ", ".join(v.size for v in seg)
        return f"At every size tried ({sizes}), {_phrase(seg[0].state, label, reference)} ({_at(seg[-1])})"
    first = segments[0][0].state
    if first == segments[-1][0].state:  # the verdict comes back: no lasting change to place
        same = [v for seg in segments if seg[0].state == first for v in seg]
        other = [v for seg in segments if seg[0].state != first for v in seg]
        elsewhere = "; ".join(f"{_short(v.state, label, reference)} {_at(v)}" for v in other)
        return (
            f"{_phrase(first, label, reference)} at {_sizes(same)} ({_at(same[-1])}), but not in between "
            f"({elsewhere}): the verdict comes back, so this places no crossover"
        )
    parts = []
    for i, seg in enumerate(segments):
        if i == 0:
            where = f"Up to {seg[-1].size}"
        elif i == len(segments) - 1:
            where = f"from {seg[0].size} on"
        elif len(seg) == 1:
            where = f"at {seg[0].size}"
        else:
            where = f"from {seg[0].size} to {seg[-1].size}"
        # the verdict nearest the crossover: the last size before it, the first after it
        nearest = seg[-1] if i == 0 else seg[0]
        parts.append(f"{where}, {_phrase(seg[0].state, label, reference)} ({_at(nearest)})")
    places = [f"between {a[-1].size} and {b[0].size}" for a, b in itertools.pairwise(segments)]
    text = "; ".join(parts)
    return f"{text}: the crossover{'s lie' if len(places) > 1 else ' lies'} {', '.join(places)}"


def summary(study: SizeStudy) -> str:
    """The crossovers, headline first ("below about N examples X is as good as R"), then the methods whose
    verdict never changes, in one sentence."""
    if study.reference is None:
        return ""
    lines = []
    for c in study.crossovers:
        segments = _segments(c.verdicts)
        if c.steady:
            continue
        if not c.crosses:  # changed and came back
            lines.append(c.sentence + ".")  # it starts with a name: not capitalised
            continue
        first, second = segments[0], segments[1]
        if first[0].state in (TIED, AHEAD) and len(segments) == 2 and second[0].state == BEHIND:
            good = "as good as" if first[0].state == TIED else "better than"
            lines.append(
                f"Below about {second[0].size}, {c.label} is {good} {c.reference} "
                f"({_at(first[-1])}); from {second[0].size} on, {c.reference} is ahead ({_at(second[0])})."
            )
        else:
            lines.append(c.sentence + ".")
    steady = [c for c in study.crossovers if c.steady]
    every = max((len(c.verdicts) for c in study.crossovers), default=0)
    for reference in study.references:
        for state, verb in ((BEHIND, "is ahead of"), (TIED, "is not distinguishable from")):
            # a method run at fewer sizes than the others is said to be compared at those sizes only
            where: dict[str, list[str]] = {}
            for c in steady:
                if c.reference == reference and c.verdicts[0].state == state:
                    sizes = [v.size for v in c.verdicts]
                    at = (
                        "at every size tried (no crossover)"
                        if len(sizes) == every
                        else f"at {', '.join(sizes)}, the only size{'s' if len(sizes) > 1 else ''} both ran"
                    )
                    where.setdefault(at, []).append(c.label)
            for at, names in where.items():
                lines.append(f"{reference} {verb} {', '.join(names)} {at}.")
    return " ".join(lines)


def _budget_note(levels: list[SizeLevel]) -> str:
    """How the budget played out across sizes: the same steps (a steps budget: small sets repeated) or
    steps that grow with the size (an epochs budget)."""
    trained = [lv for lv in levels if lv.steps]
    if not trained:
        return ""
    steps = {round(lv.steps or 0) for lv in trained}
    passes = ", ".join(f"{lv.label}: {lv.passes:.3g}" for lv in trained if lv.passes is not None)
    if len(steps) == 1:
        return (
            f"Every size trained the same {steps.pop():,} optimizer steps (a budget in steps): the smaller "
            f"the training set, the more passes over it ({passes})."
        )
    shown = ", ".join(f"{lv.label}: {lv.steps:,.0f}" for lv in trained)
    return (
        f"Optimizer steps grow with the size (a budget in epochs): {shown}; passes over the training "
        f"set: {passes}."
    )


def to_json(study: SizeStudy) -> dict[str, Any]:
    """The study for the JSON report: entries as their label, mean and interval (the per-item samples are
    in the runs' predictions files)."""
    return {
        "per_class": study.per_class,
        "reference": study.reference,
        "references": study.references,
        "summary": study.summary,
        "budget_note": study.budget_note,
        "levels": [
            {
                "tag": lv.tag, "label": lv.label, "examples": lv.examples, "x": lv.x, "steps": lv.steps,
                "passes": lv.passes,
                "entries": [
                    {"label": e.label, "model": e.model, "method": e.method, "seeds": e.seeds, "mean": e.mean,
                     "ci95": e.ci95, "best": e.best, "tied": e.tied, "failed": e.failed}
                    for e in lv.entries
                ],
            }
            for lv in study.levels
        ],
        "crossovers": [
            {"label": c.label, "method": c.method, "reference": c.reference, "sentence": c.sentence,
             "crosses": c.crosses, "verdicts": [vars(v) for v in c.verdicts]}
            for c in study.crossovers
        ],
    }  # fmt: skip
