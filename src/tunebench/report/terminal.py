"""The report in the terminal: the leaderboard, the budget check and the recommendation (rich)."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from tunebench.report import fmt
from tunebench.report.data import ReportData


def leaderboard_table(data: ReportData) -> Table:
    """Compact enough for 80 columns: the HTML page has every figure, this has the deciding ones."""
    metric = (data.metric or "score").replace("_", " ")
    several_seeds = any(len(e.seeds) > 1 for e in data.entries)
    table = Table(
        title=f"Leaderboard · {data.title}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        show_edge=False,
        collapse_padding=True,
    )
    # With several models a label takes two lines, model over method, rather than push the figures off an
    # 80-column screen (it would wrap anyway, at a worse place).
    widest = max((len(line) + 2 for e in data.entries for line in _two_lines(e.label).split("\n")), default=6)
    table.add_column("method", min_width=min(14, widest))
    table.add_column(metric.replace(" ", "\n"), justify="right", no_wrap=True)
    columns = (["sd"] if several_seeds else []) + [
        "95% CI",
        "trained\nparams",
        "train",
        "memory",
        "latency",
        "drift",
    ]
    for name in columns:
        table.add_column(name, justify="right", no_wrap=name != "drift")
    for name in data.columns:  # extra columns ("est. peak") head two lines: their figures are narrower
        table.add_column(name.replace(" ", "\n", 1), justify="right", no_wrap=True)
    for e in data.entries:
        if not e.ok:  # the reason goes under the table: a long message would squeeze every column
            table.add_row(_two_lines(e.label), "[red]failed[/red]")
            continue
        mark = " [green]★[/green]" if e.best else " [yellow]≈[/yellow]" if e.tied else ""
        table.add_row(
            _two_lines(e.label) + mark,
            fmt.pct(e.mean),
            *([f"{100 * e.std:.1f}" if e.std is not None else "—"] if several_seeds else []),
            fmt.ci(e.ci95, digits=0),
            fmt.count(e.trainable) if e.trainable else "0",
            fmt.seconds(e.train_seconds) if e.trains else "—",
            fmt.mem_mb(e.peak_mb),
            fmt.ms(e.serve_latency_ms),
            f"{e.drift:+.2f}" if e.drift is not None else "—",
            *[e.extra.get(c, "") for c in data.columns],
        )
    return table


def _two_lines(label: str) -> str:
    """'model · method' as 'model' over 'method'; a one-model label has no ' · ' and stays as it is."""
    return label.replace(" · ", "\n", 1)


def render(data: ReportData) -> Group:
    """Everything the terminal shows after a comparison."""
    parts: list = [leaderboard_table(data)]
    parts.append(Text("★ best · ≈ statistically tied with the best (95% intervals overlap)", style="dim"))
    for note in data.budget.notes:
        parts.append(Text(f"budget: {note}", style="dim" if data.budget.equal else "yellow"))
    for warning in data.data_warnings:
        parts.append(Text(f"data: {warning}", style="yellow"))
    for warning in data.training_warnings:
        parts.append(Text(f"training: {warning}", style="yellow"))
    for e in data.entries:
        for seed, reason in e.failed:
            parts.append(Text(f"{e.label} seed {seed} failed: {reason}", style="red"))
    rec = data.recommendation
    parts.append(Text.assemble(("Recommendation: ", "bold"), rec.why))
    if rec.at_scale:
        parts.append(Text(rec.at_scale))
    return Group(*parts)
