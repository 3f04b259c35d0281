"""The leaderboard: results → rows (pure data) → a rich table."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table


@dataclass
class Row:
    model: str
    method: str
    seed: int
    status: str
    metric_name: str | None = None
    metric: float | None = None
    ci95: tuple[float, float] | None = None
    trainable: int | None = None
    trainable_pct: float | None = None
    train_seconds: float | None = None
    tokens_per_s: float | None = None
    peak_mb: float | None = None
    error: str | None = None


def rows(results: list[dict]) -> list[Row]:
    """One row per run, best first; failed runs last, with their reason."""
    out = []
    for r in results:
        row = Row(
            model=r["model"], method=r["method"], seed=r["seed"], status=r["status"], error=r.get("error")
        )
        if r["status"] == "ok":
            row.metric_name = r["primary_metric"]
            row.metric = r["metrics"][row.metric_name]
            row.ci95 = tuple(r["ci95"])
            row.trainable = r["params"]["trainable"]
            row.trainable_pct = r["params"]["trainable_pct"]
            train = r.get("train")
            row.train_seconds = train["seconds"] if train else 0.0
            row.tokens_per_s = train["tokens_per_s"] if train else None
            # The memory a method needs is its peak over training and evaluation.
            peaks = [p for p in (train and train["peak_rss_mb"], r["eval"]["peak_rss_mb"]) if p]
            row.peak_mb = max(peaks) if peaks else None
        out.append(row)
    return sorted(out, key=lambda x: (x.status != "ok", -(x.metric or 0.0), x.model, x.method, x.seed))


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def render(table_rows: list[Row], title: str = "Leaderboard") -> Table:
    """The rows as a table; the model and seed columns appear only when they vary."""
    metric = next((r.metric_name for r in table_rows if r.metric_name), "metric")
    show_model = len({r.model for r in table_rows}) > 1
    show_seed = len({r.seed for r in table_rows}) > 1
    columns = [("model", "left")] if show_model else []
    columns += [("method", "left")] + ([("seed", "right")] if show_seed else [])
    columns += [
        (metric, "right"),
        ("95% CI", "right"),
        ("trainable", "right"),
        ("train", "right"),
        ("tokens/s", "right"),
        ("peak mem", "right"),
    ]
    table = Table(title=title, title_justify="left")
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name in ("method", "95% CI", "trainable"))
    for r in table_rows:
        lead = ([r.model] if show_model else []) + [r.method] + ([str(r.seed)] if show_seed else [])
        if r.status != "ok":
            table.add_row(*lead, "[red]failed[/red]", *[""] * 5)
            table.add_row(*[""] * (len(lead) - 1), f"[red]{r.error}[/red]", *[""] * 6)
            continue
        lo, hi = r.ci95 or (0.0, 0.0)
        table.add_row(
            *lead,
            f"{r.metric:.1%}",
            f"{lo:.1%}–{hi:.1%}",
            f"{_count(r.trainable)} ({r.trainable_pct:.2g}%)" if r.trainable else "0",
            f"{r.train_seconds:.0f} s" if r.train_seconds else "—",
            f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "—",
            f"{r.peak_mb / 1024:.1f} GB" if r.peak_mb else "—",
        )
    return table
