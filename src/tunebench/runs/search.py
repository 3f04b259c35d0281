"""Choosing any of a method's options (and its recipe's budget fields) on the dev split, with Optuna.

A method entry's `search:` (core/searchspace.py) names what to choose, `trials:` how many configurations
to train, `objectives:` what to optimize (the dev score, and optionally the trainable parameters, the peak
memory or the training time) and `pruner:` how to stop hopeless trials early. Every trial trains the
method with one configuration under the method's budget and the experiment's first seed, and is scored on
the **dev** split (never test); the final runs of every seed use the chosen configuration.

Why Optuna. It has the samplers a small search needs, behind one ask/tell interface: TPE (Bergstra et
al., 2011, "Algorithms for Hyper-Parameter Optimization"; seeded, so a search is reproducible), its
multi-objective form for Pareto sets (Ozaki et al., 2020), an exhaustive GridSampler, and pruners that
read intermediate scores (MedianPruner, HyperbandPruner). Its ask/tell interface lets tunebench train the
trials itself, with its own loop, budget, checkpoints and run store.

  sampler   TPE, seeded with the experiment's first seed. Optuna's defaults: the first 10 trials are
            sampled at random (n_startup_trials), so a search of 10 trials or fewer is a seeded random
            search. When every searched name is a list and `trials` covers every combination, each
            combination is trained once instead (GridSampler, in a seeded order).
  pruner    fed by the dev curve: every `budget.dev_every` steps a trial reports its dev score
            (`trial.report`) and stops when the pruner says so (`trial.should_prune`). Without a dev curve
            nothing can be pruned, and the record says so. Optuna's pruners work on one objective only,
            so a multi-objective search trains every trial to the end.
  choice    the best dev score (ties: the lower final training loss, then the earlier trial); with several
            objectives, the same rule among the Pareto set (Optuna's `best_trials`), which the record and
            the report show whole.

The cache: tunebench's own trial records, not Optuna's storage. Each trial is a record in
`<experiment>/selection/<model>--<method>/trial--<hash>.json`, named by the hash of what it computes (the
configured run's identity, as a run's), with its dev curve and costs. A search is replayed in memory: the
seeded sampler proposes the same configurations in the same order when it is told the same results, so a
trial whose record exists is told its recorded curve and result without training. A second run of the
same experiment trains nothing; an interrupted search trains only what is missing, and ends where the
uninterrupted one would have (Optuna's RDB or journal storage would keep the trials, but not the sampler's
random state, so a resumed study would propose other configurations than an uninterrupted one); raising
`trials` continues the same sequence; a configuration proposed twice is trained once. A trial killed
mid-way resumes from its training checkpoint (`budget.checkpoint_every`).

The final run of the first seed is the chosen trial's training when that trial ran its whole budget: its
trained state is kept (`trial--<hash>/`) and evaluated on test instead of being trained again, as the
learning-rate grid's winner is (selection.py). A list over `lr` alone is that learning-rate grid
(config.py), which keeps its own search (grid or successive halving).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import optuna

from tunebench.config import MethodSpec
from tunebench.core import store
from tunebench.core.errors import TunebenchError
from tunebench.core.searchspace import Dimension, SearchSpec
from tunebench.core.typed import build
from tunebench.core.ui import console
from tunebench.methods.base import require_access
from tunebench.models import ResolvedModel
from tunebench.runs import measure
from tunebench.runs.cell import KEPT_TRAINING, make_context, train_record
from tunebench.runs.child import ChildDied, ask_parent, run_in_child
from tunebench.runs.devcurve import DevCurve
from tunebench.runs.grid import Cell, Grid, identity, needs_lr_search
from tunebench.runs.selection import SELECTION_DIR, final_loss, keep_state, with_selected_lr
from tunebench.tasks.subsets import TrainingSubset
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer
from tunebench.train.memory import release_memory

optuna.logging.set_verbosity(optuna.logging.WARNING)  # tunebench prints each trial itself
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

TRIAL = "trial--"
#: Beside a trial's record while it trains: its checkpoint, for a killed trial to resume from.
CHECKPOINT = ".ckpt"
#: Optuna's direction of each objective.
DIRECTIONS: dict[str, Literal["maximize", "minimize"]] = {"dev": "maximize", "trainable_params": "minimize", "peak_memory": "minimize",
              "train_seconds": "minimize"}  # fmt: skip
CHOICE_RULE = "the best dev score (ties: the lower final training loss, then the earlier trial)"


@dataclass
class Trial:
    """One configuration trained and scored on dev (a record's `trial`, a search record's `trials[i]`)."""

    number: int
    params: dict[str, Any]
    status: str = "complete"
    """complete, pruned (stopped by the pruner; its dev score is the best of its curve so far) or failed."""
    metric: str | None = None
    dev_score: float | None = None
    dev_curve: list[list[float]] = field(default_factory=list)
    steps: int = 0
    """Optimizer steps it trained (fewer than the budget's when pruned)."""
    final_loss: float | None = None
    trainable_params: int | None = None
    peak_memory_mb: float | None = None
    train_seconds: float | None = None
    pruned_at: int | None = None
    error: str | None = None
    cached: bool = False
    """Told from its record (trained in an earlier run, or earlier in this search), not trained now."""
    key: str = ""
    """The hash naming its record: the identity of the configured run."""

    def values(self, objectives: list[str]) -> list[float | None]:
        """Its value for each objective, in order (a complete trial; None: not measured)."""
        figures = {"dev": self.dev_score, "trainable_params": self.trainable_params,
                   "peak_memory": self.peak_memory_mb, "train_seconds": self.train_seconds}  # fmt: skip
        return [None if (v := figures[o]) is None else float(v) for o in objectives]

    def rank_key(self) -> tuple:
        """Best first: a higher dev score, then a lower final loss, then the earlier trial."""
        loss = self.final_loss if self.final_loss is not None else float("inf")
        return (-(self.dev_score or 0.0), loss, self.number)


def needs_search(method_spec: MethodSpec) -> bool:
    """Something to choose on dev before the final runs: a search, or the learning-rate grid."""
    return method_spec.search is not None or needs_lr_search(method_spec)


def with_search(
    grid: Grid, model: ResolvedModel, method_spec: MethodSpec, size: TrainingSubset | None = None
) -> tuple[MethodSpec, dict | None]:
    """The method's spec with its options chosen on dev, and the learning-rate selection record (None
    unless it ran the learning-rate grid). An Optuna search's record travels on the spec (`searched`).
    With several training-set sizes, each size searches on its own (`size`)."""
    if method_spec.search is None:
        return with_selected_lr(grid, model, method_spec, size)
    record = search_for_cell(Cell(model, method_spec, grid.spec.seeds[0], size), grid)
    chosen = method_spec
    if record["chosen"] is not None:
        chosen = configured(method_spec, record["chosen"], f"methods ({method_spec.name}).search")
    return dataclasses.replace(chosen, searched=record), None


def configured(method_spec: MethodSpec, params: dict[str, Any], where: str) -> MethodSpec:
    """The method's spec with `params` set on its options, its objective's options and its budget
    (validated together: a combination the method refuses raises SpecError)."""
    assert method_spec.search is not None
    groups = {d.name: d.group for d in method_spec.search.space}

    def rebuilt(obj: Any, group: str) -> Any:
        given = {k: v for k, v in params.items() if groups[k] == group}
        return build(type(obj), {**dataclasses.asdict(obj), **given}, where) if given else obj

    return dataclasses.replace(
        method_spec,
        options=rebuilt(method_spec.options, "method"),
        objective_options=rebuilt(method_spec.objective_options, "objective")
        if method_spec.objective_options is not None
        else None,
        budget=rebuilt(method_spec.budget, "budget"),
    )


# -- the study --------------------------------------------------------------------------------------------


def search_for_cell(cell: Cell, grid: Grid) -> dict[str, Any]:
    """Run (or replay) the search of one (model, method) and return its record (result.json `search`)."""
    spec = cell.method.search
    assert spec is not None
    folder = grid.exp_dir / SELECTION_DIR / cell.selection_name
    pruning, why_not = _pruning(spec, cell.method.budget)
    study = optuna.create_study(
        study_name=cell.selection_name,  # Hyperband's brackets hash it: keep it fixed
        sampler=_sampler(spec, cell.seed),
        pruner=_pruner(spec) if pruning else optuna.pruners.NopPruner(),
        directions=[DIRECTIONS[o] for o in spec.objectives],
    )
    console.print(
        f"[bold]{cell.selection_name}[/bold]: searching "
        f"{', '.join(d.name for d in spec.space)} on dev ({spec.trials} trials, "
        f"{'grid' if spec.exhaustive else 'TPE'}{', pruned on the dev curve' if pruning else ''})"
    )
    runner = _Runner(cell, grid, folder, spec, pruning)
    trials: list[Trial] = []
    for number in range(spec.trials):
        asked = study.ask()
        params = _suggest(asked, spec.space)
        trial = runner.run(asked, number, params)
        _tell(study, asked, trial, spec.objectives)
        trials.append(trial)
    return runner.finish(study, trials, why_not)


def _pruning(spec: SearchSpec, budget: Budget) -> tuple[bool, str | None]:
    """Whether trials can be pruned, and why not when they cannot."""
    if spec.pruner.name == "none":
        return False, "pruner: none"
    if spec.multi_objective:
        return False, "Optuna's pruners work on one objective; a multi-objective search trains every trial"
    if not budget.dev_every:
        return False, "no dev curve to prune on (set budget.dev_every)"
    return True, None


def _sampler(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    if spec.exhaustive:
        grid = {d.name: [_encode(v) for v in d.values] for d in spec.space}
        return _GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its `study.stop()` once the grid is done: that works only inside
    `Study.optimize`, and tunebench asks exactly as many trials as the grid has combinations."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def _pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)


def _encode(value: Any) -> Any:
    """Optuna's categorical values are None, bool, int, float or str; a list (target_modules) goes as JSON."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def _suggest(trial: optuna.trial.BaseTrial, space: list[Dimension]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for d in space:
        if d.kind == "choice":
            decode = {_encode(v): v for v in d.values}
            params[d.name] = decode[trial.suggest_categorical(d.name, list(decode))]
        elif d.integer:
            params[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), log=d.kind == "log")
        else:
            params[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.kind == "log")
    return params


def _tell(study: optuna.Study, asked: optuna.Trial, trial: Trial, objectives: list[str]) -> None:
    values = trial.values(objectives)
    if trial.status == "complete" and None in values:
        missing = [o for o, v in zip(objectives, values, strict=True) if v is None]
        trial.status, trial.error = "failed", f"not measured: {', '.join(missing)}"
    if trial.status == "complete":
        study.tell(asked, [v for v in values if v is not None])
    elif trial.status == "pruned":
        study.tell(asked, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(asked, state=optuna.trial.TrialState.FAIL)


# -- one trial: told from its record, or trained ------------------------------------------------------------


class _Runner:
    """Trains (or replays) the trials of one search and keeps the best one's trained state."""

    def __init__(self, cell: Cell, grid: Grid, folder: Path, spec: SearchSpec, pruning: bool) -> None:
        self.cell, self.grid, self.folder, self.spec, self.pruning = cell, grid, folder, spec, pruning
        self.fresh: set[str] = set()
        """Records written by this search: read back even under --force (a configuration proposed twice)."""
        self.reported: set[int] = set()
        """The dev-curve steps the current trial reported to the pruner (a replay, then its training)."""
        self.best: Trial | None = None
        """The best complete trial trained so far, whose state is kept (`trial--<hash>/`)."""

    def run(self, asked: optuna.Trial, number: int, params: dict[str, Any]) -> Trial:
        self.reported = set()
        shown = ", ".join(f"{k}={_show(v)}" for k, v in params.items())
        try:
            spec = configured(self.cell.method, params, f"methods ({self.cell.method.name}).search")
        except TunebenchError as e:  # a combination the method refuses (each value alone was fine)
            console.print(f"  trial {number} ({shown}): [red]refused[/red] ({e})")
            return Trial(number, params, status="failed", error=str(e))
        cell = dataclasses.replace(self.cell, method=spec)
        config = {**self.grid.config(cell), "role": "search-trial"}
        key = store.config_hash(identity(config))
        path = self.folder / f"{TRIAL}{key}.json"
        trial = self._replay(asked, number, params, key, path)
        if trial is None:
            trial = self._train(cell, asked, number, params, key, path)
            record = {
                "schema": 1,
                "status": "failed" if trial.status == "failed" else "ok",  # the run store's statuses
                "config": config,
                "trial": dataclasses.asdict(trial),
            }
            self.folder.mkdir(parents=True, exist_ok=True)  # also when the trial failed before training
            store.write_json_atomic(path, record)
            self.fresh.add(key)
        _print(trial, shown)
        return trial

    def _replay(
        self, asked: optuna.Trial, number: int, params: dict[str, Any], key: str, path: Path
    ) -> Trial | None:
        """The trial told from its record, pruned where the pruner says so now; None when it must train (no
        record, or a pruned one the pruner now lets go further)."""
        if not path.exists() or (self.grid.force and key not in self.fresh):
            return None
        try:
            saved = store.read_result(path)["trial"]
            trial = Trial(**{**saved, "number": number, "params": params, "cached": True, "key": key})
        except (TunebenchError, KeyError, TypeError):  # a damaged or older record: trained again
            return None
        if trial.status == "failed":
            return trial
        for i, (step, score) in enumerate(trial.dev_curve):
            if self._prune(asked, int(step), score):
                best = max(s for _, s in trial.dev_curve[: i + 1])
                return dataclasses.replace(
                    trial,
                    status="pruned",
                    pruned_at=int(step),
                    dev_score=best,
                    dev_curve=trial.dev_curve[: i + 1],
                )
        return trial if trial.status == "complete" else None

    def _prune(self, asked: optuna.Trial, step: int, score: float) -> bool:
        """Report a point of the dev curve (once per step) and ask the pruner."""
        if not self.pruning:
            return False
        if step not in self.reported:
            asked.report(score, step)
            self.reported.add(step)
        return asked.should_prune()

    def _train(
        self, cell: Cell, asked: optuna.Trial, number: int, params: dict[str, Any], key: str, path: Path
    ) -> Trial:
        """Train the trial here, or in a process of its own (`grid.trials_apart`), which asks this
        process's pruner about its dev curve; keep its trained state when it is the best so far."""
        best = self.best.rank_key() if self.best is not None else None
        if self.grid.trials_apart:
            try:
                trial, kept = run_in_child(
                    _train_trial, cell, self.grid.for_worker(), self.folder, number, params, key, path,
                    _ask_pruner, best, name=f"tunebench {cell.selection_name} trial {number}",
                    answer=lambda point: self._prune(asked, *point),
                )  # fmt: skip
            except ChildDied as e:  # its own handling never ran: a failed trial, as a diverged one is
                trial, kept = Trial(number, params, key=key, status="failed", error=str(e)), False
        else:
            trial, kept = _train_trial(
                cell, self.grid, self.folder, number, params, key, path,
                lambda step, score: self._prune(asked, step, score), best,
            )  # fmt: skip
        if kept:
            if self.best is not None:
                shutil.rmtree(self.folder / f"{TRIAL}{self.best.key}", ignore_errors=True)
            self.best = trial
        return trial

    def finish(self, study: optuna.Study, trials: list[Trial], why_not: str | None) -> dict[str, Any]:
        """The choice, the Pareto set, and the record; the trained states of the others are dropped."""
        complete = [t for t in trials if t.status == "complete"]
        multi = self.spec.multi_objective
        pareto = sorted(t.number for t in study.best_trials) if complete and multi else []
        pool = [t for t in complete if t.number in pareto] if multi else complete
        chosen = min(pool, key=Trial.rank_key) if pool else None
        state = self.folder / f"{TRIAL}{chosen.key}" if chosen is not None else None
        for path in self.folder.glob(f"{TRIAL}*"):
            if path.is_dir() and path != state:  # losers' states, and checkpoints of trials never finished
                shutil.rmtree(path, ignore_errors=True)
        reusable = state is not None and (state / KEPT_TRAINING).exists()
        console.print(
            f"  chosen: [cyan]{', '.join(f'{k}={_show(v)}' for k, v in chosen.params.items())}[/cyan] "
            f"(trial {chosen.number}, dev {chosen.dev_score:.1%})"
            if chosen is not None
            else "  [red]every trial failed[/red]"
        )
        return {
            "sampler": "grid" if self.spec.exhaustive else "TPE",
            "seed": self.cell.seed,
            "split": "dev",
            "metric": next((t.metric for t in trials if t.metric), None),
            "space": {d.name: d.to_spec() for d in self.spec.space},
            "objectives": list(self.spec.objectives),
            "directions": [DIRECTIONS[o] for o in self.spec.objectives],
            "pruner": self.spec.pruner.name if self.pruning else None,
            "pruning_off": why_not,
            "rule": CHOICE_RULE + (" among the Pareto set" if self.spec.multi_objective else ""),
            "trials": [dataclasses.asdict(t) for t in trials],
            "pareto": pareto,
            "chosen": dict(chosen.params) if chosen is not None else None,
            "chosen_trial": chosen.number if chosen is not None else None,
            "trained": sum(not t.cached for t in trials),
            "reusable": reusable,
            "reuse_path": str(state) if reusable else None,
            "optuna": metadata.version("optuna"),
        }


Prune = Callable[[int, float], bool]
"""Report a point of the dev curve (step, score) to the search's pruner; True: stop the trial."""


def _ask_pruner(step: int, score: float) -> bool:
    """A trial's pruner in a process of its own: the search's process answers (runs/child.py)."""
    return bool(ask_parent((step, score)))


def _train_trial(
    cell: Cell,
    grid: Grid,
    folder: Path,
    number: int,
    params: dict[str, Any],
    key: str,
    path: Path,
    prune: Prune,
    best: tuple | None,
) -> tuple[Trial, bool]:
    """Train the configured method on the first seed (resuming a killed attempt), reporting its dev
    curve to the pruner, and score it on dev; keep its trained state when it ranks before `best` (the
    rank key of the best trial so far). Returns the trial and whether its state was kept."""
    budget = cell.method.budget
    trial = Trial(number, params, key=key)
    kept = False
    checkpoint = Checkpointer(folder / f"{TRIAL}{key}{CHECKPOINT}", budget.checkpoint_every, key)
    method = cell.method.make()
    try:
        require_access(method, cell.model)
        method.check(grid.task, cell.model)
        folder.mkdir(parents=True, exist_ok=True)  # the checkpoint's
        earlier = checkpoint.meta()
        dev = DevCurve(method, budget, (earlier or {}).get("extra"))
        checkpoint.extra = dev.saved
        splits = grid.splits_for(cell)
        ctx = make_context(cell, grid.task, splits, budget, grid.progress)
        ctx.checkpoint = checkpoint
        pruned = [step for step, score in dev.curve if prune(int(step), score)][:1]

        def on_step(step: int, steps: int, loss: float) -> bool:
            grid.progress.train_step(step, steps, loss)
            stop = dev.after_step(step, steps, ctx)
            if dev.curve and dev.curve[-1][0] == step and prune(step, dev.curve[-1][1]):
                pruned.append(step)
            return stop or bool(pruned)

        ctx.on_train_step = on_step
        method.prepare(ctx)
        trial.trainable_params = method.param_counts()[0]
        stats = method.fit(ctx) if not pruned else None
        early = dev.finish()
        checkpoint.clear()
        trial.dev_curve = dev.curve
        if stats is not None:
            train = train_record(stats, method.truncated, dev, early, len(splits.dev))
            assert train is not None
            trial.steps, trial.final_loss = stats.steps, final_loss(stats.losses)
            trial.peak_memory_mb = train["peak_gpu_mb"] or train["peak_rss_mb"]
            trial.train_seconds = train["seconds"]
        if pruned:
            trial.status, trial.pruned_at = "pruned", int(pruned[0])
            trial.metric = dev.metric
            trial.dev_score = max(v for _, v in dev.curve) if dev.curve else None
        else:
            trial.metric, trial.dev_score = _dev_score(method, ctx, dev, stats, early)
            if stats is not None and (best is None or trial.rank_key() < best):
                # kept for the final run of this seed to reuse
                objective = method.objective.info if method.objective is not None else None
                keep_state(method, path.with_suffix(""), train, objective, stats.losses)
                kept = True
    except Exception as e:  # a configuration that fails (diverges, runs out of memory) is a result
        checkpoint.clear()
        trial.status, trial.error = "failed", f"{type(e).__name__}: {e}"
    finally:
        del method
        release_memory()
    return trial, kept


def _dev_score(method: Any, ctx: Any, dev: DevCurve, stats: Any, early: dict | None) -> tuple[str, float]:
    """The dev score at the end of training: the curve's last point when it was taken there (and no
    early stopping put an earlier state back), else a dev evaluation now."""
    restored = bool(early and early.get("restored"))
    if stats is not None and dev.curve and dev.curve[-1][0] == stats.steps and not restored and dev.metric:
        return dev.metric, dev.curve[-1][1]
    return measure.dev_score(method, ctx)


def _print(trial: Trial, shown: str) -> None:
    if trial.status == "failed":
        console.print(f"  trial {trial.number} ({shown}): [red]failed[/red] ({trial.error})")
        return
    how = "finished earlier, " if trial.cached else ""
    what = f"pruned at step {trial.pruned_at}, " if trial.status == "pruned" else ""
    score = "—" if trial.dev_score is None else f"{trial.dev_score:.1%}"
    console.print(f"  [dim]trial {trial.number} ({shown}): {how}{what}dev {trial.metric} {score}[/dim]")


def _show(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
