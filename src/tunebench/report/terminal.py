"""The report in the terminal: the leaderboard, the budget check and the recommendation (rich)."""

from __future__ import annotations

from collections.abc import Callable

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from tunebench.report import fmt
from tunebench.report.data import BUDGET_LEGEND, TIED_LEGEND, ReportData
from tunebench.report.html import data_size_rows
from tunebench.report.table import Entry
from tunebench.report.training_sizes import reference_legend

#: Columns left out, in this order, until the table fits the screen ("interval": Δ's interval, Δ stays).
#: Every one of them is in the HTML and Markdown reports; what decides a choice (score, Δ, p, the costs
#: people set limits on) stays.
OPTIONAL = ("95% CI", "interval", "drift", "sd", "train")

Cell = Callable[[Entry], str]


def _columns(data: ReportData, leave_out: tuple[str, ...]) -> list[tuple[str, Cell]]:
    """(header, cell) of the figure columns shown, in order."""
    several_seeds = any(len(e.seeds) > 1 for e in data.entries)
    interval = "interval" not in leave_out
    columns: list[tuple[str, Cell]] = [
        ("sd", lambda e: f"{100 * e.std:.1f}" if e.std is not None else "—"),
        ("95% CI", lambda e: fmt.ci(e.ci95, digits=0)),
        ("Δ vs\nbest", lambda e: _diff(e, interval)),
        ("p", lambda e: fmt.pvalue(e.p_adjusted)),
        ("trained\nparams", lambda e: fmt.count(e.trainable) if e.trainable else "0"),
        ("train", lambda e: fmt.seconds(e.train_seconds) if e.trains else "—"),
        ("memory", lambda e: fmt.mem_mb(e.peak_mb)),
        ("latency", lambda e: fmt.ms(e.serve_latency_ms)),
        ("drift", lambda e: f"{e.drift:+.2f}" if e.drift is not None else "—"),
    ]
    skip = set(leave_out) | (set() if several_seeds else {"sd"})
    return [(name, cell) for name, cell in columns if name not in skip]


def _diff(e: Entry, interval: bool) -> str:
    return "—" if e.best else fmt.diff(e.diff_vs_best, e.diff_ci95 if interval else None)


def _marks(e: Entry) -> str:
    mark = " [green]★[/green]" if e.best else " [yellow]≈[/yellow]" if e.tied else ""
    return mark + (" [yellow]†[/yellow]" if e.budget_limited else "")


def leaderboard_table(data: ReportData, leave_out: tuple[str, ...] = ()) -> Table:
    """The leaderboard with every column but those named in `leave_out` (see OPTIONAL)."""
    metric = (data.metric or "score").replace("_", " ")
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
    columns = _columns(data, leave_out)
    for name, _ in columns:
        table.add_column(name, justify="right", no_wrap=True)
    for name in data.columns:  # extra columns ("est. peak") head two lines: their figures are narrower
        table.add_column(name.replace(" ", "\n", 1), justify="right", no_wrap=True)
    for e in data.entries:
        if not e.ok:  # the reason goes under the table: a long message would squeeze every column
            table.add_row(_two_lines(e.label), "[red]failed[/red]")
            continue
        table.add_row(
            _two_lines(e.label) + _marks(e),
            fmt.pct(e.mean),
            *[cell(e) for _, cell in columns],
            *[e.extra.get(c, "") for c in data.columns],
        )
    return table


class FittedLeaderboard:
    """The leaderboard at the width it is printed at: the OPTIONAL columns go, in order, until it fits."""

    def __init__(self, data: ReportData) -> None:
        self.data = data

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # measured at its natural width, not at the width it would squeeze itself into
        unbounded = options.update_width(10_000)
        for n in range(len(OPTIONAL) + 1):
            table = leaderboard_table(self.data, OPTIONAL[:n])
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                break
        yield table


def _two_lines(label: str) -> str:
    """'model · method' as 'model' over 'method'; a one-model label has no ' · ' and stays as it is."""
    return label.replace(" · ", "\n", 1)


def size_table(data: ReportData) -> list:
    """With several training-set sizes: each method's score at every size, marked against the reference
    (the best at the largest size), and how the budget played out across sizes."""
    study = data.sizes
    assert study is not None
    table = Table(
        title=f"By training-set size (the leaderboard above is at {study.largest.label})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("method")
    for level in study.levels:
        table.add_column(level.label, justify="right", no_wrap=True)
    for r in data_size_rows(data):
        cells = [r["cells"].get(level.label) for level in study.levels]
        label = r["label"] + (" (ref.)" if r["label"] in study.references else "")
        table.add_row(label, *[f"{c['mean']} {c['mark']}".strip() if c else "—" for c in cells])
    note = (
        f"ref.: {reference_legend(study)}; ≈ tied with it by a paired test, ▲ ahead of it, else Δ in points"
    )
    out: list = [table, Text(note, style="dim")]
    if study.budget_note:
        out.append(Text(study.budget_note, style="dim"))
    return out


def legend(data: ReportData) -> str:
    parts = ["★ best", f"≈ {TIED_LEGEND}"]
    if any(e.budget_limited for e in data.entries):
        parts.append(f"† {BUDGET_LEGEND}")
    return " · ".join(parts)


def render(data: ReportData) -> Group:
    """Everything the terminal shows after a comparison."""
    parts: list = [FittedLeaderboard(data), Text(legend(data), style="dim")]
    parts += [Text(note, style="dim") for note in data.statistics_notes]
    for note in data.budget.notes:
        parts.append(Text(f"budget: {note}", style="dim" if data.budget.equal else "yellow"))
    for warning in data.data_warnings:
        parts.append(Text(f"data: {warning}", style="yellow"))
    for warning in data.training_warnings:
        parts.append(Text(f"training: {warning}", style="yellow"))
    for e in data.entries:
        for seed, reason in e.failed:
            parts.append(Text(f"{e.label} seed {seed} failed: {reason}", style="red"))
        for line in e.convergence:
            parts.append(Text(f"{e.label} {line} (still improving)", style="yellow"))
    if data.sizes is not None:
        parts += size_table(data)
    rec = data.recommendation
    parts.append(Text.assemble(("Recommendation: ", "bold"), rec.why))
    if rec.at_scale:
        parts.append(Text(rec.at_scale))
    return Group(*parts)
