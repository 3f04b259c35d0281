"""Quality against cost: the Pareto front of the leaderboard on each cost axis. Pure data.

An entry is on the front of an axis when no other entry is at least as good and at most as costly, and
strictly better in one of the two. Those are the only choices worth making on that axis; everything
else is beaten by something on the front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tunebench.report.table import Entry


@dataclass(frozen=True)
class Axis:
    key: str
    title: str
    unit: str
    value: Callable[[Entry], float | None]
    log: bool = True
    """Costs span orders of magnitude (parameters: 0 to 10^9), so the charts use a log scale."""


AXES = [
    Axis("trainable", "Trainable parameters", "parameters", lambda e: e.trainable),
    Axis("memory", "Peak memory (training or evaluation)", "MB", lambda e: e.peak_mb),
    Axis("train_time", "Training time", "seconds", lambda e: e.train_seconds),
    Axis("latency", "Latency per example (merged where possible)", "ms", lambda e: e.serve_latency_ms),
]


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(cost, quality) a dominates b: no costlier, no worse, and strictly better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (cost, quality) points, cheapest first."""
    keep = [
        i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)
    ]
    return sorted(keep, key=lambda i: (points[i][0], -points[i][1]))


def pareto(entries: list[Entry], axis: Axis) -> list[Entry]:
    """The entries on the front of `axis`, cheapest first; entries without that measurement are left out."""
    measured = [
        (e, (float(cost), float(e.mean)))
        for e in entries
        if e.ok and e.mean is not None and (cost := axis.value(e)) is not None
    ]
    points = [p for _, p in measured]
    return [measured[i][0] for i in front(points)]
