"""Expand a spec into runs (model × method × seed) and run each one: prepare → fit → evaluate → export.

Everything that can be checked is checked before the first run starts (names, options, the data), so
a bad spec writes nothing. A run that fails is recorded with its reason and the grid goes on.

Before the final runs of a method that trains and declares `lr_grid`, its learning rate is chosen on the
dev split (runs/selection.py); candidates are cached under `<experiment>/selection/` so that a finished
selection, like a finished run, is never redone. After the test evaluation each run also measures its
latency per example (before and after `merge`) and its drift from the base model (runs/measure.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from tunebench.config import ExperimentSpec, MethodSpec
from tunebench.core import store
from tunebench.core.errors import SpecError, StoreError
from tunebench.core.ui import console
from tunebench.methods import Context, Method
from tunebench.methods.base import require_access
from tunebench.models import ResolvedModel, resolve_model
from tunebench.objectives import method_class
from tunebench.runs import measure
from tunebench.runs.devcurve import DevCurve
from tunebench.runs.progress import RunProgress
from tunebench.runs.record import base_record
from tunebench.runs.selection import Candidate, final_loss, select_lr
from tunebench.tasks import Splits, Task, build_task
from tunebench.tasks.metrics import bootstrap_ci
from tunebench.train import distributed
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer
from tunebench.train.convergence import convergence
from tunebench.train.device import pick_device, use_bf16
from tunebench.train.memory import PeakMemory, release_memory

if TYPE_CHECKING:
    from tunebench.runs.executors import Executor
    from tunebench.runs.tracking import Tracker

SELECTION_DIR = "selection"
#: Beside a kept candidate's artifact: its training record and losses, for the final run that reuses it.
CANDIDATE_TRAINING = "training.json"
#: Budget fields that matter to a method that does not train; the others are left out of its config, so
#: that changing the training budget does not redo the prompting runs.
_INFERENCE_BUDGET = ("max_length", "precision", "eval_batch_size")
#: Budget fields that change how a run is carried out but not its results: left out of every config.
_OPERATIONAL_BUDGET = ("checkpoint_every",)


@dataclass
class Cell:
    model: ResolvedModel
    method: MethodSpec
    seed: int

    @property
    def name(self) -> str:
        return store.run_name(self.model.name, self.method.name, self.seed)


def run_experiment(
    spec: ExperimentSpec,
    *,
    force: bool = False,
    progress: RunProgress | None = None,
    executor: Executor | None = None,
    tracker: Tracker | None = None,
) -> list[dict]:
    """Run the grid on `executor` (default: here, one run after the other); `tracker` logs each run."""
    from tunebench.runs.executors import Grid, LocalExecutor, for_launch  # executors imports this module

    progress = progress or RunProgress()
    exp_dir = (Path(spec.out) / spec.name).resolve()  # absolute: a Ray worker may start in another folder
    store.check_writable(exp_dir)  # before minutes of model preparation; creates nothing
    spec = for_launch(spec)  # one of several processes (torchrun): what that supports
    task = build_task(spec.task.name, spec.task.options, f"{spec.source}: task")
    splits = task.splits()
    _check_dev_split(spec, splits)
    models = [resolve_model(name) for name in spec.models]
    if distributed.is_main():  # of several processes, only the main one writes to the run store
        store.make_folder(exp_dir)
        store.write_text_atomic(exp_dir / "spec.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    grid = Grid(spec, task, splits, models, exp_dir, force, progress)
    if tracker is not None:
        grid.on_result = tracker.log_run
    return (executor or LocalExecutor()).run(grid)


def needs_lr_search(method_spec: MethodSpec) -> bool:
    return bool(method_class(method_spec.name).trains and method_spec.budget.lr_grid)


def _with_selected_lr(
    model: ResolvedModel,
    method_spec: MethodSpec,
    spec: ExperimentSpec,
    task: Task,
    splits: Splits,
    exp_dir: Path,
    force: bool,
    progress: RunProgress,
) -> tuple[MethodSpec, dict | None]:
    """The method's spec with its learning rate chosen on dev, and the selection record (None: no search)."""
    if not needs_lr_search(method_spec):
        return method_spec, None
    cell = Cell(model, method_spec, spec.seeds[0])
    selection = _select(cell, spec, task, splits, exp_dir, force=force, progress=progress)
    if selection["chosen_lr"] is None:
        return method_spec, selection  # the final runs record the failure
    budget = dataclasses.replace(method_spec.budget, lr=selection["chosen_lr"])
    return dataclasses.replace(method_spec, budget=budget), selection


