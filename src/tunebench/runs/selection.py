"""Learning-rate selection on the dev split, before the final runs.

A learning rate that suits LoRA (1e-3) ruins full fine-tuning, and one that suits full fine-tuning (1e-5)
leaves LoRA untrained: a leaderboard that gives every method the same learning rate measures the choice
of learning rate as much as the method. So each method that trains may declare `lr_grid` (in the budget
or on its own entry); every candidate is trained under the method's budget with the first seed of the
experiment, scored on the **dev** split (never on test), and the final runs of every seed use the winner.

Two searches:
  grid     every candidate gets the whole budget; costs one training run per candidate. With the final
           runs' first seed (it is the selection's seed) the winner's training *is* that final run: the
           winner's trained state is kept, and the final run evaluates it on test instead of training it again.
  halving  successive halving (Jamieson & Talwalkar, 2016; the rungs of Hyperband): all candidates train
           for a fraction of the steps, the better half on dev goes on with twice as many, and so on. A
           survivor continues from the state its rung stopped at (`CONTINUATION`: weights, optimizer,
           schedule, data position, random generators), so a rung is the same training stopped later,
           not a restart. The last rung, with one candidate left and the whole budget, is the final run
           of the first seed, which continues the winner's last rung: a grid of 4 trains 4 × 1/4 + 2 ×
           1/4 = 1.5 budgets, half a budget of which is that final run's own first half.

Fair rungs. Every candidate of every rung follows the learning-rate schedule of the *whole* budget
(warm-up, then cosine decay to the last step of the budget) and is stopped after its rung's share of the
steps. A rung is then a prefix of the full run, and candidates are compared at the same point of the
same schedule. (Squeezing the schedule into the rung, as before, makes a short rung a different
recipe: its rate decays to zero within a quarter of the steps, which favours rates that learn fast.)

Grid edges. A winner at the edge of its grid may have a better neighbour outside it, so the grid is
extended one step in that direction (the ratio between the edge and its neighbour) and that rate trained
like the winner's rung. The extension is recorded, and `at_edge` says when the extension won too (then a
still larger or smaller rate may do better still).

The plan and the choice are pure functions (tested without a model). `select_for_cell` trains the
candidates of one (model, method) with the run's own steps (cell.py) and caches each one under
`<experiment>/selection/`, so that a finished selection, like a finished run, is never redone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebench.config import MethodSpec
from tunebench.core import store
from tunebench.core.ui import console
from tunebench.methods.base import require_access
from tunebench.models import ResolvedModel
from tunebench.runs import measure
from tunebench.runs.cell import KEPT_TRAINING, export_artifact, make_context, train_record
from tunebench.runs.child import ChildDied, run_in_child
from tunebench.runs.devcurve import DevCurve
from tunebench.runs.grid import Cell, Grid, identity, needs_lr_search
from tunebench.tasks.subsets import TrainingSubset
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import META, Checkpointer
from tunebench.train.memory import release_memory

SELECTION_DIR = "selection"
#: Beside a candidate's records: the state its last rung stopped at, for the next rung to continue from.
CONTINUATION = ".continue"
#: Keep each rung's state so that the next rung, and the final run of the winner, continue from it (True),
#: or train every rung and the final run from the start (False: what tunebench did before; only
#: bench/ladder_cost.py turns it off, to measure what continuing saves). Results differ only in float
#: arithmetic: a continued rung is the whole-budget training stopped later (tests/test_selection.py).
CONTINUE_RUNGS = True


@dataclass
class Candidate:
    lr: float
    steps: int
    """Optimizer steps this candidate trained for (the whole budget in a grid, less in early rungs)."""
    rung: int = 0
    status: str = "ok"
    metric: str | None = None
    """The task's primary metric, scored on the dev split."""
    dev_score: float | None = None
    final_loss: float | None = None
    """Mean training loss over the last tenth of the steps: the tie-breaker when dev scores are equal
    (a small dev split often scores several candidates the same)."""
    error: str | None = None
    fraction: float = 1.0
    """Share of the budget's steps it trained, on the whole budget's schedule."""
    continued_from: int = 0
    """The step its previous rung stopped at, whose state this rung continued from (0: trained from the
    start); it trained `steps - continued_from` steps of its own."""
    extension: bool = False
    """A rate added beyond the grid's edge because the grid's winner sat there."""
    reusable: bool = False
    """Its trained state was kept (a whole-budget candidate): the final run of the same seed reuses it."""

    def rank_key(self) -> tuple:
        """Sort key, best first: a higher dev score, then a lower final loss, then the smaller rate."""
        failed = self.status != "ok" or self.dev_score is None
        loss = self.final_loss if self.final_loss is not None and math.isfinite(self.final_loss) else math.inf
        return (failed, -(self.dev_score or 0.0), loss, self.lr)


