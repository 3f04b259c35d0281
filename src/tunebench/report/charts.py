"""The report's charts as stand-alone SVG files, for documents that cannot embed the HTML page (a README,
FINDINGS.md, a slide): `tunebench report RUNS_DIR --charts DIR`.

The page styles its charts with its own stylesheet; a file on its own carries the same rules in a <style>
element, with the page's colour variables written out, so the file looks as the chart does in the report.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from tunebench.core import store
from tunebench.report import html, svg
from tunebench.report import search as searches
from tunebench.report.data import ReportData
from tunebench.report.size_chart import data_size_chart

#: The page's chart rules (report.html.j2), colour variables resolved.
STYLE = """
svg.chart { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #ffffff; }
.grid { stroke: #edf0f4; }
.axis { stroke: #9aa3b2; }
.tick { fill: #5d6677; }
.title { fill: #1d2330; font-size: 12px; }
.label { fill: #1d2330; font-size: 11px; paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
.leader { stroke: #9aa3b2; stroke-width: 1; }
.front { fill: none; stroke: #1d2330; stroke-width: 1.5; stroke-dasharray: 4 3; opacity: .7; }
.err { stroke-width: 2; opacity: .45; }
.point.dominated circle { fill: #fff; stroke-width: 2; }
.line { fill: none; stroke-width: 2; }
"""


def standalone(chart: str, legend: dict[str, str] | None = None) -> str:
    """A chart's SVG with the page's chart styles inside it and, given `legend` (label → colour), the
    legend the page draws beside it as rows under the plot (a file has no page around it)."""
    head, sep, body = chart.partition(">")
    if not sep or not head.startswith("<svg"):
        raise ValueError("not an <svg> element")
    parts, rows = _legend(legend or {})
    if rows:
        height = svg.HEIGHT + rows * LEGEND_ROW + 6
        head = head.replace(f'viewBox="0 0 {svg.WIDTH} {svg.HEIGHT}"', f'viewBox="0 0 {svg.WIDTH} {height}"')
        head = head.replace(f'height="{svg.HEIGHT}"', f'height="{height}"')
        body = body.replace("</svg>", "\n".join(parts) + "\n</svg>")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{head}>\n<style>{STYLE}</style>{body}\n'


LEGEND_ROW = 16
"""Height of one legend row (px)."""


def _legend(legend: dict[str, str]) -> tuple[list[str], int]:
    """SVG elements of a legend wrapped to the chart's width, and how many rows it takes."""
    parts, x, row = [], float(svg.LEFT), 0
    for label, color in legend.items():
        width = 16 + 6.2 * len(label) + 14  # swatch, text (about 6.2 px a character at 11 px), gap
        if x + width > svg.WIDTH and x > svg.LEFT:
            x, row = float(svg.LEFT), row + 1
        y = svg.HEIGHT + row * LEGEND_ROW + 4
        parts.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="10" height="10" rx="2" fill="{color}"/>'
            f'<text class="tick" x="{x + 14:.0f}" y="{y + 9:.0f}">{escape(label)}</text>'
        )
        x += width
    return parts, (row + 1 if parts else 0)


def chart_svgs(data: ReportData) -> dict[str, str]:
    """File name → stand-alone chart (legend included), for every chart the HTML report draws."""
    palette = html.colors(data)
    shown = {e.method for e in data.entries if e.ok}
    legend = {m: c for m, c in palette.items() if m in shown}  # as the page's legend
    charts: dict[str, str] = {}
    size = html.size_chart(data, palette)
    if size:
        charts["quality-by-size.svg"] = size
    by_examples = data_size_chart(data, palette)
    if by_examples:
        charts["quality-by-training-examples.svg"] = by_examples
    for pareto in html.pareto_charts(data, palette):
        charts[f"pareto-{store.safe_name(pareto['key'])}.svg"] = pareto["svg"]
    selection = html.selection_chart(data, palette)
    if selection:
        charts["lr-sensitivity.svg"] = selection
    only: dict[str, dict[str, str]] = {}  # a chart of one method's search: its legend names that method
    metric = (data.metric or "score").replace("_", " ").capitalize()
    for section in searches.sections(data.entries, palette, metric):
        label = store.safe_name(section["label"])
        for kind, key in (("search", "chart"), ("search-pareto", "pareto_chart")):
            if section[key]:
                charts[f"{kind}-{label}.svg"] = section[key]
                only[f"{kind}-{label}.svg"] = {section["label"]: palette[section["method"]]}
    for name, chart in html.curve_charts(data, palette).items():
        if chart:
            charts[f"{name}-curve.svg"] = chart
    searched = {e.method for e in data.entries if e.ok and e.selection}
    only["lr-sensitivity.svg"] = {m: c for m, c in legend.items() if m in searched}
    return {name: standalone(chart, only.get(name, legend)) for name, chart in charts.items()}


def write_charts(data: ReportData, folder: str | Path) -> list[Path]:
    """Write every chart as `folder/<name>.svg` (atomically); returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, chart in chart_svgs(data).items():
        path = folder / name
        store.write_text_atomic(path, chart)
        written.append(path)
    return written
