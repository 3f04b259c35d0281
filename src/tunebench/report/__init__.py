"""From the run store to a report: the data step apart from rendering.

  load.py       runs folder → RunData (the only file reading; clear errors naming the file)
  stats.py      per-item scores → two-level bootstrap intervals, paired tests, Holm, detectable difference
  table.py      RunData → leaderboard entries (seeds aggregated, intervals, tests against the best, ties,
                budget-limited marks, equal-budget check)
  pareto.py     entries → Pareto front per cost axis
  recommend.py  entries + constraints → the best method that fits, runners-up (paired tests against it), why
  data.py       all of the above (and curves, disagreements) → ReportData
  terminal.py, html.py (+ report.html.j2, svg.py), formats.py (Markdown, CSV, JSON): drawing only

`make_report(folder)` is the whole data step; renderers take its ReportData.
"""

from __future__ import annotations

from pathlib import Path

from tunebench.core import store
from tunebench.report.data import Column, ReportData, build_report
from tunebench.report.load import load_results, load_runs
from tunebench.report.recommend import Constraints


def make_report(
    folder: str | Path, constraints: Constraints | None = None, columns: dict[str, Column] | None = None
) -> ReportData:
    """Read a runs folder and compute everything the report shows."""
    return build_report(load_runs(folder), constraints, columns=columns)


def report_for_results(
    folder: str | Path,
    results: list[dict],
    constraints: Constraints | None = None,
    columns: dict[str, Column] | None = None,
) -> ReportData:
    """The report of the runs one `compare` just made (not whatever else the experiment folder holds)."""
    # dict.fromkeys: one entry per run folder even when a spec names a model twice
    names = dict.fromkeys(store.record_run_name(r) for r in results)
    runs = load_results([Path(folder) / name / store.RESULT for name in names])
    return build_report(runs, constraints, columns=columns)


__all__ = ["Constraints", "ReportData", "build_report", "load_runs", "make_report", "report_for_results"]
