"""The report's data step: runs → leaderboard → Pareto fronts → recommendation, plus what the charts and
the error browser show. A pure function of the loaded runs; every renderer (terminal, HTML, Markdown,
CSV, JSON) draws from the `ReportData` it returns and computes nothing of its own.

Extra columns: `build_report(..., columns={"cost at scale": fn})` adds a column whose cells are
`fn(entry, results)` (a string, or None for an empty cell), where `results` are the entry's result
records. This is the place for estimates that live elsewhere (a cost-at-scale estimator, say): the
report shows them without depending on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunebench.report import stats
from tunebench.report.load import RunData
from tunebench.report.pareto import AXES, pareto
from tunebench.report.recommend import Constraints, Recommendation, recommend
from tunebench.report.table import BudgetCheck, Entry, best_entry, budget_check, leaderboard
from tunebench.report.training_sizes import SizeStudy, size_study

#: What the leaderboard's marks mean, in every format's legend.
TIED_LEGEND = "not distinguishable from the best by a paired test (Holm-corrected, α = 0.05)"
BUDGET_LEGEND = "still improving when its budget ran out (budget-limited)"

#: Most examples the error browser lists (the disagreements that tell methods apart come first).
MAX_DISAGREEMENTS = 200

Column = Callable[[Entry, list[dict[str, Any]]], str | None]
#: Shown when a model behind an OpenAI-compatible endpoint took part: its cost per 1,000 test examples.
API_COLUMN = "API tokens / 1k ex"


def _api_cell(entry: Entry, results: list[dict[str, Any]]) -> str | None:
    return None if entry.api_tokens_per_1k is None else f"{entry.api_tokens_per_1k:,.0f}"


@dataclass
class RunRow:
    """One run (one seed), for the per-run table; failed runs carry their reason."""

    model: str
    method: str
    seed: int
    status: str
    score: float | None
    error: str | None
    path: str
    size: str = ""
    """Its training-set size's tag (n100, 10-per-class) in an experiment with several; else empty."""


@dataclass
class Disagreement:
    model: str
    input: str
    target: str
    answers: dict[str, tuple[str, bool]]
    """Entry label → (answer, correct)."""


@dataclass
class ReportData:
    title: str
    experiment: str
    task: str
    metric: str | None
    models: list[str]
    entries: list[Entry]
    runs: list[RunRow]
    fronts: dict[str, list[str]]
    """Axis key → labels of the entries on its Pareto front, cheapest first."""
    budget: BudgetCheck
    recommendation: Recommendation
    constraints: Constraints
    disagreements: list[Disagreement]
    disagreement_total: int
    """How many test examples the methods disagree on (the list is capped at MAX_DISAGREEMENTS)."""
    environment: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    """Names of the extra columns (their cells are in each entry's `extra`)."""
    data_warnings: list[str] = field(default_factory=list)
    """What may bias the scores: training examples cut to max_length, duplicate inputs across splits."""
    training_warnings: list[str] = field(default_factory=list)
    """What an objective said of a run that finished without learning much (`objective.warnings`)."""
    min_detectable_diff: float | None = None
    """Smallest difference from the best a paired test on this test set detects at 80% power (α = 0.05,
    two-sided), metric units; None without predictions."""
    test_items: int | None = None
    detectable_basis: str = ""
    """What the detectable difference was worked out from (the discordance of the best and the runner-up)."""
    comparisons: int = 0
    """How many comparisons with the best the Holm correction covers."""
    statistics_notes: list[str] = field(default_factory=list)
    """How to read the intervals, Δ and p, in sentences every renderer prints as they are."""
    sizes: SizeStudy | None = None
    """With several training-set sizes (`data_sizes`): each size's leaderboard, the curves and the
    crossovers (report/training_sizes.py); everything else in the report is at the largest size."""

    @property
    def several_models(self) -> bool:
        return len(self.models) > 1


