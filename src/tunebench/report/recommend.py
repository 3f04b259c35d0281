"""Which strategy fits my needs: constraints → the best method that fits, its runners-up, and why.

The best method is the highest-scoring entry that meets every constraint; its runners-up are the other
entries that meet them and that a paired test against it cannot tell apart (report/stats.py, Holm-
corrected). The sentence is written from the measurements only: the score, what it costs, and what a
stronger method was ruled out by or what a tied one saves; it adds when the methods it names differ by
less than the test set can detect, and when one of them was still improving at the end of its budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.core.units import MS_UNITS, TIME_UNITS, parse_memory, parse_number, parse_params
from tunebench.report import fmt, stats
from tunebench.report.search import configuration_clause
from tunebench.report.table import Entry


@dataclass
class Constraints:
    """Limits a method must meet to be recommended; None means no limit."""

    max_memory_mb: float | None = None
    max_trainable_params: float | None = None
    max_trainable_pct: float | None = None
    max_latency_ms: float | None = None
    max_train_seconds: float | None = None
    shown: dict[str, str] = field(default_factory=dict)
    """flag → the limit as the user wrote it, for the report."""

    def violations(self, e: Entry) -> list[str]:
        """Why `e` does not fit, one phrase per limit it exceeds (or cannot be checked against)."""
        checks = [
            ("--max-memory", e.peak_mb, self.max_memory_mb, fmt.mem_mb, "peak memory"),
            (
                "--max-trainable-params",
                e.trainable,
                self.max_trainable_params,
                fmt.count,
                "trainable parameters",
            ),
            ("--max-trainable-params", e.trainable_pct, self.max_trainable_pct, fmt.share, "trainable share"),
            ("--max-latency-ms", e.serve_latency_ms, self.max_latency_ms, fmt.ms, "latency"),
            ("--max-train-seconds", e.train_seconds, self.max_train_seconds, fmt.seconds, "training time"),
        ]
        out = []
        for flag, value, limit, show, what in checks:
            if limit is None:
                continue
            if value is None:
                out.append(f"its {what} was not measured ({flag})")
            elif value > limit:
                out.append(f"needs {show(value)} {what} ({flag} {self.shown.get(flag) or show(limit)})")
        return out


def parse_constraints(
    max_memory: str | None = None,
    max_trainable_params: str | None = None,
    max_latency_ms: str | None = None,
    max_train_seconds: str | None = None,
) -> Constraints:
    """Constraints from the command line's text, with errors that name the flag."""
    c = Constraints()
    if max_memory is not None:
        c.max_memory_mb, c.shown["--max-memory"] = parse_memory(max_memory), str(max_memory)
    if max_trainable_params is not None:
        c.max_trainable_params, c.max_trainable_pct = parse_params(max_trainable_params)
        c.shown["--max-trainable-params"] = str(max_trainable_params)
    if max_latency_ms is not None:
        c.max_latency_ms = parse_number(max_latency_ms, "--max-latency-ms", MS_UNITS)
        c.shown["--max-latency-ms"] = fmt.ms(c.max_latency_ms)
    if max_train_seconds is not None:
        c.max_train_seconds = parse_number(max_train_seconds, "--max-train-seconds", TIME_UNITS)
        c.shown["--max-train-seconds"] = str(max_train_seconds)
    return c


@dataclass
class Recommendation:
    best: Entry | None
    runners_up: list[Entry]
    """Entries that fit and that a paired test cannot tell from the recommended one (Holm-corrected)."""
    excluded: list[tuple[Entry, list[str]]]
    """Entries ruled out by a constraint, with the reasons."""
    why: str
    versus: dict[str, stats.Comparison] = field(default_factory=dict)
    """Label → that fitting entry against the recommended one (the family the runners-up come from)."""
    at_scale: str = ""
    """What the choice would cost at a larger size (filled by the estimator when a target is given)."""


def recommend(
    entries: list[Entry],
    constraints: Constraints | None = None,
    detectable: stats.Detectable | None = None,
) -> Recommendation:
    """The best entry that fits the constraints, its runners-up, and the sentence saying why.

    `detectable` (the report's smallest detectable difference) lets the sentence say when the methods it
    names differ by less than the test set can tell apart."""
    constraints = constraints or Constraints()
    ok = sorted((e for e in entries if e.ok), key=lambda e: -(e.mean or 0.0))
    if not ok:
        return Recommendation(None, [], [], "No run finished, so there is nothing to recommend yet.")
    excluded = [(e, constraints.violations(e)) for e in ok]
    excluded = [(e, why) for e, why in excluded if why]
    ruled_out = {id(e) for e, _ in excluded}
    fits = [e for e in ok if id(e) not in ruled_out]
    if not fits:
        e, why = excluded[0]
        return Recommendation(None, [], excluded, f"No method fits: even the best, {e.label}, {why[0]}.")
    best = fits[0]
    if best.mean is not None and best.mean <= 0.0:  # a "best" at zero would recommend a method that failed
        metric = (best.metric_name or "score").replace("_", " ")
        return Recommendation(
            None, [], excluded,
            f"No method learned the task: the best that fits scores {fmt.pct(best.mean)} {metric}, so there is "
            "nothing to recommend; a longer budget, another learning rate or a larger model may change that.",
        )  # fmt: skip
    versus = _versus(best, ok, fits)
    runners = [e for e in fits[1:] if _tied(versus[e.label])]
    rec = Recommendation(best, runners, excluded, "", versus=versus)
    rec.why = _why(rec, fits, detectable)
    return rec


