"""Charts as inline SVG strings: a scatter with its Pareto front and a line chart. No library, no CDN.

A plotting library would add megabytes of JavaScript to a page that must open offline (Plotly) or a
heavy dependency for two chart types (matplotlib); these two fit in a screen of code each. Points carry
a <title>, so hovering shows the exact figures in any browser.

Cost axes use a log scale (trainable parameters run from 0 to 10^9). Zero has no place on a log scale,
so it gets its own slot at the left edge, labelled 0: prompting trains nothing and must still appear.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 440, 290
LEFT, RIGHT, TOP, BOTTOM = 56, 30, 14, 44

#: Colour-blind-friendly categorical palette (Okabe & Ito, 2008), then Tableau's for more methods.
PALETTE = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#8c564b", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round numbers covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


@dataclass
class Scale:
    """Data → pixels along one axis; linear, or log10 with a slot for zero."""

    lo: float
    hi: float
    px0: float
    px1: float
    log: bool = False
    zero_slot: bool = False

    @classmethod
    def fit(cls, values: list[float], px0: float, px1: float, log: bool) -> Scale:
        values = [v for v in values if v is not None and math.isfinite(v)] or [0.0, 1.0]
        if not log:
            ticks = nice_ticks(min(values), max(values))
            return cls(ticks[0], ticks[-1], px0, px1)
        positive = [v for v in values if v > 0] or [1.0]
        lo = 10 ** math.floor(math.log10(min(positive)))
        hi = 10 ** math.ceil(math.log10(max(positive)))
        if hi <= lo:
            hi = lo * 10
        return cls(lo, hi, px0, px1, log=True, zero_slot=any(v <= 0 for v in values))

    def __call__(self, v: float) -> float:
        if not self.log:
            return self.px0 + (v - self.lo) / (self.hi - self.lo) * (self.px1 - self.px0)
        start = self.px0 + (0.1 * (self.px1 - self.px0) if self.zero_slot else 0.0)
        if v <= 0:
            return self.px0
        frac = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return start + frac * (self.px1 - start)

    def ticks(self) -> list[float]:
        if not self.log:
            return nice_ticks(self.lo, self.hi)
        decades = range(round(math.log10(self.lo)), round(math.log10(self.hi)) + 1)
        steps = (1, 2, 5) if len(decades) <= 3 else (1,)
        out = [m * 10**d for d in decades for m in steps if m * 10**d <= self.hi * 1.0001]
        return ([0.0] if self.zero_slot else []) + out


@dataclass
class Point:
    label: str
    x: float
    y: float
    color: str
    lo: float | None = None
    hi: float | None = None
    tip: str = ""
    on_front: bool = True


@dataclass
class Series:
    label: str
    color: str
    points: Sequence[tuple[float, float]]
    tip: Callable[[float, float], str] | None = None
    dashed: bool = False


@dataclass
class Frame:
    """A chart's axes: scales, ticks, titles; the SVG elements are appended to `parts`."""

    x: Scale
    y: Scale
    x_fmt: Callable[[float], str]
    y_fmt: Callable[[float], str]
    x_title: str
    y_title: str
    parts: list[str] = field(default_factory=list)

    def axes(self) -> None:
        p = self.parts
        x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
        for t in self.y.ticks():
            y = self.y(t)
            p.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
            p.append(
                f'<text class="tick" x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(self.y_fmt(t))}</text>'
            )
        for t in self.x.ticks():
            x = self.x(t)
            p.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y1}"/>')
            p.append(
                f'<text class="tick" x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{escape(self.x_fmt(t))}</text>'
            )
        p.append(f'<line class="axis" x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}"/>')
        p.append(f'<line class="axis" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>')
        p.append(
            f'<text class="title" x="{(x0 + x1) / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(self.x_title)}</text>'
        )
        p.append(
            f'<text class="title" transform="translate(14 {(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">'
            f"{escape(self.y_title)}</text>"
        )

    def svg(self, aria: str) -> str:
        body = "\n".join(self.parts)
        return (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(aria)}" xmlns="http://www.w3.org/2000/svg">\n{body}\n</svg>'
        )