def _check_dev_split(spec: ExperimentSpec, splits: Splits) -> None:
    """Selection and dev curves score the dev split: say so before anything runs if it is empty."""
    if splits.dev:
        return
    for m in spec.methods:
        for key in ("lr_grid", "dev_every", "early_stopping"):
            if getattr(m.budget, key):
                raise SpecError(
                    f"{spec.source}: methods ({m.name}).{key} needs a dev split, and the task's is "
                    "empty; give the task a dev_size (or dev_fraction)"
                )


def cell_config(cell: Cell, spec: ExperimentSpec, task: Task, splits: Splits) -> dict[str, Any]:
    budget = dataclasses.asdict(cell.method.budget)
    for key in _OPERATIONAL_BUDGET:
        del budget[key]
    if not method_class(cell.method.name).trains:
        budget = {k: budget[k] for k in _INFERENCE_BUDGET}
    return {
        "experiment": spec.name,
        "model": cell.model.name,
        "model_path": cell.model.path,
        "task": {
            "name": task.name,
            "registered_as": spec.task.name,
            **spec.task.options,
            "data_fingerprint": splits.fingerprint(),
            "sizes": {"train": len(splits.train), "dev": len(splits.dev), "test": len(splits.test)},
        },
        "method": {"name": cell.method.name, **dataclasses.asdict(cell.method.options)},
        "budget": budget,
        "seed": cell.seed,
    }


def run_cell(
    cell: Cell,
    spec: ExperimentSpec,
    task: Task,
    splits: Splits,
    exp_dir: Path,
    *,
    force: bool,
    progress: RunProgress,
    index: int,
    total: int,
    selection: dict | None = None,
) -> dict:
    config = cell_config(cell, spec, task, splits)
    digest = store.config_hash(config)
    folder = exp_dir / cell.name
    if not force and store.is_finished(folder, digest):
        progress.skip(cell.name, index, total)
        return store.read_result(folder / store.RESULT)
    progress.run_start(cell.name, index, total)
    store.make_folder(folder)
    checkpoint = Checkpointer(folder / store.CHECKPOINT, cell.method.budget.checkpoint_every, digest)
    resume = None if force else checkpoint.meta()
    if resume is None:
        checkpoint.clear()
        store.reset_run(folder)
    else:
        console.print(f"  resuming from the checkpoint at step {resume['step']}")
        store.reset_for_resume(folder, resume["step"])
    store.write_json_atomic(folder / store.CONFIG, config)
    record = base_record(config, digest)
    record["selection"] = selection
    method: Method = method_class(cell.method.name)(cell.method.options)
    started = time.perf_counter()
    try:
        if selection is not None and selection["chosen_lr"] is None:
            raise RuntimeError(
                "every learning rate in lr_grid failed on the dev split: "
                + "; ".join(f"{c['lr']:g}: {c['error']}" for c in selection["candidates"])
            )
        reuse = _reusable(selection, cell) if resume is None else None
        _execute(method, cell, task, splits, folder, record, progress, checkpoint, resume, reuse)
        record["status"] = "ok"
    except Exception as e:  # any failure is recorded and the grid goes on
        if store.is_disk_full(e):  # nothing more can be written: stop, keeping the checkpoint to resume
            raise e if isinstance(e, StoreError) else StoreError(f"{e}{store.write_hint(e)}") from None
        _record_failure(record, e, folder, checkpoint)
    finally:
        del method
        release_memory()
    record["wall_seconds"] = time.perf_counter() - started
    store.write_json_atomic(folder / store.RESULT, record)
    if record["status"] == "ok":
        checkpoint.clear()
    progress.run_end(record)
    return record


