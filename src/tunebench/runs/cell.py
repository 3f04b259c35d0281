"""One run of the grid, recorded in its folder: prepare → train → evaluate → export, then serving costs.

A run that finished with the same config is not redone; a killed one resumes from its checkpoint; one that
fails is recorded as failed with its reason (the attempt's files kept apart), and the grid goes on. After
the test evaluation each run also measures its latency per example (before and after `merge`) and its
drift from the base model (measure.py). The keys a run writes to result.json are documented in record.py.

The steps are also what a learning-rate candidate runs (selection.py): `make_context`, `train_record`,
`export_artifact`.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from pathlib import Path
from typing import TextIO

import torch

from tunebench.core import store
from tunebench.core.errors import StoreError
from tunebench.core.ui import console
from tunebench.methods import Context, Method
from tunebench.methods.base import require_access
from tunebench.runs import measure
from tunebench.runs.devcurve import DevCurve
from tunebench.runs.grid import Cell, Grid, identity
from tunebench.runs.progress import RunProgress
from tunebench.runs.record import base_record
from tunebench.tasks import Splits, Task
from tunebench.tasks.metrics import bootstrap_ci
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer
from tunebench.train.convergence import convergence
from tunebench.train.device import pick_device, use_bf16
from tunebench.train.loop import TrainStats
from tunebench.train.memory import PeakMemory, release_memory

#: Beside a kept learning-rate candidate's artifact: its training record and losses (selection.py).
KEPT_TRAINING = "training.json"


def run_cell(
    cell: Cell,
    grid: Grid,
    *,
    index: int,
    selection: dict | None = None,
    reuse: Path | None = None,
    carry_on: Path | None = None,
) -> dict:
    """Run one cell (or take its earlier result) and return its record. `reuse` names the trained state of
    the learning-rate search's winner when that training was this very run; `carry_on` the state where the
    winner's last rung of successive halving stopped, which this run continues (selection.py)."""
    config = grid.config(cell)
    digest = store.config_hash(identity(config))
    folder = grid.exp_dir / cell.name
    earlier = _earlier(cell, grid, index, config, digest)
    if earlier is not None:
        return earlier
    grid.progress.run_start(cell.name, index, grid.total)
    checkpoint, resume = _open(folder, config, digest, cell, grid.force, carry_on)
    record = _new_record(config, digest, selection, resume)
    record["search"] = cell.method.searched  # the configuration search that chose its options (search.py)
    searched = None if reuse or resume else _searched_state(cell)
    method = cell.method.make()
    started = time.perf_counter()
    try:
        _refuse_a_failed_search(selection)
        _refuse_a_failed_option_search(cell.method.searched)
        given = None if resume else reuse or searched
        _execute(method, cell, grid, folder, record, checkpoint, resume, given)
        if searched is not None:
            record["reused"]["from"] = "configuration search"
        record["status"] = "ok"
    except Exception as e:  # any failure is recorded and the grid goes on
        _stop_if_the_disk_is_full(e)
        _record_failure(record, e, folder, checkpoint)
    finally:
        del method
        release_memory()
    record["wall_seconds"] = time.perf_counter() - started
    store.write_json_atomic(folder / store.RESULT, record)
    if record["status"] == "ok":
        checkpoint.clear()
    grid.progress.run_end(record)
    return record


def earlier_result(cell: Cell, grid: Grid, index: int) -> dict | None:
    """The record of this very run when it finished before (here, in another experiment of the runs
    folder, or in the run cache; copied here then), else None: it has to run. Never with --force."""
    if grid.force:
        return None
    config = grid.config(cell)
    return _earlier(cell, grid, index, config, store.config_hash(identity(config)))


def _earlier(cell: Cell, grid: Grid, index: int, config: dict, digest: str) -> dict | None:
    if grid.force:
        return None
    earlier = _finished_earlier(cell, grid, config, digest, index)
    return (
        None if earlier is None else _searched_again(earlier, cell.method.searched, grid.exp_dir / cell.name)
    )


def _new_record(config: dict, digest: str, selection: dict | None, resume: dict | None) -> dict:
    record = base_record(config, digest)
    record["selection"] = selection
    if resume is not None and resume.get("continued"):
        record["continued"] = {"from": "learning-rate selection", "step": resume["step"]}
    return record


def _stop_if_the_disk_is_full(e: Exception) -> None:
    """Nothing more can be written: stop the grid, keeping the checkpoint to resume from."""
    if not store.is_disk_full(e):
        return
    if isinstance(e, StoreError):
        raise e from None
    assert isinstance(e, OSError)  # is_disk_full: a StoreError or an OSError
    raise StoreError(f"{e}{store.write_hint(e)}") from None


