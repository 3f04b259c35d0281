"""The training loop: AdamW, warm-up then cosine decay, bf16 autocast, gradient accumulation.

It fits on a screen on purpose. A method supplies the model (with its trainable parameters set) and a
loss function; the loop owns the budget and the measurements.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tunebench.train import distributed
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer
from tunebench.train.data import Batch, Encoded, batch_stream
from tunebench.train.device import autocast
from tunebench.train.memory import PeakMemory, release_memory

LossFn = Callable[[torch.nn.Module, Batch], torch.Tensor]
#: Called after every optimizer step with (step, steps, loss); returning True stops training there (early
#: stopping on the dev split decides it in the runner, which owns the dev evaluation).
OnStep = Callable[[int, int, float], "bool | None"]
#: Builds the optimizer from the trainable parameters (tensors, or groups with their own "lr") and the filled
#: budget: a method that does not train with AdamW gives its own (GaLore's projected Adam); else `make_optimizer`.
OptimizerFactory = Callable[[list[torch.nn.Parameter] | list[dict], Budget], torch.optim.Optimizer]


class TrainHook:
    """What a method adds to the loop beside its loss, at fixed points of every step (AdaLoRA's rank
    allocation and orthogonality regulariser). This base does nothing; a method returns its own
    (`ModelMethod.train_hook`), so the loop never asks which method it trains. Its state goes into
    checkpoints, so a resumed run or a continued rung of successive halving goes on where it stopped."""

    def start(self, model: torch.nn.Module, steps: int) -> None:
        """Before the first step, with the optimizer steps the whole run plans (the budget's, not a rung's),
        and before a checkpoint's state is put back."""

    def loss(self, model: torch.nn.Module) -> torch.Tensor | None:
        """A term added to every micro-batch's loss for the gradients only; the logged loss, the convergence
        check and tie-breaks see the task's loss alone. None: nothing to add."""
        return None

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        """After optimizer step `step` (1-based), while the gradients are still there (before they are
        cleared)."""

    def state(self) -> dict[str, Any]:
        """What the hook has accumulated, for a checkpoint: tensors, lists, numbers and strings only
        (checkpoints load with weights_only)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Put back what `state` returned, after `start`."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); the run is recorded as failed."""


@dataclass
class TrainStats:
    seconds: float = 0.0
    steps: int = 0
    examples: int = 0
    tokens: int = 0
    """Non-padding tokens processed (prompt and target)."""
    target_tokens: int = 0
    padded_tokens: int = 0
    """Tokens the model ran over, padding included (batch × width, summed over micro-batches): with
    `tokens`, how much of the compute went to padding. 0: not known (TRL's loop pads on its own)."""
    max_width: int = 0
    """The widest micro-batch, in tokens with its padding: the peak's activations scale with it."""
    tokens_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    bf16: bool = False
    losses: list[float] = field(default_factory=list)
    resumed_from: int | None = None
    """The step of the checkpoint this run resumed from (None: it ran from the start)."""
    checkpoints: int = 0
    """Checkpoints written by this process."""
    checkpoint_seconds: float = 0.0
    planned_steps: int = 0
    """The steps the budget asked for; more than `steps` when training was stopped early."""
    frozen_cache: dict | None = None
    """Set when the frozen lower blocks were computed once and replayed (train/frozen.py `CachedPrefix`)."""


def _target_tokens(batch: Batch) -> int:
    """Tokens that carry loss: the answer tokens of a generative batch, one per example for a classifier."""
    if batch.labels.dim() == 1:
        return int(batch.labels.shape[0])
    return int((batch.labels[:, 1:] >= 0).sum())


def make_optimizer(params: list[torch.nn.Parameter] | list[dict], budget: Budget) -> torch.optim.Optimizer:
    """AdamW, fused where torch has a fused kernel for the device. `params` are tensors, or parameter groups
    (dicts with "params" and their own "lr", a new classification head's, say), all on one schedule.

    On a 2-core CPU the fused step over SmolLM2-135M's weights takes 0.17 s against 1.2 s for the default
    multi-tensor one: the difference between a 2 s and a 3 s full fine-tuning step.
    """
    assert budget.lr is not None and budget.weight_decay is not None, "make_optimizer needs a filled budget"
    try:
        return torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)


def total_steps(budget: Budget, n_examples: int) -> int:
    if budget.epochs is None:
        return budget.steps
    per_step = budget.batch_size * budget.grad_accum
    return max(1, math.ceil(budget.epochs * n_examples / per_step))