def build_report(
    runs: list[RunData],
    constraints: Constraints | None = None,
    *,
    columns: dict[str, Column] | None = None,
    title: str | None = None,
) -> ReportData:
    constraints = constraints or Constraints()
    every_run, study = runs, size_study(runs)
    if study is not None:  # several training-set sizes: the leaderboard is the largest size's
        runs = [r for r in runs if (r.result.get("data_size") or {}).get("tag") == study.largest.tag]
    entries = leaderboard(runs)
    if any(e.api_tokens_per_1k is not None for e in entries):  # an endpoint's cost is tokens, not weights
        columns = {API_COLUMN: _api_cell, **(columns or {})}
    by_key = _results_by_entry(runs)
    for name, column in (columns or {}).items():
        for e in entries:
            cell = column(e, by_key.get((e.model, e.method), []))
            if cell is not None:
                e.extra[name] = cell
    first = runs[0].result if runs else {}
    experiments = sorted({r.result.get("experiment") or "" for r in runs})
    metric = next((e.metric_name for e in entries if e.metric_name), None)
    disagreements, total = find_disagreements(runs, entries)
    detect = _detectable(entries)
    compared = sum(1 for e in entries if e.p_value is not None)
    data = ReportData(
        title=title or f"{' + '.join(experiments)} · {first.get('task', '')}",
        experiment=", ".join(experiments),
        task=first.get("task", ""),
        metric=metric,
        models=sorted({e.model for e in entries}),
        entries=entries,
        runs=run_rows(every_run),
        fronts={axis.key: [e.label for e in pareto(entries, axis)] for axis in AXES},
        budget=budget_check(entries),
        recommendation=recommend(entries, constraints, detect),
        constraints=constraints,
        disagreements=disagreements,
        disagreement_total=total,
        environment=_environment(runs),
        columns=list(columns or {}),
        data_warnings=data_warnings(runs),
        training_warnings=training_warnings(runs),
        min_detectable_diff=detect.diff if detect else None,
        test_items=detect.items if detect else None,
        detectable_basis=detect.basis if detect else "",
        comparisons=compared,
        statistics_notes=statistics_notes(entries, detect, compared),
        sizes=study,
    )
    if study is not None:
        rec = data.recommendation
        rec.why = f"With {study.largest.long}: {rec.why}" + (f" {study.summary}" if study.summary else "")
    return data


def _detectable(entries: list[Entry]) -> stats.Detectable | None:
    """The detectable difference between the best and the runner-up (the next finished entry)."""
    best = best_entry(entries) or next((e for e in entries if e.ok), None)
    if best is None:
        return None
    runner = next((e for e in entries if e.ok and e is not best), None)
    return stats.detectable(best, runner, (best.label, runner.label if runner else ""))


def statistics_notes(entries: list[Entry], detect: stats.Detectable | None, compared: int) -> list[str]:
    """The sentences under every leaderboard: what the interval covers, what Δ and p are, the detectable
    difference, and every case where the statistics had less to go on (one seed, no pairing)."""
    ok = [e for e in entries if e.ok]
    notes = ["95% intervals: two-level bootstrap over seeds and test items."]
    one_seed = [e.label for e in ok if len(e.seeds) == 1]
    if one_seed and len(one_seed) == len(ok):
        notes.append("One seed per method: seed variance is unknown, so the intervals cover test items only.")
    elif one_seed:
        whose = "its" if len(one_seed) == 1 else "their"
        notes.append(
            f"One seed of {', '.join(one_seed)}: {whose} seed variance is unknown, so {whose} intervals cover "
            "test items only."
        )
    if compared:
        notes.append(
            "Δ vs best: difference from the best in points, with its 95% paired-bootstrap interval; "
            "p: McNemar's exact test (one seed each) or a paired bootstrap over seeds and items, "
            f"Holm-corrected over {compared} comparison{'s' if compared != 1 else ''} with the best."
        )
    unpaired = [e.label for e in ok if e.test == stats.UNPAIRED]
    if unpaired:
        notes.append(
            f"{', '.join(unpaired)}: not scored on the same test items as the best (or no predictions), "
            "so compared unpaired (normal approximation), a weaker test."
        )
    no_predictions = [e.label for e in ok if e.sample is None]
    if no_predictions:
        notes.append(
            f"No predictions for {', '.join(no_predictions)}: the intervals shown are those the runs recorded "
            "(test items only)."
        )
    if detect is not None:
        notes.append(
            f"Differences under {100 * detect.diff:.1f} points cannot be told apart on {detect.items:,} "
            f"test items (80% power, α = 0.05, two-sided; {detect.basis})."
        )
    return notes


def data_warnings(runs: list[RunData]) -> list[str]:
    """Truncated training examples per run, and the task's duplicate inputs across splits (leakage)."""
    out = []
    cut_runs: dict[tuple[int, Any], list[str]] = {}  # (examples cut, max_length) → the runs it happened in
    trained = 0
    for run in runs:
        r = run.result
        trained += bool(run.ok and (r.get("train") or {}).get("steps"))  # a probe trains without steps
        cut = (r.get("train") or {}).get("truncated") or 0
        if run.ok and cut:
            length = ((r.get("config") or {}).get("budget") or {}).get("max_length", "?")
            cut_runs.setdefault((cut, length), []).append(f"{r['model']} · {r['method']} · seed {r['seed']}")
    for (cut, length), labels in cut_runs.items():  # one line per figure, not one per run of the grid
        if len(labels) == 1:
            where = labels[0]
        elif len(labels) == trained:
            where = "every run that trained in steps"
        else:
            where = f"{len(labels)} runs ({', '.join(labels[:3])}{', …' if len(labels) > 3 else ''})"
        out.append(
            f"{where}: {cut} training examples were cut to max_length {length} tokens (raise budget.max_length)"
        )
    overlap = next(
        (o for run in runs if (o := (run.result.get("task_info") or {}).get("overlap")) and any(o.values())),
        None,
    )
    if overlap:
        said = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in overlap.items() if n)
        out.append(
            f"duplicate inputs across splits ({said}): scores on them measure recall, not skill "
            "(--task-opt duplicates=drop removes them)"
        )
    return out


