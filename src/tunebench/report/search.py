"""The configuration searches of a report (result.json `search`, runs/search.py): what each method's search
tried, what it chose, and its charts. Data step and drawing both live here; html.py, charts.py,
formats.py and recommend.py each take one function.

Charts:
  trials   dev score of each trial in the order Optuna proposed them (x: trial number), with the best so
           far dashed: how fast the search found its configuration, and how much the configurations differ.
           Pruned trials are drawn at the best dev score they reached before the pruner stopped them.
  pareto   with several objectives: dev score against the second objective (trainable parameters, peak
           memory or training time), the Pareto set filled and joined, the others hollow.
"""

from __future__ import annotations

from typing import Any

from tunebench.report import fmt, svg
from tunebench.report.table import Entry

#: Objective → (axis title, tick format, log scale).
_AXES = {
    "trainable_params": ("Trainable parameters", fmt.count, True),
    "peak_memory": ("Peak training memory (MB)", lambda v: f"{v:g}", True),
    "train_seconds": ("Training time (s)", lambda v: f"{v:g} s", True),
}
_FIGURE = {
    "trainable_params": "trainable_params",
    "peak_memory": "peak_memory_mb",
    "train_seconds": "train_seconds",
}


def show(params: dict[str, Any] | None) -> str:
    """{'r': 8, 'lr': 0.0012} → 'r=8, lr=1.2e-3'."""
    if not params:
        return "—"
    return ", ".join(f"{k}={_value(k, v)}" for k, v in params.items())


def _value(name: str, v: Any) -> str:
    if isinstance(v, float) and "lr" in name:
        return fmt.lr(v)
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "+".join(map(str, v))
    return str(v)


def configuration_clause(e: Entry) -> str:
    """'; its options were chosen on dev by a search of 12 trials: r=8, lr=1.2e-3' (the recommendation's)."""
    search = e.search
    if not search or not search.get("chosen"):
        return ""
    pareto = (
        f", from a Pareto set of {len(search['pareto'])}" if len(search.get("objectives", [])) > 1 else ""
    )
    return (
        f" (options chosen on dev by a search of {len(search['trials'])} trials{pareto}: "
        f"{show(search['chosen'])})"
    )


def sections(entries: list[Entry], palette: dict[str, str], metric_title: str) -> list[dict[str, Any]]:
    """One section per method that searched: a summary, its trials and its charts (the HTML page's)."""
    out = []
    for e in entries:
        search = e.search
        if not search:
            continue
        trials = search["trials"]
        statuses = [t["status"] for t in trials]
        out.append({
            "label": e.label,
            "method": e.method,
            "summary": _summary(search, statuses),
            "names": list(search["space"]),
            "space": ", ".join(f"{k} ∈ {_space(v)}" for k, v in search["space"].items()),
            "chosen": show(search.get("chosen")),
            "objectives": search.get("objectives", ["dev"]),
            "trials": [_row(t, search) for t in trials],
            "chart": trials_chart(e, palette.get(e.method, svg.PALETTE[0]), metric_title),
            "pareto_chart": pareto_chart(e, palette.get(e.method, svg.PALETTE[0]), metric_title),
        })  # fmt: skip
    return out


def _summary(search: dict[str, Any], statuses: list[str]) -> str:
    sampler = "every combination (grid)" if search["sampler"] == "grid" else "TPE, seeded"
    parts = [f"{len(statuses)} trials ({sampler}, seed {search['seed']})",
             f"{statuses.count('pruned')} pruned" if search.get("pruner") else f"no pruning ({search.get('pruning_off')})",
             f"{statuses.count('failed')} failed" if "failed" in statuses else "",
             f"{search.get('trained', 0)} trained now, the others from earlier runs" if search.get("trained", 0) < len(statuses) else ""]  # fmt: skip
    objectives = search.get("objectives", ["dev"])
    if len(objectives) > 1:
        parts.append(
            f"objectives {', '.join(objectives)}; Pareto set: trials {', '.join(map(str, search['pareto']))}"
        )
    parts.append(f"chosen: {search['rule']}")
    return "; ".join(p for p in parts if p)


def _space(v: Any) -> str:
    if isinstance(v, list):
        return "{" + ", ".join(_value("", x) for x in v) + "}"
    ((kind, (lo, hi)),) = v.items()
    return (
        f"[{lo:g}, {hi:g}] ({'log-uniform' if kind == 'log' else 'integers' if kind == 'int' else 'uniform'})"
    )


