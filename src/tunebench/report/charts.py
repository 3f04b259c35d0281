"""The report's charts as stand-alone SVG files, for documents that cannot embed the HTML page (a README,
FINDINGS.md, a slide): `tunebench report RUNS_DIR --charts DIR`.

The page styles its charts with its own stylesheet; a file on its own carries the same rules in a <style>
element, with the page's colour variables written out, so the file looks as the chart does in the report.
"""

from __future__ import annotations

from pathlib import Path

from tunebench.report import html
from tunebench.report.data import ReportData
from tunebench.runs import store

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


def standalone(svg: str) -> str:
    """A chart's SVG with the page's chart styles inside it."""
    head, sep, body = svg.partition(">")
    if not sep or not head.startswith("<svg"):
        raise ValueError("not an <svg> element")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{head}>\n<style>{STYLE}</style>{body}\n'


def chart_svgs(data: ReportData) -> dict[str, str]:
    """File name → chart, for every chart the HTML report draws for this data."""
    palette = html.colors(data)
    charts: dict[str, str] = {}
    size = html.size_chart(data, palette)
    if size:
        charts["quality-by-size.svg"] = size
    for chart in html.pareto_charts(data, palette):
        charts[f"pareto-{store.safe_name(chart['key'])}.svg"] = chart["svg"]
    for name, svg in html.curve_charts(data, palette).items():
        if svg:
            charts[f"{name}-curve.svg"] = svg
    return charts


def write_charts(data: ReportData, folder: str | Path) -> list[Path]:
    """Write every chart as `folder/<name>.svg` (atomically); returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, svg in chart_svgs(data).items():
        path = folder / name
        store.write_text_atomic(path, standalone(svg))
        written.append(path)
    return written
