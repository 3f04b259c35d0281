"""The chart of quality against training examples (an experiment with several `data_sizes`): one line per
method through its mean at each size, with the 95% interval as a vertical bar, on a log x axis (sizes
are usually spaced by factors: 100, 300, 1,000). Drawn with svg.py's axes; the data is
report/training_sizes.py's.

Where several methods sit at the same size their bars would hide each other, so each method's points are
moved a few pixels sideways (the same amount at every size); the hover text gives the exact size.
"""

from __future__ import annotations

from html import escape

from tunebench.report import fmt, svg
from tunebench.report.data import ReportData

#: Pixels between the bars of neighbouring methods at one size.
DODGE = 4.0
#: Pixels between the axes and the first and last sizes' ticks.
INSET = 12.0
#: For a method that has no colour in the palette (it ran at some sizes, none of them the largest).
GREY = "#7f7f7f"


def data_size_chart(data: ReportData, palette: dict[str, str]) -> str | None:
    """The SVG, or None when the experiment has a single training-set size."""
    study = data.sizes
    if study is None:
        return None
    curves = study.curves()
    if not curves:
        return None
    metric = (data.metric or "score").replace("_", " ").capitalize()
    unit = "examples per class" if study.per_class else "examples"
    xs = [x for points in curves.values() for x, _ in points]
    ys = [
        v for points in curves.values() for _, e in points for v in (e.mean, *(e.ci95 or ())) if v is not None
    ]
    # inset from the axes: the smallest size often sits on a decade, the axis's left end
    x = svg.Scale.fit(xs, svg.LEFT + INSET, svg.WIDTH - svg.RIGHT - INSET, log=True)
    top = min(1.0, max(0.1, (int(max(ys, default=0.0) * 10 + 0.5) + 1) / 10))
    y = svg.Scale(0.0, top, svg.HEIGHT - svg.BOTTOM, svg.TOP)
    frame = svg.Frame(x, y, lambda v: fmt.count(v), lambda v: fmt.pct(v, 0), study.x_title, metric)
    frame.axes()
    for i, (label, points) in enumerate(curves.items()):
        color = palette.get(points[0][1].method, GREY)
        shift = (i - (len(curves) - 1) / 2) * DODGE
        coords = " ".join(f"{x(px) + shift:.1f},{y(e.mean or 0.0):.1f}" for px, e in points)
        parts = [f'<g class="series"><title>{escape(label)}</title>']
        parts.append(f'<polyline class="line" points="{coords}" stroke="{color}"/>')
        for px, e in points:
            cx, cy = x(px) + shift, y(e.mean or 0.0)
            tip = f"{label}: {fmt.pct(e.mean)} (95% CI {fmt.ci(e.ci95)}) at {px:,.4g} {unit}"
            if e.ci95 is not None:
                lo, hi = e.ci95
                parts.append(
                    f'<line class="err" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" '
                    f'stroke="{color}"/>'
                )
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{color}"><title>{escape(tip)}</title></circle>'
            )
        parts.append("</g>")
        frame.parts.append("".join(parts))
    return frame.svg(f"{metric} against {study.x_title.lower()}, per method, with 95% intervals")