def _place_labels(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Put each label right of its point (left near the right edge), nudged up or down off earlier labels,
    and always inside the plot area, clear of the axis tick labels."""
    placed: list[tuple[float, float, float, float]] = []
    out = []
    low, high = HEIGHT - BOTTOM - 4, TOP + 10  # baselines that keep the text inside the plot
    for px, py, text in points:
        width = 6.2 * len(text)
        x = px - 8 - width if px + 8 + width > WIDTH - RIGHT else px + 8
        base = min(py + 4, low)
        candidates = [base + d for d in (0, -12, 12, -24, 24, -36, 36) if high <= base + d <= low] or [base]
        y = next(
            (y for y in candidates if not any(x < b[2] and b[0] < x + width and y - 10 < b[3] and b[1] < y + 2
                                              for b in placed)),
            candidates[0],
        )  # fmt: skip
        placed.append((x, y - 10, x + width, y + 2))
        out.append((x, y, text))
    return out


def scatter(points: list[Point], *, x_title: str, y_title: str, x_fmt: Callable[[float], str],
            y_fmt: Callable[[float], str], x_log: bool = True, aria: str = "") -> str:  # fmt: skip
    """Quality (y) against a cost (x), with 95% intervals and the Pareto front as a staircase."""
    x = Scale.fit([p.x for p in points], LEFT, WIDTH - RIGHT, x_log)
    ys = [v for p in points for v in (p.y, p.lo, p.hi) if v is not None] + [0.0]
    top = min(1.0, max(0.1, math.ceil(max(ys) * 10 + 0.5) / 10))
    y = Scale(0.0, top, HEIGHT - BOTTOM, TOP)
    frame = Frame(x, y, x_fmt, y_fmt, x_title, y_title)
    frame.axes()
    front = sorted((p for p in points if p.on_front), key=lambda p: (x(p.x), -p.y))
    if len(front) > 1:
        path = [f"{x(front[0].x):.1f},{y(front[0].y):.1f}"]
        for a, b in itertools.pairwise(front):
            path += [f"{x(b.x):.1f},{y(a.y):.1f}", f"{x(b.x):.1f},{y(b.y):.1f}"]
        frame.parts.append(f'<polyline class="front" points="{" ".join(path)}"/>')
    for p in points:
        cx, cy = x(p.x), y(p.y)
        g = [
            f'<g class="point{"" if p.on_front else " dominated"}"><title>{escape(p.tip or p.label)}</title>'
        ]
        if p.lo is not None and p.hi is not None:
            g.append(
                f'<line class="err" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(p.lo):.1f}" y2="{y(p.hi):.1f}" stroke="{p.color}"/>'
            )
        g.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{p.color}" stroke="{p.color}"/></g>')
        frame.parts.append("".join(g))
    anchors = [(x(p.x), y(p.y), p.label) for p in points]
    for (px, py, _), (lx, ly, text) in zip(anchors, _place_labels(anchors), strict=True):
        if abs(ly - 4 - py) > 6:  # moved off its point to avoid another label: a leader line says whose it is
            end = lx if lx > px else lx + 6.2 * len(text)
            frame.parts.append(
                f'<line class="leader" x1="{px:.1f}" y1="{py:.1f}" x2="{end:.1f}" y2="{ly - 4:.1f}"/>'
            )
        frame.parts.append(f'<text class="label" x="{lx:.1f}" y="{ly:.1f}">{escape(text)}</text>')
    return frame.svg(aria or f"{y_title} against {x_title}")


def lines(series: list[Series], *, x_title: str, y_title: str, x_fmt: Callable[[float], str],
          y_fmt: Callable[[float], str], x_log: bool = False, y_range: tuple[float, float] | None = None,
          aria: str = "") -> str:  # fmt: skip
    """One polyline per series (learning curves, quality by model size)."""
    xs = [px for s in series for px, _ in s.points]
    ys = [py for s in series for _, py in s.points]
    x = Scale.fit(xs, LEFT, WIDTH - RIGHT, x_log)
    lo, hi = y_range or (min(ys, default=0.0), max(ys, default=1.0))
    ticks = nice_ticks(lo, hi)
    y = Scale(ticks[0], ticks[-1], HEIGHT - BOTTOM, TOP)
    frame = Frame(x, y, x_fmt, y_fmt, x_title, y_title)
    frame.axes()
    for s in series:
        coords = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in s.points)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        frame.parts.append(
            f'<g class="series"><title>{escape(s.label)}</title>'
            f'<polyline class="line" points="{coords}" stroke="{s.color}"{dash}/></g>'
        )
        if len(s.points) <= 12:
            for px, py in s.points:
                tip = escape(s.tip(px, py) if s.tip else f"{s.label}: {y_fmt(py)} at {x_fmt(px)}")
                frame.parts.append(
                    f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3.5" fill="{s.color}"><title>{tip}</title></circle>'
                )
    return frame.svg(aria or f"{y_title} by {x_title}")
