"""The report as Markdown (for a README or a pull request), CSV (one row per method, raw numbers for a
spreadsheet) and JSON (everything in ReportData, for other tools), and `write_report` to pick one."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from tunebench.report import fmt
from tunebench.report import search as searches
from tunebench.report.data import BUDGET_LEGEND, TIED_LEGEND, ReportData
from tunebench.report.html import data_size_rows
from tunebench.report.html import render as render_html
from tunebench.report.table import Entry
from tunebench.report.training_sizes import reference_legend
from tunebench.report.training_sizes import to_json as sizes_json

FORMATS = ("html", "md", "csv", "json")

#: CSV columns: name → value of an entry (raw numbers; units in the names).
_CSV = {
    "model": lambda e: e.model,
    "method": lambda e: e.method,
    "status": lambda e: "ok" if e.ok else "failed",
    "seeds": lambda e: len(e.seeds),
    "failed_seeds": lambda e: len(e.failed),
    "metric": lambda e: e.metric_name,
    "mean": lambda e: e.mean,
    "std": lambda e: e.std,
    "ci95_low": lambda e: e.ci95[0] if e.ci95 else None,
    "ci95_high": lambda e: e.ci95[1] if e.ci95 else None,
    "best": lambda e: e.best,
    "tied_with_best": lambda e: e.tied,
    "diff_vs_best": lambda e: e.diff_vs_best,
    "diff_ci95_low": lambda e: e.diff_ci95[0] if e.diff_ci95 else None,
    "diff_ci95_high": lambda e: e.diff_ci95[1] if e.diff_ci95 else None,
    "p_value": lambda e: e.p_value,
    "p_holm": lambda e: e.p_adjusted,
    "test": lambda e: e.test,
    "budget_limited": lambda e: e.budget_limited,
    "stopped_early_seeds": lambda e: e.stopped_early,
    "trainable_params": lambda e: e.trainable,
    "total_params": lambda e: e.total,
    "trainable_pct": lambda e: e.trainable_pct,
    "optimizer_steps": lambda e: e.steps,
    "examples_seen": lambda e: e.examples,
    "tokens_seen": lambda e: e.tokens,
    "train_seconds": lambda e: e.train_seconds,
    "tokens_per_s": lambda e: e.tokens_per_s,
    "train_peak_mb": lambda e: e.train_peak_mb,
    "eval_peak_mb": lambda e: e.eval_peak_mb,
    "latency_ms": lambda e: e.latency_ms,
    "merged_latency_ms": lambda e: e.merged_latency_ms,
    "batched_ms_per_example": lambda e: e.batched_ms,
    "artifact_bytes": lambda e: e.artifact_bytes,
    "drift_nll": lambda e: e.drift,
    "lr": lambda e: e.lr,
    "wall_seconds": lambda e: e.wall_seconds,
    "error": lambda e: "; ".join(f"seed {s}: {r}" for s, r in e.failed) or None,
}


def to_csv(data: ReportData) -> str:
    """One row per method; with several training-set sizes, one per method and size (the leaderboard's
    columns are each size's own), led by the size and its training examples."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if data.sizes is None:
        writer.writerow([*_CSV, *data.columns])
        for e in data.entries:
            writer.writerow([_cell(f(e)) for f in _CSV.values()] + [e.extra.get(c, "") for c in data.columns])
        return buf.getvalue()
    writer.writerow(["data_size", "training_examples", *_CSV, *data.columns])
    for level in data.sizes.levels:
        # the largest size's entries are the report's own (with the extra columns)
        entries = data.entries if level is data.sizes.largest else level.entries
        for e in entries:
            row = [_cell(f(e)) for f in _CSV.values()] + [e.extra.get(c, "") for c in data.columns]
            writer.writerow([level.tag or "", level.examples, *row])
    return buf.getvalue()


def _cell(v: Any) -> Any:
    return "" if v is None else v


def to_json(data: ReportData) -> str:
    """ReportData as JSON; each entry also carries its derived figures (peak memory, serving latency)."""
    out = dataclasses.asdict(dataclasses.replace(data, sizes=None))
    out["sizes"] = sizes_json(data.sizes) if data.sizes is not None else None
    for raw, e in zip(out["entries"], data.entries, strict=True):
        del raw["sample"]  # per-item arrays: the predictions files have them
        raw.update(ok=e.ok, trains=e.trains, peak_mb=e.peak_mb, serve_latency_ms=e.serve_latency_ms)
    rec = data.recommendation
    out["recommendation"] = {
        "best": rec.best.label if rec.best else None,
        "runners_up": [e.label for e in rec.runners_up],
        "versus": {label: dataclasses.asdict(c) for label, c in rec.versus.items()},
        "excluded": {e.label: why for e, why in rec.excluded},
        "why": rec.why,
        "at_scale": rec.at_scale,
    }
    return json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_entry(e: Entry, rank: int, several_seeds: bool, columns: list[str]) -> list[str]:
    mark = (" **best**" if e.best else " ≈" if e.tied else "") + (" †" if e.budget_limited else "")
    cells = [str(rank), e.label + mark, fmt.pct(e.mean)]
    cells += [fmt.pct(e.std) if e.std is not None else "—"] if several_seeds else []
    return [
        *cells,
        fmt.ci(e.ci95),
        "—" if e.best else fmt.diff(e.diff_vs_best, e.diff_ci95),
        fmt.pvalue(e.p_adjusted),
        f"{fmt.count(e.trainable)} ({fmt.share(e.trainable_pct)})" if e.trainable else "0",
        fmt.mem_mb(e.train_peak_mb) if e.trains else "—",
        fmt.mem_mb(e.eval_peak_mb),
        fmt.seconds(e.train_seconds) if e.trains else "—",
        fmt.ms(e.latency_ms),
        fmt.ms(e.merged_latency_ms) if e.merged_latency_ms else "—",
        fmt.size_bytes(e.artifact_bytes),
        fmt.nats(e.drift),
        *[e.extra.get(c, "") for c in columns],
    ]


def to_markdown(data: ReportData) -> str:
    several_seeds = any(len(e.seeds) > 1 for e in data.entries)
    head = ["#", "method", (data.metric or "score").replace("_", " ")] + (["± sd"] if several_seeds else [])
    head += [
        "95% CI",
        "Δ vs best (95% CI)",
        "p (Holm)",
        "trainable",
        "mem train",
        "mem eval",
        "train",
        "latency",
        "merged",
        "artifact",
        "drift",
    ]
    head += data.columns
    lines = [f"# {data.title}", "", f"**Recommendation:** {data.recommendation.why}", ""]
    if data.recommendation.at_scale:
        lines += [data.recommendation.at_scale, ""]
    lines += [_md_row(head), _md_row(["---"] * len(head))]
    rank = 0
    for e in data.entries:
        if e.ok:
            rank += 1
            lines.append(_md_row(_md_entry(e, rank, several_seeds, data.columns)))
        else:
            reason = "; ".join(f"seed {s}: {r}" for s, r in e.failed)
            lines.append(_md_row(["", e.label, "failed", reason] + [""] * (len(head) - 4)))
    lines += ["", " ".join(_sentence(n) for n in [*_md_legend(data), *data.budget.notes])]
    lines += [f"- {note}" for note in data.statistics_notes]
    lines += [f"- Data: {w}" for w in data.data_warnings]
    lines += [f"- Training: {w}" for w in data.training_warnings]
    for axis_key, labels in data.fronts.items():
        lines.append(f"- Pareto front ({axis_key.replace('_', ' ')}): {', '.join(labels) or '—'}")
    lines += _md_sizes(data)
    lines += searches.markdown(data.entries)  # the configuration searches (report/search.py)
    return "\n".join(lines).rstrip("\n") + "\n"


def _md_sizes(data: ReportData) -> list[str]:
    """With several training-set sizes: each method's score at every size, and the crossovers."""
    study = data.sizes
    if study is None:
        return []
    head = ["method", *[level.label for level in study.levels]]
    lines = ["", f"## Quality by {study.unit}", "", _md_row(head), _md_row(["---"] * len(head))]
    for r in data_size_rows(data):
        cells = [r["label"] + (" (reference)" if r["label"] in study.references else "")]
        for level in study.levels:
            c = r["cells"].get(level.label)
            interval = f" ({c['ci']})" if c and c["ci"] else ""
            cells.append(f"{c['mean']}{interval}{' ' + c['mark'] if c['mark'] else ''}" if c else "—")
        lines.append(_md_row(cells))
    notes = [
        f"Reference: {reference_legend(study)}; ≈ not distinguishable from it by a paired test "
        "(Holm-corrected per size), ▲ ahead of it, otherwise Δ in points.",
        study.summary,
        study.budget_note,
    ]
    return [*lines, "", *[f"- {n}" for n in notes if n]]


def _md_legend(data: ReportData) -> list[str]:
    marks = [f"≈: {TIED_LEGEND}"]
    if any(e.budget_limited for e in data.entries):
        marks.append(f"†: {BUDGET_LEGEND}")
    return marks


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def render(data: ReportData, format: str) -> str:
    if format == "html":
        return render_html(data)
    return {"md": to_markdown, "csv": to_csv, "json": to_json}[format](data)


def write_report(data: ReportData, path: str | Path, format: str = "html") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data, format), encoding="utf-8")
    return path