def rung_fractions(n_candidates: int, search: str) -> list[float]:
    """Fraction of the budget each rung trains for; rung i keeps ⌈n / 2^i⌉ candidates.

    grid: [1.0]. halving with n candidates: R = ⌈log2 n⌉ rungs at 1/2^R, 1/2^(R-1), ..., 1/2; the rung
    after them (the whole budget, one candidate) is the final run.
    """
    if search == "grid" or n_candidates <= 1:
        return [1.0]
    rungs = math.ceil(math.log2(n_candidates))
    return [1.0 / 2 ** (rungs - i) for i in range(rungs)]


def at_lr(budget: Budget, lr: float) -> Budget:
    """A candidate's budget: the method's budget at learning rate `lr` (its rung stops it early)."""
    return dataclasses.replace(budget, lr=lr, lr_grid=[])


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The best candidate that trained, or None when every one failed."""
    ok = sorted(
        (c for c in candidates if c.status == "ok" and c.dev_score is not None), key=Candidate.rank_key
    )
    return ok[0] if ok else None


def beyond_edge(grid: list[float], lr: float) -> float | None:
    """The rate one step past the grid's edge where `lr` sits (None: `lr` is inside, or the grid too small)."""
    rates = sorted(grid)
    if len(rates) < 2 or lr not in (rates[0], rates[-1]):
        return None
    edge, neighbour = (rates[0], rates[1]) if lr == rates[0] else (rates[-1], rates[-2])
    return float(f"{edge * edge / neighbour:.2g}")


Evaluate = Callable[[Budget, int, float], Candidate]


def select_lr(budget: Budget, evaluate: Evaluate, *, seed: int) -> dict[str, Any]:
    """Run the search; `evaluate(candidate_budget, rung, fraction)` trains one candidate for `fraction` of
    the budget's steps (on the whole budget's schedule) and scores it on dev.

    Returns the record that goes into each final run's result.json under `selection`.
    """
    assert not isinstance(budget.lr_grid, str), "the method's recipe resolves lr_grid before a search"
    grid = list(budget.lr_grid)
    survivors, tried = list(grid), []
    fractions = rung_fractions(len(survivors), budget.lr_search)
    for rung, fraction in enumerate(fractions):
        scored = [evaluate(at_lr(budget, lr), rung, fraction) for lr in survivors]
        tried += scored
        keep = max(1, math.ceil(len(scored) / 2))
        survivors = [c.lr for c in sorted(scored, key=Candidate.rank_key)[:keep]]
    winner = choose([c for c in tried if c.rung == len(fractions) - 1])
    extended = None
    if winner is not None and (lr := beyond_edge(grid, winner.lr)) is not None:
        extra = evaluate(at_lr(budget, lr), winner.rung, fractions[-1])
        extra.extension = True
        tried.append(extra)
        extended = {"from": winner.lr, "to": lr, "direction": "up" if lr > winner.lr else "down"}
        winner = choose([winner, extra])
    return {
        "search": budget.lr_search,
        "split": "dev",
        "schedule": "whole budget (a rung stops early)",
        "metric": next((c.metric for c in tried if c.metric), None),
        "seed": seed,
        "grid": grid,
        "extended": extended,
        "at_edge": bool(winner is not None and winner.extension),
        "chosen_lr": winner.lr if winner else None,
        "reusable": bool(winner is not None and winner.reusable),
        "candidates": [dataclasses.asdict(c) for c in tried],
    }


def final_loss(losses: list[float]) -> float | None:
    """Mean loss over the last tenth of the steps (at least one step)."""
    if not losses:
        return None
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)


# -- the search of one (model, method), trained and cached ---------------------------------------------------


def with_selected_lr(
    grid: Grid, model: ResolvedModel, method_spec: MethodSpec, size: TrainingSubset | None = None
) -> tuple[MethodSpec, dict | None]:
    """The method's spec with its learning rate chosen on dev, and the selection record (None: no search).
    With several training-set sizes, each size searches on its own (`size`)."""
    if not needs_lr_search(method_spec):
        return method_spec, None
    selection = select_for_cell(Cell(model, method_spec, grid.spec.seeds[0], size), grid)
    if selection["chosen_lr"] is None:
        return method_spec, selection  # the final runs record the failure
    budget = dataclasses.replace(method_spec.budget, lr=selection["chosen_lr"])
    return dataclasses.replace(method_spec, budget=budget), selection