def _row(t: dict[str, Any], search: dict[str, Any]) -> dict[str, Any]:
    status = {"complete": "", "pruned": f"pruned at step {t.get('pruned_at')}", "failed": "failed"}[
        t["status"]
    ]
    return {
        "number": t["number"],
        "params": [_value(k, v) for k, v in t["params"].items()],
        "dev": fmt.pct(t.get("dev_score")),
        "status": status,
        "error": t.get("error") or "",
        "steps": t.get("steps") or "—",
        "trainable": fmt.count(t.get("trainable_params")),
        "chosen": t["number"] == search.get("chosen_trial"),
        "pareto": t["number"] in search.get("pareto", []),
        "cached": t.get("cached", False),
    }


def trials_chart(e: Entry, color: str, metric_title: str) -> str | None:
    """Dev score per trial and the best so far (dashed)."""
    search = e.search or {}
    scored = [
        (t["number"], t["dev_score"], t) for t in search.get("trials", []) if t.get("dev_score") is not None
    ]
    if not scored:
        return None
    by_number = {n: t for n, _, t in scored}
    best, running = [], -1.0
    for n, score, t in scored:
        if t["status"] == "complete":
            running = max(running, score)
        if running >= 0:
            best.append((float(n), running))

    def tip(x: float, y: float) -> str:
        t = by_number.get(int(x))
        if t is None:
            return f"{fmt.pct(y)}"
        state = f", pruned at step {t['pruned_at']}" if t["status"] == "pruned" else ""
        return f"trial {int(x)}: {show(t['params'])}: dev {fmt.pct(y)}{state}"

    series = [svg.Series(f"{e.label}: each trial", color, [(float(n), s) for n, s, _ in scored], tip=tip)]
    if best:
        series.append(svg.Series(f"{e.label}: best so far", color, best, dashed=True))
    top = max(s for _, s, _ in scored)
    return svg.lines(series, x_title="Trial", y_title=f"Dev {metric_title.lower()}", x_fmt=lambda v: f"{v:g}",
                     y_fmt=lambda v: fmt.pct(v, 0), y_range=(0.0, top or 0.1),
                     aria=f"Dev {metric_title.lower()} of each trial of {e.label}'s search")  # fmt: skip


def pareto_chart(e: Entry, color: str, metric_title: str) -> str | None:
    """Dev score against the search's second objective; the Pareto set filled."""
    search = e.search or {}
    objectives = search.get("objectives", ["dev"])
    if len(objectives) < 2 or objectives[1] not in _AXES:
        return None
    title, tick, log = _AXES[objectives[1]]
    key = _FIGURE[objectives[1]]
    pareto = set(search.get("pareto", []))
    points = [
        svg.Point(f"#{t['number']}", float(t[key]), float(t["dev_score"]), color,
                  tip=f"trial {t['number']}: {show(t['params'])}", on_front=t["number"] in pareto)
        for t in search.get("trials", [])
        if t["status"] == "complete" and t.get(key) is not None and t.get("dev_score") is not None
    ]  # fmt: skip
    if not points:
        return None
    return svg.scatter(points, x_title=title, y_title=f"Dev {metric_title.lower()}", x_fmt=tick,
                       y_fmt=lambda v: fmt.pct(v, 0), x_log=log)  # fmt: skip


def markdown(entries: list[Entry]) -> list[str]:
    """The searches as Markdown lines (one per method, then its trials)."""
    lines: list[str] = []
    for e in entries:
        search = e.search
        if not search:
            continue
        statuses = [t["status"] for t in search["trials"]]
        lines += [
            "",
            f"**Search, {e.label}:** chosen {show(search.get('chosen'))}; {_summary(search, statuses)}.",
            "",
        ]
        names = list(search["space"])
        lines.append("| trial | " + " | ".join(names) + " | dev | status |")
        lines.append("|" + " --- |" * (len(names) + 3))
        for t in search["trials"]:
            row = _row(t, search)
            mark = " **chosen**" if row["chosen"] else " (Pareto)" if row["pareto"] else ""
            lines.append(
                f"| {t['number']}{mark} | "
                + " | ".join(row["params"])
                + f" | {row['dev']} | {row['status'] or 'complete'} |"
            )
    return lines