def _reusable(selection: dict | None, cell: Cell) -> Path | None:
    """The kept state of the selection's winner when it trained exactly this run (same seed, whole budget)."""
    if not selection or not selection.get("reusable") or cell.seed != selection["seed"]:
        return None
    state = candidate_state(Path(selection["reuse_path"]))
    return state if (state / CANDIDATE_TRAINING).exists() else None


def _record_failure(record: dict, e: Exception, folder: Path, checkpoint: Checkpointer) -> None:
    """Status failed with its reason; the attempt's files go to failed-<time>/, its checkpoint away (a
    rerun starts clean: resuming would meet the same NaN, and full fine-tuning checkpoints are large)."""
    record["status"], record["error"] = "failed", failure_reason(e)
    with open(folder / store.LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps({"event": "error", "traceback": traceback.format_exc()}) + "\n")
    record["failed_files"] = store.keep_apart(folder)
    checkpoint.clear()


def failure_reason(e: BaseException) -> str:
    """The exception in one line, with what to do where the cause is a known one."""
    reason = f"{type(e).__name__}: {e}"
    if isinstance(e, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(e).lower():
        reason += (
            " (out of memory: lower batch_size and raise grad_accum to keep the effective batch, lower "
            "max_length, or choose a method that trains fewer weights)"
        )
    return reason


def _context(
    cell: Cell,
    task: Task,
    splits: Splits,
    budget: Budget,
    on_step,
    progress: RunProgress,
    folder: Path | None = None,
) -> Context:
    device = pick_device()
    return Context(
        model=cell.model,
        task=task,
        splits=splits,
        budget=budget,
        seed=cell.seed,
        device=device,
        bf16=use_bf16(budget.precision, device),
        on_train_step=on_step,
        on_eval_batch=progress.eval_batch,
        folder=folder,
    )


def _execute(
    method: Method,
    cell: Cell,
    task: Task,
    splits: Splits,
    folder: Path,
    record: dict,
    progress: RunProgress,
    checkpoint: Checkpointer,
    resume: dict | None,
    reuse: Path | None = None,
) -> None:
    """Prepare, train (or take a selection candidate's training when `reuse` names it), evaluate, export."""
    require_access(method, cell.model)
    method.check(task, cell.model)
    ctx = _context(cell, task, splits, cell.method.budget, None, progress, folder)
    ctx.checkpoint = checkpoint
    with open(folder / store.LOG, "a", encoding="utf-8", buffering=1) as log:  # line-buffered: tail -f works
        reference = None
        if cell.model.kind == "decoder":  # drift needs text from a base language model
            reference = measure.drift_reference(ctx)
        method.prepare(ctx)
        trainable, total = method.param_counts()
        record["params"] = {
            "trainable": trainable,
            "total": total,
            "trainable_pct": 100.0 * trainable / total if total else 0.0,
        }
        if reuse is not None:
            _reuse_training(method, reuse, record, log)
        else:
            _train(method, ctx, record, log, progress, (resume or {}).get("extra"))
        # a classification head's pooling, its source, its rate and how it started (LP-FT: from the probe)
        record["head"] = getattr(method, "head_info", None)
        if method.truncated:
            console.print(
                f"  [yellow]{method.truncated} of {len(splits.train)} training examples are longer than "
                f"max_length {ctx.budget.max_length} tokens and were cut[/yellow] (budget.max_length)"
            )
    progress.eval_start(len(splits.test))
    with PeakMemory() as mem:
        start = time.perf_counter()
        predictions = method.predict(ctx, [e.input for e in splits.test])
        seconds = time.perf_counter() - start
    record["eval"] = {
        "seconds": seconds,
        "n": len(predictions),
        "ms_per_example": 1000 * seconds / max(1, len(predictions)),
        "peak_rss_mb": mem.peak_rss_mb,
        "peak_gpu_mb": mem.peak_gpu_mb,
        "bf16": ctx.bf16,
    }
    record["usage"] = method.usage()  # an endpoint's tokens and latency for the test split; else None
    _score(task, splits, predictions, cell.seed, folder, record)
    _export(method, folder, record)
    _measure_serving(method, ctx, record, reference)


def _train(
    method: Method, ctx: Context, record: dict, log: Any, progress: RunProgress, saved: dict | None
) -> None:
    """Fit the method, logging every step and the dev curve; early stopping restores the best dev state."""
    dev = DevCurve(method, ctx.budget, saved)
    if ctx.checkpoint is not None:
        ctx.checkpoint.extra = dev.saved

    def on_step(step: int, steps: int, loss: float) -> bool:
        log.write(json.dumps({"event": "train_step", "step": step, "loss": loss, "time": time.time()}) + "\n")
        progress.train_step(step, steps, loss)
        stop = dev.after_step(step, steps, ctx)
        if dev.curve and dev.curve[-1][0] == step:
            event = {"event": "dev_eval", "step": step, "metric": dev.metric, "score": dev.curve[-1][1]}
            log.write(json.dumps(event) + "\n")
        if stop:
            log.write(json.dumps({"event": "early_stop", "step": step, "best_step": dev.best_step}) + "\n")
        return stop

    ctx.on_train_step = on_step
    stats = method.fit(ctx)
    early = dev.finish()  # with early stopping: the best dev state is back in the model
    record["train"] = _train_record(stats, method.truncated, dev, early, len(ctx.splits.dev))
    # what a training objective built and dropped (teacher data, preference pairs); None for plain SFT
    record["objective"] = getattr(method, "objective_info", None)


def _reuse_training(method: Method, state: Path, record: dict, log: Any) -> None:
    """The learning-rate search already trained this exact run (same seed, same whole budget): load its
    trained state instead of training again, and record its training costs and that it was reused."""
    method.load_artifact(state / store.ARTIFACT)
    saved = json.loads((state / CANDIDATE_TRAINING).read_text(encoding="utf-8"))
    record["train"], record["objective"] = saved["train"], saved["objective"]
    record["reused"] = {"from": "learning-rate selection", "path": str(state)}
    method.truncated = (saved["train"] or {}).get("truncated") or 0
    for step, loss in enumerate(saved.get("losses") or [], start=1):
        log.write(json.dumps({"event": "train_step", "step": step, "loss": loss, "reused": True}) + "\n")
    console.print(f"  [dim]trained during the learning-rate search: reusing {state.name}[/dim]")


def _measure_serving(method: Method, ctx: Context, record: dict, reference: dict | None) -> None:
    """Latency one example at a time, drift from the base model, then latency again after merging.

    Timed on dev inputs (test is touched once, by the scored evaluation). Drift is measured before the
    merge, which changes how the weights are stored but not what the model computes.
    """
    inputs = [e.input for e in (ctx.splits.dev or ctx.splits.test)]
    ms, n = measure.latency(method, ctx, inputs)
    record["latency"] = {"ms_per_example": ms, "batch_size": 1, "n": n, "merged_ms_per_example": None}
    record["drift"] = measure.drift(method, ctx, reference) if reference is not None else None
    if method.merge():
        record["latency"]["merged_ms_per_example"], _ = measure.latency(method, ctx, inputs)


def select_for_cell(
    cell: Cell, spec: ExperimentSpec, task: Task, splits: Splits, *, force: bool = False, progress=None
) -> dict:
    """The learning-rate search of one (model, method) alone, cached in the experiment's folder like a
    compare's (for benchmarks comparing searches)."""
    exp_dir = (Path(spec.out) / spec.name).resolve()
    return _select(cell, spec, task, splits, exp_dir, force=force, progress=progress or RunProgress())


def _select(
    cell: Cell,
    spec: ExperimentSpec,
    task: Task,
    splits: Splits,
    exp_dir: Path,
    *,
    force: bool,
    progress: RunProgress,
) -> dict:
    """Choose the learning rate of (model, method) on dev; each candidate is cached like a run, and a
    whole-budget candidate keeps its trained state (`artifact/`) for the final run of the same seed."""
    budget = cell.method.budget
    folder = exp_dir / SELECTION_DIR / f"{cell.model.name}--{store.safe_name(cell.method.name)}"
    console.print(
        f"[bold]{cell.model.name}--{cell.method.name}[/bold]: choosing the learning rate on dev "
        f"({budget.lr_search} over {', '.join(f'{lr:g}' for lr in budget.lr_grid)})"
    )
    paths: dict[float, Path] = {}

    def evaluate(candidate_budget: Budget, rung: int, fraction: float) -> Candidate:
        candidate = dataclasses.replace(
            cell, method=dataclasses.replace(cell.method, budget=candidate_budget)
        )
        config = {**cell_config(candidate, spec, task, splits), "role": "lr-selection", "fraction": fraction}
        path = folder / f"lr{candidate_budget.lr:g}--{store.config_hash(config)}.json"
        if fraction >= 1.0:
            paths[candidate_budget.lr] = path
        if not force and path.exists():
            cached = store.read_result(path)
            if cached.get("status") == "ok":
                console.print(
                    f"  [dim]lr {candidate_budget.lr:g}: finished earlier, dev "
                    f"{cached['candidate']['dev_score']:.1%}[/dim]"
                )
                return Candidate(**cached["candidate"])
        folder.mkdir(parents=True, exist_ok=True)
        result, train = _run_candidate(candidate, task, splits, rung, fraction, progress, path)
        store.write_json_atomic(
            path,
            {
                "schema": 1,
                "status": result.status,
                "config": config,
                "candidate": dataclasses.asdict(result),
                "train": train,
            },
        )
        return result

    selection = select_lr(budget, evaluate, seed=cell.seed)
    chosen = selection["chosen_lr"]
    if selection["reusable"]:
        selection["reuse_path"] = str(paths[chosen])
    _drop_losers(paths, chosen)
    console.print(
        f"  chosen lr: [cyan]{chosen:g}[/cyan]"
        + (" (the grid's edge was extended)" if selection["extended"] else "")
        if chosen is not None
        else "  [red]every candidate failed[/red]"
    )
    return selection


def _drop_losers(paths: dict[float, Path], chosen: float | None) -> None:
    """The trained states of the candidates that lost are not needed (a full model each, for `full`)."""
    for lr, path in paths.items():
        if lr != chosen:
            shutil.rmtree(candidate_state(path), ignore_errors=True)


def candidate_state(path: Path) -> Path:
    """Where a whole-budget candidate keeps its trained state (`artifact/`, `training.json`): beside its
    cached record."""
    return path.with_suffix("")


def _run_candidate(
    cell: Cell, task: Task, splits: Splits, rung: int, fraction: float, progress: RunProgress, path: Path
) -> tuple[Candidate, dict | None]:
    """Train one candidate for `fraction` of the budget (on the whole budget's schedule) and score it on
    dev; a whole-budget candidate also exports its trained state, for the final run to reuse."""
    budget = cell.method.budget
    candidate = Candidate(lr=budget.lr, steps=budget.steps, rung=rung, fraction=fraction)
    method: Method = method_class(cell.method.name)(cell.method.options)
    train = None
    try:
        require_access(method, cell.model)
        method.check(task, cell.model)
        dev = DevCurve(method, budget)

        def on_step(step: int, steps: int, loss: float) -> bool:
            progress.train_step(step, steps, loss)
            stop_here = fraction < 1.0 and step >= math.ceil(fraction * steps)
            return dev.after_step(step, steps, ctx) or stop_here

        ctx = _context(cell, task, splits, budget, on_step, progress)
        method.prepare(ctx)
        stats = method.fit(ctx)
        early = dev.finish()
        if stats is not None:
            candidate.steps, candidate.final_loss = stats.steps, final_loss(stats.losses)
            train = _train_record(stats, method.truncated, dev, early, len(splits.dev))
        candidate.metric, candidate.dev_score = measure.dev_score(method, ctx)
        if fraction >= 1.0 and stats is not None:
            objective = getattr(method, "objective_info", None)
            _keep_state(method, candidate_state(path), train, objective, stats.losses)
            candidate.reusable = True
        console.print(
            f"  lr {budget.lr:g} ({candidate.steps} steps): dev {candidate.metric} "
            f"{candidate.dev_score:.1%}, final loss "
            f"{'—' if candidate.final_loss is None else f'{candidate.final_loss:.3f}'}"
        )
    except Exception as e:  # a candidate that diverges is a result of the search, not a crash
        candidate.status, candidate.error = "failed", f"{type(e).__name__}: {e}"
        console.print(f"  lr {budget.lr:g}: [red]failed[/red] ({candidate.error})")
    finally:
        del method
        release_memory()
    return candidate, train


def _keep_state(
    method: Method, folder: Path, train: dict | None, objective: dict | None, losses: list[float]
) -> None:
    """Export the candidate's trained state (the method's own artifact, written as a run's) and what its
    training cost; the record is written last, so a state without it is never reused (`_reusable`)."""
    shutil.rmtree(folder, ignore_errors=True)  # an earlier, interrupted attempt's
    folder.mkdir(parents=True)
    _export(method, folder, {})
    training = {"train": train, "objective": objective, "losses": losses}
    store.write_json_atomic(folder / CANDIDATE_TRAINING, training)


def _train_record(stats, truncated: int, dev: DevCurve, early: dict | None, n_dev: int) -> dict | None:
    """What training cost, and whether it had converged. Time spent scoring the dev curve is not
    training: it is taken out of `seconds`."""
    if stats is None:
        return None
    seconds = max(stats.seconds - dev.seconds, 1e-9)
    threshold = max(early["min_delta"] if early else 0.0, 1.0 / max(1, n_dev))
    curve = [(int(s), v) for s, v in dev.curve]
    return {
        "seconds": seconds,
        "steps": stats.steps,
        "examples": stats.examples,
        "tokens": stats.tokens,
        "target_tokens": stats.target_tokens,
        "max_width": getattr(stats, "max_width", 0) or None,  # 0: not known (TRL's loop pads on its own)
        "tokens_per_s": stats.tokens / seconds,
        "peak_rss_mb": stats.peak_rss_mb,
        "peak_gpu_mb": stats.peak_gpu_mb,
        "bf16": stats.bf16,
        "final_loss": stats.losses[-1] if stats.losses else None,
        "truncated": truncated,
        "resumed_from": getattr(stats, "resumed_from", None),
        "checkpoints": getattr(stats, "checkpoints", 0),
        "checkpoint_seconds": getattr(stats, "checkpoint_seconds", 0.0),
        "dev_eval_seconds": dev.seconds,
        "dev_curve": dev.curve,
        "planned_steps": getattr(stats, "planned_steps", 0) or stats.steps,
        "early_stopping": early,
        "convergence": convergence(
            curve,
            stats.losses,
            stopped_early=dev.stopped_at is not None,
            threshold=threshold,
            items=dev.items,
        ),
    }


def _score(task: Task, splits: Splits, predictions: list[str], seed: int, folder: Path, record: dict) -> None:
    targets = [e.target for e in splits.test]
    scores = task.score(predictions, targets)
    record["primary_metric"] = scores.primary
    record["metrics"] = scores.metrics
    record["ci95"] = list(bootstrap_ci(scores.correct, seed=seed))
    record["task_info"] = task.describe()
    rows = [
        {"input": e.input, "target": e.target, "prediction": p, "answer": task.answer(p), "correct": c}
        for e, p, c in zip(splits.test, predictions, scores.correct, strict=True)
    ]
    store.write_jsonl_atomic(folder / store.PREDICTIONS, rows)


def _export(method: Method, folder: Path, record: dict) -> None:
    partial = folder / f".{store.ARTIFACT}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    method.export(partial)
    partial.rename(folder / store.ARTIFACT)
    record["artifact"] = {"path": store.ARTIFACT, "bytes": store.dir_bytes(folder / store.ARTIFACT)}