def select_for_cell(cell: Cell, grid: Grid) -> dict[str, Any]:
    """Choose the learning rate of (model, method) on dev; each candidate is cached like a run, and a
    whole-budget candidate keeps its trained state (`artifact/`) for the final run of the same seed."""
    budget = cell.method.budget
    folder = grid.exp_dir / SELECTION_DIR / cell.selection_name
    console.print(
        f"[bold]{cell.selection_name}[/bold]: choosing the learning rate on dev "
        f"({budget.lr_search} over {', '.join(f'{lr:g}' for lr in budget.lr_grid)})"
    )
    paths: dict[float, Path] = {}
    evaluate = functools.partial(_evaluate, cell, grid, folder, paths)
    selection = select_lr(budget, evaluate, seed=cell.seed)
    chosen = selection["chosen_lr"]
    if selection["reusable"]:
        selection["reuse_path"] = str(paths[chosen])
    elif chosen is not None and (folder / f"lr{chosen:g}{CONTINUATION}" / META).exists():
        selection["continue_path"] = str(folder / f"lr{chosen:g}{CONTINUATION}")
    _drop_losers(folder, paths, chosen)
    console.print(
        f"  chosen lr: [cyan]{chosen:g}[/cyan]"
        + (" (the grid's edge was extended)" if selection["extended"] else "")
        if chosen is not None
        else "  [red]every candidate failed[/red]"
    )
    return selection


def reusable_state(selection: dict | None, seed: int) -> Path | None:
    """The kept state of the selection's winner when it trained exactly this run (same seed, whole budget)."""
    if not selection or not selection.get("reusable") or seed != selection["seed"]:
        return None
    state = candidate_state(Path(selection["reuse_path"]))
    return state if (state / KEPT_TRAINING).exists() else None


def continuable_state(selection: dict | None, seed: int) -> Path | None:
    """Where the winner's last rung of successive halving stopped, when the final run of this seed is that
    very training continued (same seed, same whole-budget schedule): it trains only the steps after it."""
    if not selection or not selection.get("continue_path") or seed != selection["seed"]:
        return None
    state = Path(selection["continue_path"])
    return state if (state / META).exists() else None


def candidate_state(path: Path) -> Path:
    """Where a whole-budget candidate keeps its trained state (`artifact/`, `training.json`): beside its
    cached record."""
    return path.with_suffix("")


def _evaluate(
    cell: Cell, grid: Grid, folder: Path, paths: dict[float, Path], budget: Budget, rung: int, fraction: float
) -> Candidate:
    """One candidate's dev score: from the cache when it finished earlier, else trained now and cached."""
    assert budget.lr is not None  # a candidate's budget has its learning rate (at_lr)
    candidate = dataclasses.replace(cell, method=dataclasses.replace(cell.method, budget=budget))
    config = {**grid.config(candidate), "role": "lr-selection", "fraction": fraction}
    path = folder / f"lr{budget.lr:g}--{store.config_hash(identity(config))}.json"
    if fraction >= 1.0:
        paths[budget.lr] = path
    if not grid.force and path.exists():
        cached = store.read_result(path)
        if cached.get("status") == "ok":
            console.print(
                f"  [dim]lr {budget.lr:g}: finished earlier, dev {cached['candidate']['dev_score']:.1%}[/dim]"
            )
            return Candidate(**cached["candidate"])
    folder.mkdir(parents=True, exist_ok=True)
    # A rung's state (weights, optimizer, schedule, data position, random generators) is kept, and the
    # next rung of the same rate continues from it: a continued candidate is the whole run, stopped later.
    tag = store.config_hash(identity(grid.config(candidate)))
    continuation = Checkpointer(folder / f"lr{budget.lr:g}{CONTINUATION}", every=0, tag=tag)
    if grid.trials_apart:
        try:
            result, train = run_in_child(
                _run_candidate, candidate, grid.for_worker(), rung, fraction, path, continuation,
                name=f"tunebench {cell.selection_name} lr {budget.lr:g}",
            )  # fmt: skip
        except ChildDied as e:  # its own handling never ran: a failed candidate, as a diverged one is
            result = Candidate(lr=budget.lr, steps=budget.steps, rung=rung, fraction=fraction)
            result.status, result.error, train = "failed", str(e), None
            console.print(f"  lr {budget.lr:g}: [red]failed[/red] ({result.error})")
    else:
        result, train = _run_candidate(candidate, grid, rung, fraction, path, continuation)
    record = {"schema": 1, "status": result.status, "config": config, "candidate": dataclasses.asdict(result)}
    store.write_json_atomic(path, {**record, "train": train})
    return result