def training_warnings(runs: list[RunData]) -> list[str]:
    """The warnings each finished run's objective recorded (GRPO steps without a reward difference, say),
    labelled with the run: the objective knows what went wrong, the report only lists it."""
    return [
        f"{r['model']} · {r['method']} · seed {r['seed']}: {warning}"
        for run in runs
        if run.ok
        for r in [run.result]
        for warning in (r.get("objective") or {}).get("warnings") or []
    ]


def _results_by_entry(runs: list[RunData]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        out.setdefault((run.result["model"], run.result["method"]), []).append(run.result)
    return out


def run_rows(runs: list[RunData]) -> list[RunRow]:
    rows = []
    for run in runs:
        r = run.result
        score = r["metrics"].get(r["primary_metric"]) if run.ok else None
        size = (r.get("data_size") or {}).get("tag") or ""
        rows.append(
            RunRow(r["model"], r["method"], r["seed"], r["status"], score, r.get("error"), run.path, size)
        )
    return sorted(rows, key=lambda x: (x.status != "ok", x.model, x.method, x.size, x.seed))


def size_series(entries: list[Entry]) -> dict[str, list[tuple[float, float, tuple[float, float] | None]]]:
    """Method → [(model's parameters, mean score, CI)], by size: the article's chart, one line per method
    across models. Meaningful only with several models.

    A model's size is the smallest total among its runs: the base model's own weights. Adapter methods
    count their added weights in their total, which would set LoRA's point right of full fine-tuning's on
    the same model."""
    sizes: dict[str, float] = {}
    for e in entries:
        if e.ok and e.total:
            sizes[e.model] = min(e.total, sizes.get(e.model, e.total))
    series: dict[str, list] = {}
    for e in entries:
        if e.ok and e.total:
            series.setdefault(e.method, []).append((sizes[e.model], e.mean, e.ci95))
    return {m: sorted(points) for m, points in sorted(series.items())}


def find_disagreements(runs: list[RunData], entries: list[Entry]) -> tuple[list[Disagreement], int]:
    """Test examples on which the methods of a model answer differently, with every method's answer.

    Uses, per model, the lowest seed that every finished method ran. Examples where some methods are
    right and others wrong come first; then those with the most distinct answers.
    """
    labels = {(e.model, e.method): e.label for e in entries}
    found: list[tuple[tuple, Disagreement]] = []
    for model in sorted({e.model for e in entries}):
        mine = [r for r in runs if r.ok and r.result["model"] == model and r.predictions is not None]
        methods = sorted({r.result["method"] for r in mine})
        seeds = [{r.result["seed"] for r in mine if r.result["method"] == m} for m in methods]
        common = set.intersection(*seeds) if seeds else set()
        if len(methods) < 2 or not common:
            continue
        seed = min(common)
        chosen = {
            r.result["method"]: r.predictions
            for r in mine
            if r.result["seed"] == seed and r.predictions is not None  # always: `mine` has predictions
        }
        n = min(len(p) for p in chosen.values())
        for i in range(n):
            rows = {m: chosen[m][i] for m in methods}
            answers = {
                labels[(model, m)]: (str(row.get("answer", "")), bool(row.get("correct")))
                for m, row in rows.items()
            }
            distinct = len({a for a, _ in answers.values()})
            right = sum(c for _, c in answers.values())
            if distinct < 2 and right in (0, len(answers)):
                continue
            first = rows[methods[0]]
            split = 0 < right < len(answers)
            found.append(
                (
                    (not split, -distinct, model, i),
                    Disagreement(model, first["input"], first["target"], answers),
                )
            )
    found.sort(key=lambda x: x[0])
    return [d for _, d in found[:MAX_DISAGREEMENTS]], len(found)


def _environment(runs: list[RunData]) -> dict[str, Any]:
    """The machine of the first run, and whether every run shares it (timings compare only then)."""
    envs = [r.result.get("env") or {} for r in runs]
    if not envs:
        return {}
    first = envs[0]
    same = all((e.get("device"), e.get("cpu")) == (first.get("device"), first.get("cpu")) for e in envs)
    trained = [e for r, e in zip(runs, envs, strict=True) if (r.result.get("train") or {}).get("peak_rss_mb")]
    return {
        # Trained runs whose peak memory may include what ran before them in the same process (--executor
        # local, or records from before runs had a process each): worth a warning when there are several.
        "shared_process": sum(e.get("process") != "own" for e in trained) if len(trained) > 1 else 0,
        "device": first.get("device"),
        "cpu": first.get("cpu"),
        "threads": first.get("threads"),
        "packages": first.get("packages") or {},
        "git_sha": first.get("git_sha"),
        "same_machine": same,
    }