def _finished_earlier(cell: Cell, grid: Grid, config: dict, digest: str, index: int) -> dict | None:
    """The record of this very run (same identity) when it finished before: in this experiment's folder, or
    in another experiment of the same runs folder or of the shared run cache (then copied here, and
    recorded as reused). None: it has to run."""
    folder = grid.exp_dir / cell.name
    if store.is_finished(folder, digest):
        grid.progress.skip(cell.name, index, grid.total)
        return store.read_result(folder / store.RESULT)
    roots = [grid.exp_dir.parent, *([Path(grid.spec.run_cache)] if grid.spec.run_cache else [])]
    source = next(
        (
            found
            for name in cell.aliases
            if (found := store.find_finished(roots, name, digest, exclude=folder))
        ),
        None,
    )
    if source is None:
        return None
    store.copy_run(source, folder)
    store.write_json_atomic(folder / store.CONFIG, config)
    record = store.read_result(source / store.RESULT)
    record.update(experiment=config["experiment"], config=config, data_size=config.get("data_size"))
    record["reused"] = {"from": "an earlier run", "path": str(source.resolve())}
    store.write_json_atomic(folder / store.RESULT, record)  # last: the copy is whole before it counts
    grid.progress.reused(cell.name, index, grid.total, source)
    return record


def _refuse_a_failed_search(selection: dict | None) -> None:
    if selection is not None and selection["chosen_lr"] is None:
        raise RuntimeError(
            "every learning rate in lr_grid failed on the dev split: "
            + "; ".join(f"{c['lr']:g}: {c['error']}" for c in selection["candidates"])
        )


def _searched_again(record: dict, searched: dict | None, folder: Path) -> dict:
    """A finished run whose search was run again and chose the same options: its record gets this search's
    trials when they differ (a search given more trials), not when only what was replayed from the cache
    does."""
    if searched is None:
        return record

    def trials(search: dict | None) -> list:
        return [{k: v for k, v in t.items() if k != "cached"} for t in (search or {}).get("trials", [])]

    if trials(record.get("search")) != trials(searched):
        record["search"] = searched
        store.write_json_atomic(folder / store.RESULT, record)
    return record


def _refuse_a_failed_option_search(searched: dict | None) -> None:
    if searched is not None and searched["chosen"] is None:
        raise RuntimeError(
            "every trial of the search failed on the dev split: "
            + "; ".join(f"trial {t['number']}: {t['error']}" for t in searched["trials"])
        )


def _searched_state(cell: Cell) -> Path | None:
    """The trained state of the search's chosen trial when that training was this very run (the search's
    seed, its whole budget): evaluated on test instead of trained again (runs/search.py)."""
    searched = cell.method.searched
    if not searched or not searched.get("reusable") or cell.seed != searched["seed"]:
        return None
    state = Path(searched["reuse_path"])
    return state if (state / KEPT_TRAINING).exists() else None


def _open(
    folder: Path, config: dict, digest: str, cell: Cell, force: bool, carry_on: Path | None
) -> tuple[Checkpointer, dict | None]:
    """The run's folder, ready: a fresh start, a resume from the checkpoint a killed attempt left, or a
    continuation of the learning-rate search's last rung (`carry_on`)."""
    store.make_folder(folder)
    checkpoint = Checkpointer(folder / store.CHECKPOINT, cell.method.budget.checkpoint_every, digest)
    resume = None if force else checkpoint.meta()
    if resume is None and carry_on is not None:
        checkpoint.adopt(carry_on)
        resume = {**(checkpoint.meta() or {}), "continued": True}
        console.print(f"  continuing the learning-rate search's last rung from step {resume['step']}")
        store.reset_run(folder)
        with open(folder / store.LOG, "a", encoding="utf-8") as log:
            _log_losses(log, resume["stats"]["losses"], continued=True)
    elif resume is None:
        checkpoint.clear()
        store.reset_run(folder)
    else:
        console.print(f"  resuming from the checkpoint at step {resume['step']}")
        store.reset_for_resume(folder, resume["step"])
    store.write_json_atomic(folder / store.CONFIG, config)
    return checkpoint, resume


def _execute(
    method: Method,
    cell: Cell,
    grid: Grid,
    folder: Path,
    record: dict,
    checkpoint: Checkpointer,
    resume: dict | None,
    reuse: Path | None,
) -> None:
    ctx = make_context(cell, grid.task, grid.splits_for(cell), cell.method.budget, grid.progress, folder)
    ctx.checkpoint = checkpoint
    reference = prepare(method, ctx, record)
    with open(folder / store.LOG, "a", encoding="utf-8", buffering=1) as log:  # line-buffered: tail -f works
        if reuse is not None:
            reuse_training(method, reuse, record, log)
        else:
            train(method, ctx, record, log, grid.progress, (resume or {}).get("extra"))
    _note_training(method, ctx, record)
    evaluate(method, ctx, record, folder, grid.progress)
    export_artifact(method, folder, record)
    measure_serving(method, ctx, record, reference)