def _run_candidate(
    cell: Cell, grid: Grid, rung: int, fraction: float, path: Path, continuation: Checkpointer
) -> tuple[Candidate, dict | None]:
    """Train one candidate for `fraction` of the budget (on the whole budget's schedule), continuing from
    its previous rung's state, and score it on dev; a whole-budget candidate also exports its trained
    state, for the final run to reuse."""
    budget = cell.method.budget
    assert budget.lr is not None  # a candidate's budget has its learning rate (at_lr)
    candidate = Candidate(lr=budget.lr, steps=budget.steps, rung=rung, fraction=fraction)
    method = cell.method.make()
    train = None
    try:
        require_access(method, cell.model)
        method.check(grid.task, cell.model)
        earlier = continuation.meta()
        candidate.continued_from = earlier["step"] if earlier else 0
        dev = DevCurve(method, budget, (earlier or {}).get("extra"))
        continuation.extra, continuation.at_stop = dev.saved, fraction < 1.0 and CONTINUE_RUNGS
        ctx = make_context(cell, grid.task, grid.splits_for(cell), budget, grid.progress)
        ctx.checkpoint = continuation

        def on_step(step: int, steps: int, loss: float) -> bool:
            grid.progress.train_step(step, steps, loss)
            stop_here = fraction < 1.0 and step >= math.ceil(fraction * steps)
            return dev.after_step(step, steps, ctx) or stop_here

        ctx.on_train_step = on_step
        method.prepare(ctx)
        stats = method.fit(ctx)
        early = dev.finish()
        if fraction >= 1.0 or dev.stopped_at is not None:  # done, or early-stopped: nothing to continue
            continuation.clear()
        if stats is not None:
            candidate.steps, candidate.final_loss = stats.steps, final_loss(stats.losses)
            train = train_record(stats, method.truncated, dev, early, len(grid.splits.dev))
        candidate.metric, candidate.dev_score = measure.dev_score(method, ctx)
        if fraction >= 1.0 and stats is not None:
            objective = method.objective.info if method.objective is not None else None
            keep_state(method, candidate_state(path), train, objective, stats.losses)
            candidate.reusable = True
        loss = "—" if candidate.final_loss is None else f"{candidate.final_loss:.3f}"
        console.print(
            f"  lr {budget.lr:g} ({candidate.steps} steps): dev {candidate.metric} "
            f"{candidate.dev_score:.1%}, final loss {loss}"
        )
    except Exception as e:  # a candidate that diverges is a result of the search, not a crash
        candidate.status, candidate.error = "failed", f"{type(e).__name__}: {e}"
        console.print(f"  lr {budget.lr:g}: [red]failed[/red] ({candidate.error})")
    finally:
        del method
        release_memory()
    return candidate, train


def keep_state(
    method: Any, folder: Path, train: dict | None, objective: dict | None, losses: list[float]
) -> None:
    """Export the candidate's trained state (the method's own artifact, written as a run's) and what its
    training cost; the record is written last, so a state without it is never reused (`reusable_state`)."""
    shutil.rmtree(folder, ignore_errors=True)  # an earlier, interrupted attempt's
    folder.mkdir(parents=True)
    export_artifact(method, folder, {})
    store.write_json_atomic(
        folder / KEPT_TRAINING, {"train": train, "objective": objective, "losses": losses}
    )


def _drop_losers(folder: Path, paths: dict[float, Path], chosen: float | None) -> None:
    """The trained states of the candidates that lost are not needed (a full model each, for `full`)."""
    for lr, path in paths.items():
        if lr != chosen:
            shutil.rmtree(candidate_state(path), ignore_errors=True)
    for state in folder.glob(f"*{CONTINUATION}*"):  # rung states of candidates that dropped out
        if chosen is None or state.name != f"lr{chosen:g}{CONTINUATION}":
            shutil.rmtree(state, ignore_errors=True)