def _versus(best: Entry, ok: list[Entry], fits: list[Entry]) -> dict[str, stats.Comparison]:
    """Each other entry against the recommended one, Holm-corrected as one family. When the recommended
    entry is the leaderboard's best, the family is the leaderboard's (every finished entry), so the
    runners-up are exactly the entries marked tied; otherwise it is the entries that fit. The bootstraps
    are cached on the entries, so each comparison is a subtraction."""
    family = ok if best.best else fits
    comparisons = {e.label: stats.compare_entries(e, best) for e in family if e is not best}
    stats.holm_adjust(list(comparisons.values()))
    return comparisons


def _tied(c: stats.Comparison) -> bool:
    return c.p_value is not None and not c.distinguishable


def _costs(e: Entry) -> str:
    parts = [f"{fmt.share(e.trainable_pct)} of the parameters trained" if e.trainable else "nothing trained"]
    if e.peak_mb is not None:
        parts.append(f"{fmt.mem_mb(e.peak_mb)} peak memory")
    if e.trains:
        parts.append(f"{fmt.seconds(e.train_seconds)} of training")
    if e.serve_latency_ms is not None:
        parts.append(f"{fmt.ms(e.serve_latency_ms)} per example")
    return _and(parts)


def _and(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


#: (what, value) for "needs 3.6% of its trainable parameters" phrases.
_SAVINGS = [
    ("trainable parameters", lambda e: e.trainable),
    ("memory", lambda e: e.peak_mb),
    ("training time", lambda e: e.train_seconds),
    ("latency", lambda e: e.serve_latency_ms),
]


def _cheaper(a: Entry, b: Entry) -> list[str]:
    """Where `a` costs at most half of what `b` costs (a difference worth a sentence), as 'N% of its X'."""
    out = []
    for what, value in _SAVINGS:
        va, vb = value(a), value(b)
        if va is not None and vb and va <= 0.5 * vb:
            share = 100 * va / vb
            out.append(f"{share:.2g}% of its {what}" if share < 10 else f"{share:.0f}% of its {what}")
    return out


def _why(rec: Recommendation, fits: list[Entry], detectable: stats.Detectable | None) -> str:
    best, runners, excluded = rec.best, rec.runners_up, rec.excluded
    assert best is not None
    metric = (best.metric_name or "score").replace("_", " ")
    text = (
        f"{best.label} scores {fmt.pct(best.mean)} {metric} (95% CI {fmt.ci(best.ci95)}) with {_costs(best)}"
        + configuration_clause(best)
    )
    stronger = [(e, why) for e, why in excluded if (e.mean or 0.0) > (best.mean or 0.0)]
    cheaper = [(r, _cheaper(r, best)) for r in runners]
    cheaper = [(r, what) for r, what in cheaper if what]
    named: list[Entry] = []  # the runners-up the sentence names
    if stronger:
        e, why = stronger[0]
        text += f"; {e.label} scores higher ({fmt.pct(e.mean)}) but {why[0]}"
    elif cheaper and len(runners) == 1:
        r, what = cheaper[0]
        named = [r]
        text += f"; {r.label} ({fmt.pct(r.mean)}) is within the noise of it and needs {_and(what)}"
    elif cheaper:
        # Several tied: say how many (a reader should know when most of the table is one tie), and name
        # the one that saves the most: cheaper on the most costs, then the fewest trainable parameters.
        r, what = min(cheaper, key=lambda rw: (-len(rw[1]), rw[0].trainable or 0))
        named = [r]
        text += (
            f"; {len(runners)} of the {len(fits) - 1} others that fit are within the noise of it, among "
            f"them {r.label} ({fmt.pct(r.mean)}), which needs {_and(what)}"
        )
    elif runners:
        named = runners
        text += (
            f"; {', '.join(r.label for r in runners)} {'is' if len(runners) == 1 else 'are'} within the noise"
        )
    elif len(fits) > 1:
        text += f", ahead of {fits[1].label} ({fmt.pct(fits[1].mean)}) beyond the noise"
    if detectable is not None and any(abs(rec.versus[r.label].diff) < detectable.diff for r in named):
        text += (
            f"; differences under {100 * detectable.diff:.1f} points cannot be told apart on "
            f"{detectable.items:,} test items"
        )
    return text + _budget_clause([best, *named]) + "."


def _budget_clause(named: list[Entry]) -> str:
    """'; X was still improving when its budget ran out: …' for the named entries that were."""
    limited = [e.label for e in named if e.budget_limited]
    if not limited:
        return ""
    one = len(limited) == 1
    return (
        f"; {_and(limited)} {'was' if one else 'were'} still improving when {'its' if one else 'their'} "
        "budget ran out: a longer budget may change the ranking"
    )