def make_context(
    cell: Cell, task: Task, splits: Splits, budget: Budget, progress: RunProgress, folder: Path | None = None
) -> Context:
    """What the method needs for this run: the model, the data, the budget, the seed, the device."""
    device = pick_device()
    return Context(
        model=cell.model,
        task=task,
        splits=splits,
        budget=budget,
        seed=cell.seed,
        device=device,
        bf16=use_bf16(budget.precision, device),
        on_eval_batch=progress.eval_batch,
        folder=folder,
    )


def prepare(method: Method, ctx: Context, record: dict) -> dict | None:
    """Check that the method fits, load and wrap the model, count its parameters. Returns the base model's
    reference outputs for the drift measurement (decoders only; taken before the method changes them)."""
    require_access(method, ctx.model)
    method.check(ctx.task, ctx.model)
    reference = measure.drift_reference(ctx) if ctx.model.kind == "decoder" else None
    method.prepare(ctx)
    trainable, total = method.param_counts()
    record["params"] = {
        "trainable": trainable,
        "total": total,
        "trainable_pct": 100.0 * trainable / total if total else 0.0,
    }
    record["method_info"] = method.info()  # what the method chose while preparing (partial's chosen layers)
    return reference


def train(
    method: Method, ctx: Context, record: dict, log: TextIO, progress: RunProgress, saved: dict | None
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
    early = dev.finish()  # with early stopping: the state its rule keeps is in the model (devcurve.py)
    record["train"] = train_record(stats, method.truncated, dev, early, len(ctx.splits.dev))
    # what a training objective built and dropped (teacher data, preference pairs); None for plain SFT
    record["objective"] = method.objective.info if method.objective is not None else None


def reuse_training(method: Method, state: Path, record: dict, log: TextIO) -> None:
    """The learning-rate search already trained this exact run (same seed, same whole budget): load its
    trained state instead of training again, and record its training costs and that it was reused."""
    method.restore(state / store.ARTIFACT)
    saved = json.loads((state / KEPT_TRAINING).read_text(encoding="utf-8"))
    record["train"], record["objective"] = saved["train"], saved["objective"]
    record["reused"] = {"from": "learning-rate selection", "path": str(state)}
    method.truncated = (saved["train"] or {}).get("truncated") or 0
    _log_losses(log, saved.get("losses") or [], reused=True)
    console.print(f"  [dim]trained during the search on dev: reusing {state.name}[/dim]")


def _log_losses(log: TextIO, losses: list[float], **marks: bool) -> None:
    """The steps another training did for this run (the search's winner it reuses, or a rung it
    continues), in its log, marked as such."""
    for step, loss in enumerate(losses, start=1):
        log.write(json.dumps({"event": "train_step", "step": step, "loss": loss, **marks}) + "\n")


def _note_training(method: Method, ctx: Context, record: dict) -> None:
    # a classification head's pooling, its source, its rate and how it started (LP-FT: from the probe)
    record["head"] = getattr(method, "head_info", None)
    if method.truncated:
        console.print(
            f"  [yellow]{method.truncated} of {len(ctx.splits.train)} training examples are longer than "
            f"max_length {ctx.budget.max_length} tokens and were cut[/yellow] (budget.max_length)"
        )


def evaluate(method: Method, ctx: Context, record: dict, folder: Path, progress: RunProgress) -> None:
    """Answer the test split once, timed and with its peak memory; score it and write the predictions."""
    progress.eval_start(len(ctx.splits.test))
    with PeakMemory() as mem:
        start = time.perf_counter()
        predictions = method.predict(ctx, [e.input for e in ctx.splits.test])
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
    _score(ctx.task, ctx.splits, predictions, ctx.seed, folder, record)


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


def export_artifact(method: Method, folder: Path, record: dict) -> None:
    """Write the method's artifact into `folder/artifact`, whole or not at all (renamed into place)."""
    partial = folder / f".{store.ARTIFACT}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    method.save(partial)
    partial.rename(folder / store.ARTIFACT)
    record["artifact"] = {"path": store.ARTIFACT, "bytes": store.dir_bytes(folder / store.ARTIFACT)}


def measure_serving(method: Method, ctx: Context, record: dict, reference: dict | None) -> None:
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


def train_record(
    stats: TrainStats | None, truncated: int, dev: DevCurve, early: dict | None, n_dev: int
) -> dict | None:
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
        "padded_tokens": getattr(stats, "padded_tokens", 0) or None,  # 0: not known (TRL's loop)
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
        "frozen_cache": getattr(stats, "frozen_cache", None),
        "early_stopping": early,
        "convergence": convergence(
            curve,
            stats.losses,
            stopped_early=dev.stopped_at is not None,
            threshold=threshold,
            items=dev.items,
        ),
    }


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
