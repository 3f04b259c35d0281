"""Claim 4's summary across digit counts: one tunebench report per digit count, combined.

    python experiments/goat_by_digits.py [--runs runs] [--digits 2,4,6] [--chart FILE]

Each digit count is its own experiment (`goat-add-<d>`, see goat_capability.yaml), because each is its own
task; this reads their reports with tunebench's report code and prints exact match with its 95% interval
per method and digit count as a Markdown table, and draws accuracy by digit count (one line per method)
with the report's own chart code, as a stand-alone SVG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tunebench.report import fmt, make_report, svg
from tunebench.report.charts import standalone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="the run store the experiments wrote (--out)")
    parser.add_argument("--digits", default="2,4,6")
    parser.add_argument("--chart", type=Path, help="write the chart here (SVG)")
    args = parser.parse_args()

    digits = [int(d) for d in args.digits.split(",")]
    rows: dict[str, dict[int, str]] = {}
    points: dict[str, list[tuple[float, float]]] = {}
    for d in digits:
        report = make_report(Path(args.runs) / f"goat-add-{d}")
        for e in report.entries:
            if not e.ok:
                rows.setdefault(e.method, {})[d] = "failed"
                continue
            ci = f" ({fmt.pct(e.ci95[0])}–{fmt.pct(e.ci95[1])})" if e.ci95 else ""
            rows.setdefault(e.method, {})[d] = f"{fmt.pct(e.mean)}{ci}"
            points.setdefault(e.method, []).append((d, e.mean))
    print("| method | " + " | ".join(f"{d} digits" for d in digits) + " |")
    print("|---|" + "---|" * len(digits))
    for method, cells in rows.items():
        print(f"| {method} | " + " | ".join(cells.get(d, "—") for d in digits) + " |")
    if args.chart:
        series = [
            svg.Series(m, svg.PALETTE[i % len(svg.PALETTE)], pts)
            for i, (m, pts) in enumerate(sorted(points.items()))
        ]
        chart = svg.lines(
            series, x_title="Digits per operand", y_title="Exact match", x_fmt=lambda v: f"{v:g}",
            y_fmt=lambda v: fmt.pct(v, 0), y_range=(0.0, 1.0),
        )  # fmt: skip
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        args.chart.write_text(standalone(chart, {s.label: s.color for s in series}), encoding="utf-8")
        print(f"\nChart: {args.chart}")


if __name__ == "__main__":
    main()