def train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    examples: list[Encoded],
    budget: Budget,
    *,
    seed: int,
    pad_id: int,
    device: torch.device,
    bf16: bool,
    on_step: OnStep | None = None,
    checkpoint: Checkpointer | None = None,
    param_groups: list[dict] | None = None,
    optimizer_factory: OptimizerFactory | None = None,
    hook: TrainHook | None = None,
) -> TrainStats:
    """Train for the budget's steps; with `checkpoint`, resume from its saved state and save every N steps.

    `param_groups`: the trainable parameters split into AdamW groups with their own peak "lr" (default: one
    group at `budget.lr`). `optimizer_factory`: the method's own optimizer (default: fused AdamW).
    `on_step` returning True ends training after that step (early stopping). `hook`: the method's own work
    at each step (`TrainHook`).
    """
    budget = budget.filled()
    steps = total_steps(budget, len(examples))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (optimizer_factory or make_optimizer)(param_groups or params, budget)
    assert budget.warmup is not None  # filled() above sets it
    warmup = int(budget.warmup * steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    stats = TrainStats(bf16=bf16, planned_steps=steps)
    hook = hook or TrainHook()
    hook.start(model, steps)
    saved = checkpoint.restore(model, optimizer, scheduler) if checkpoint is not None else None
    if saved is not None:
        _resume_stats(stats, saved)
        hook.load_state(saved.get("hook") or {})
    # The stream is a pure function of (seed, position): a resumed run draws the batches it would have.
    stream = batch_stream(
        examples,
        budget.batch_size,
        seed,
        pad_id,
        start=stats.steps * budget.grad_accum,
        group_by_length=budget.group_by_length,
    )
    # Under torchrun / accelerate launch: this process's slice of each batch, gradients averaged by DDP.
    loss_fn = distributed.data_parallel(model, loss_fn)
    model.train()
    release_memory()  # what loading freed (fp32 weights before quantization, say) must not count as training's
    with PeakMemory() as mem:
        start, before = time.perf_counter(), stats.seconds
        for step in range(stats.steps, steps):
            # averaged over the processes, so that every process takes the same NaN decision below
            step_loss = distributed.mean(
                accumulate_step(model, loss_fn, stream, budget, device, bf16, stats, hook)
            )
            if not math.isfinite(step_loss):
                raise TrainingError(
                    f"the loss became {step_loss} at step {step + 1}; try a lower learning rate"
                )
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            hook.after_step(model, step + 1)  # reads the gradients: before they are cleared
            optimizer.zero_grad(set_to_none=True)
            stats.losses.append(step_loss)
            stats.steps = step + 1
            stop = on_step is not None and on_step(step + 1, steps, step_loss)
            if checkpoint is not None and (checkpoint.at_stop if stop else checkpoint.due(step + 1, steps)):
                stats.seconds = before + time.perf_counter() - start - checkpoint.seconds
                stats.peak_rss_mb, stats.peak_gpu_mb = _peaks(stats, mem)
                checkpoint.save(
                    step + 1, model, optimizer, scheduler, dataclasses.asdict(stats), hook_state=hook.state()
                )
            if stop:
                break  # early stopping (the caller restores the best state it kept), or a rung's end
        # Writing checkpoints is the harness's cost, not the method's: it is left out of training time.
        stats.seconds = before + time.perf_counter() - start - (checkpoint.seconds if checkpoint else 0.0)
    model.eval()
    stats.tokens_per_s = stats.tokens / stats.seconds if stats.seconds > 0 else 0.0
    stats.peak_rss_mb, stats.peak_gpu_mb = _peaks(stats, mem)
    if checkpoint is not None:
        stats.checkpoints, stats.checkpoint_seconds = checkpoint.written, checkpoint.seconds
    return stats


def accumulate_step(
    model,
    loss_fn: LossFn,
    stream,
    budget: Budget,
    device,
    bf16: bool,
    stats: TrainStats,
    hook: TrainHook | None = None,
) -> float:
    """One optimizer step's forward and backward passes (grad_accum micro-batches); the mean task loss
    (a hook's term adds to the gradients, not to the figure)."""
    step_loss = 0.0
    for _ in range(budget.grad_accum):
        batch = next(stream).to(device)
        with autocast(device, bf16):
            loss = loss_fn(model, batch)
        extra = hook.loss(model) if hook is not None else None
        ((loss if extra is None else loss + extra) / budget.grad_accum).backward()
        step_loss += loss.item() / budget.grad_accum
        stats.examples += batch.input_ids.shape[0]
        stats.tokens += batch.n_tokens
        stats.target_tokens += _target_tokens(batch)
        stats.padded_tokens += batch.input_ids.numel()
        stats.max_width = max(stats.max_width, batch.input_ids.shape[1])
    return step_loss


def _resume_stats(stats: TrainStats, saved: dict) -> None:
    """The statistics of the steps done before the interruption (time spent after the checkpoint is lost)."""
    for key, value in saved["stats"].items():
        if key in _RESUMED:
            setattr(stats, key, value)
    stats.resumed_from = saved["step"]


#: TrainStats fields carried over from a checkpoint.
_RESUMED = (
    "seconds", "steps", "examples", "tokens", "target_tokens", "padded_tokens", "max_width", "losses",
    "peak_rss_mb", "peak_gpu_mb",
)  # fmt: skip


def _peaks(stats: TrainStats, mem: PeakMemory) -> tuple[float, float | None]:
    """This process's peaks, or the interrupted one's where it was higher."""
    rss = max(stats.peak_rss_mb, mem.peak_rss_mb)
    gpu = [g for g in (stats.peak_gpu_mb, mem.peak_gpu_mb) if g is not None]
    return rss, max(gpu) if gpu else None
