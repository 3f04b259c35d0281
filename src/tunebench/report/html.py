"""The report as one self-contained HTML page: inline CSS, inline SVG charts, a few lines of inline
JavaScript for the error browser. It opens offline, from a file, with nothing fetched.

Jinja2 (already installed with torch) renders the page with autoescaping on, so model outputs and data
shown in the error browser cannot break the markup. Charts come from report/svg.py.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import jinja2

from tunebench.report import fmt, svg
from tunebench.report import search as searches
from tunebench.report.data import BUDGET_LEGEND, TIED_LEGEND, ReportData, size_series
from tunebench.report.pareto import AXES
from tunebench.report.size_chart import data_size_chart
from tunebench.report.table import Entry

#: Axis key → (value shown on the axis from the axis's value, tick label). Memory is drawn in GB so that its
#: log-scale ticks fall on round numbers (0.5, 1, 2, 5 GB), not on 4.9 GB.
_AXIS_FORMAT = {
    "trainable": (lambda v: v, fmt.count),
    "memory": (lambda mb: mb / 1024, lambda gb: f"{gb:g} GB"),
    "train_time": (lambda v: v, lambda v: f"{v:g} s"),
    "latency": (lambda v: v, fmt.ms),
}


def colors(data: ReportData) -> dict[str, str]:
    """One colour per method, the same in every chart (methods sorted by name)."""
    methods = sorted({e.method for e in data.entries})
    return {m: svg.PALETTE[i % len(svg.PALETTE)] for i, m in enumerate(methods)}


def _tip(e: Entry) -> str:
    return (
        f"{e.label}: {fmt.pct(e.mean)} (95% CI {fmt.ci(e.ci95)}); trainable {fmt.count(e.trainable)}, "
        f"peak memory {fmt.mem_mb(e.peak_mb)}, train {fmt.seconds(e.train_seconds)}, "
        f"latency {fmt.ms(e.serve_latency_ms)}"
    )


def pareto_charts(data: ReportData, palette: dict[str, str]) -> list[dict[str, str]]:
    metric = _metric_title(data)
    charts = []
    for axis in AXES:
        usable = [(e, cost) for e in data.entries if e.ok and (cost := axis.value(e)) is not None]
        if not usable:
            continue
        on_front = set(data.fronts.get(axis.key, []))
        scale, tick = _AXIS_FORMAT[axis.key]
        points = []
        for e, cost in usable:
            assert e.mean is not None  # an entry with finished runs has a mean
            lo, hi = e.ci95 or (None, None)
            points.append(svg.Point(e.label, float(scale(cost)), float(e.mean), palette[e.method], lo, hi,
                                    tip=_tip(e), on_front=e.label in on_front))  # fmt: skip
        charts.append({
            "key": axis.key,
            "title": f"{metric} against {axis.title.lower()}",
            "front": ", ".join(data.fronts.get(axis.key, [])),
            "svg": svg.scatter(points, x_title=axis.title, y_title=metric, x_fmt=tick,
                               y_fmt=lambda v: fmt.pct(v, 0), x_log=axis.log),
        })  # fmt: skip
    return charts


def size_chart(data: ReportData, palette: dict[str, str]) -> str | None:
    """Quality by model size, one line per method: only when the experiment has several models."""
    if not data.several_models:
        return None
    series = [
        svg.Series(method, palette[method], [(n, q) for n, q, _ in points])
        for method, points in size_series(data.entries).items()
    ]
    return svg.lines(series, x_title="Model size (parameters)", y_title=_metric_title(data), x_fmt=fmt.count,
                     y_fmt=lambda v: fmt.pct(v, 0), x_log=True, y_range=(0.0, 1.0))  # fmt: skip


def curve_charts(data: ReportData, palette: dict[str, str]) -> dict[str, str | None]:
    trained = [e for e in data.entries if e.ok and e.loss_curve]
    loss = [svg.Series(e.label, palette[e.method], e.loss_curve) for e in trained]
    dev = [svg.Series(e.label, palette[e.method], e.dev_curve) for e in data.entries if e.ok and e.dev_curve]
    return {
        "loss": svg.lines(loss, x_title="Optimizer step", y_title="Training loss", x_fmt=lambda v: f"{v:g}",
                          y_fmt=lambda v: f"{v:.3g}") if loss else None,
        "dev": svg.lines(dev, x_title="Optimizer step", y_title=f"Dev {_metric_title(data).lower()}",
                         x_fmt=lambda v: f"{v:g}", y_fmt=lambda v: fmt.pct(v, 0),
                         y_range=(0.0, max(v for s in dev for _, v in s.points) or 0.1)) if dev else None,
    }  # fmt: skip


def selection_chart(data: ReportData, palette: dict[str, str]) -> str | None:
    """Dev score against learning rate, one line per method that searched (its first rung, where every
    candidate had the same budget): how much the method cares about its learning rate. Candidates that
    failed have no score and are left out (the table beside it names them)."""
    series = []
    for e in data.entries:
        candidates = (e.selection or {}).get("candidates") or []
        points = sorted(
            (float(c["lr"]), float(c["dev_score"]))
            for c in candidates
            if c.get("rung") == 0 and c.get("dev_score") is not None
        )
        if len(points) >= 2:
            series.append(svg.Series(e.label, palette[e.method], points))
    if not series:
        return None
    top = max(v for s in series for _, v in s.points)
    return svg.lines(series, x_title="Learning rate", y_title=f"Dev {_metric_title(data).lower()}",
                     x_fmt=fmt.lr, y_fmt=lambda v: fmt.pct(v, 0), x_log=True,
                     y_range=(0.0, top or 0.1))  # fmt: skip


def _metric_title(data: ReportData) -> str:
    return (data.metric or "score").replace("_", " ").capitalize()


def leaderboard_rows(data: ReportData) -> list[dict[str, Any]]:
    rows = []
    for e in data.entries:
        rows.append({
            "e": e,
            "mean": fmt.pct(e.mean), "std": fmt.pct(e.std) if e.std is not None else "",
            "diff": "—" if e.best else fmt.diff(e.diff_vs_best, e.diff_ci95), "p": fmt.pvalue(e.p_adjusted),
            "p_title": f"{e.test}; p = {fmt.pvalue(e.p_value)} before Holm's correction" if e.test else "",
            "ci": fmt.ci(e.ci95), "ci_lo": 100 * e.ci95[0] if e.ci95 else 0, "ci_hi": 100 * e.ci95[1] if e.ci95 else 0,
            "trainable": fmt.count(e.trainable) if e.trainable else "0", "share": fmt.share(e.trainable_pct),
            "train_mem": fmt.mem_mb(e.train_peak_mb) if e.trains else "—", "eval_mem": fmt.mem_mb(e.eval_peak_mb),
            "train": fmt.seconds(e.train_seconds) if e.trains else "—",
            "tps": f"{e.tokens_per_s:,.0f}" if e.tokens_per_s else "—",
            "latency": fmt.ms(e.latency_ms), "merged": fmt.ms(e.merged_latency_ms) if e.merged_latency_ms else "",
            "artifact": fmt.size_bytes(e.artifact_bytes), "drift": fmt.nats(e.drift), "lr": fmt.lr(e.lr),
            "steps": f"{e.steps:,.0f}" if e.steps else "—", "examples": f"{e.examples:,.0f}" if e.examples else "—",
            "tokens": fmt.count(e.tokens) if e.tokens else "—", "wall": fmt.seconds(e.wall_seconds),
        })  # fmt: skip
    return rows


def data_size_rows(data: ReportData) -> list[dict[str, Any]]:
    """Each method's score at every training-set size, with its verdict against its reference (the best at
    the largest size; with several models, its model's best, and that one against the best of all): ≈ tied,
    ▲ ahead, or its Δ when behind."""
    study = data.sizes
    if study is None:
        return []
    rows: dict[str, dict[str, Any]] = {}
    for level in study.levels:
        for e in level.entries:
            row = rows.setdefault(e.label, {"label": e.label, "method": e.method, "cells": {}})
            if not e.ok:
                row["cells"][level.label] = {"mean": "failed", "ci": "", "mark": "", "title": ""}
                continue
            v = study.verdict(e.label, level.long)
            mark = "" if v is None else {"tied": "≈", "ahead": "▲"}.get(v.state, fmt.points(v.diff))
            title = (
                f"vs {v.reference}: Δ {fmt.diff(v.diff, v.ci95)} points, p (Holm) {fmt.pvalue(v.p_adjusted)}"
                if v
                else ""
            )
            row["cells"][level.label] = {
                "mean": fmt.pct(e.mean),
                "ci": fmt.ci(e.ci95),
                "mark": mark,
                "title": title,
            }
    order = {label: i for i, label in enumerate(study.references)}  # references first, the best leading
    return sorted(rows.values(), key=lambda r: order.get(r["label"], len(order)))


def selection_rows(data: ReportData) -> list[dict[str, Any]]:
    rows = []
    for e in data.entries:
        sel = e.selection
        if not sel:
            continue
        cands = [
            {"lr": fmt.lr(c["lr"]), "steps": c["steps"], "rung": c["rung"], "dev": fmt.pct(c.get("dev_score")),
             "loss": f"{c['final_loss']:.3f}" if c.get("final_loss") is not None else "—",
             "chosen": c["lr"] == sel.get("chosen_lr") and c["rung"] == max(x["rung"] for x in sel["candidates"]),
             "error": c.get("error")}
            for c in sel["candidates"]
        ]  # fmt: skip
        rows.append(
            {
                "label": e.label,
                "search": sel["search"],
                "chosen": fmt.lr(sel.get("chosen_lr")),
                "cands": cands,
            }
        )
    return rows


def render(data: ReportData) -> str:

    palette = colors(data)
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    template = env.from_string(
        resources.files("tunebench.report").joinpath("report.html.j2").read_text("utf-8")
    )
    return template.render(
        data=data,
        fmt=fmt,
        palette=palette,
        rows=leaderboard_rows(data),
        several_seeds=any(len(e.seeds) > 1 for e in data.entries),
        pareto=pareto_charts(data, palette),
        size_chart=size_chart(data, palette),
        data_size_chart=data_size_chart(data, palette),
        data_size_rows=data_size_rows(data),
        curves=curve_charts(data, palette),
        selection=selection_rows(data),
        selection_chart=selection_chart(data, palette),
        searches=searches.sections(data.entries, palette, _metric_title(data)),
        labels=[e.label for e in data.entries if e.ok],
        metric_title=_metric_title(data),
        tied_legend=TIED_LEGEND,
        budget_legend=BUDGET_LEGEND,
        generated=time.strftime("%Y-%m-%d %H:%M"),
    )
