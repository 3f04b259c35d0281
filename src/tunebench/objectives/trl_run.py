"""Running a TRL trainer under tunebench's budget and measurements.

The budget maps onto TRL's config (batch, accumulation, steps, learning rate, warm-up then cosine decay,
weight decay, clipping at 1.0 like tunebench's own loop); bf16 follows the run's precision. Nothing is logged
to wandb or tensorboard, nothing is checkpointed, and TRL's output folder is a temporary one inside the run
folder. Time and peak memory are measured with the same PeakMemory as the built-in loop, so the costs compare.
"""

from __future__ import annotations

import math
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.train.loop import TrainingError, TrainStats
from tunebench.train.memory import PeakMemory, release_memory

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod
    from tunebench.train.budget import Budget


@contextmanager
def scratch_dir(ctx: Context) -> Iterator[Path]:
    """A temporary folder for TRL's output_dir, inside the run folder when there is one; `datasets`'
    progress bars are off meanwhile (tunebench shows its own progress)."""
    import datasets  # lazy: slow import (dpo, rl only)

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix=".trl-", dir=ctx.folder) as tmp:
            yield Path(tmp)
    finally:
        if bars:
            datasets.enable_progress_bars()


def config_kwargs(budget: Budget, steps: int, ctx: Context, out: Path) -> dict[str, Any]:
    """Arguments every TRL config gets from the budget (the trainer-specific ones are added by the caller)."""
    budget = budget.filled()
    assert budget.warmup is not None  # filled() sets it
    return {
        "output_dir": str(out),
        "per_device_train_batch_size": budget.batch_size,
        "gradient_accumulation_steps": budget.grad_accum,
        "max_steps": steps,
        "learning_rate": budget.lr,
        "lr_scheduler_type": "cosine",
        "warmup_steps": int(budget.warmup * steps),
        "weight_decay": budget.weight_decay,
        "max_grad_norm": 1.0,
        "bf16": ctx.bf16,
        "fp16": False,
        "use_cpu": ctx.device.type == "cpu",
        "gradient_checkpointing": False,  # TRL turns it on by default; tunebench's own loop does not use it
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": ctx.seed,
        "data_seed": ctx.seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def trainer_optimizers(method: ModelMethod, budget: Budget) -> tuple[Any, None]:
    """A TRL trainer's `optimizers`: the method's own optimizer (GaLore's) over its trainable parameters at
    the budget's rate, with the trainer's schedule (None); (None, None) leaves the trainer its AdamW."""
    factory = method.optimizer_factory()
    if factory is None:
        return None, None
    params = [p for p in method.model.parameters() if p.requires_grad]
    return factory(params, budget.filled()), None


def _progress_callback(ctx: Context, losses: list[float], steps_before: int):
    from transformers import TrainerCallback  # lazy: slow import

    class Progress(TrainerCallback):
        """Forwards each step's loss to the run's log and progress bar; stops on a non-finite loss."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            loss = float(logs["loss"])
            losses.append(loss)
            if ctx.on_train_step is not None:
                # numbered after an SFT phase's steps, so the run's log is one sequence of steps
                ctx.on_train_step(steps_before + state.global_step, steps_before + state.max_steps, loss)
            if not math.isfinite(loss):
                control.should_training_stop = True

    return Progress()


def run_trainer(trainer: Any, ctx: Context, *, examples_per_step: int, steps_before: int = 0) -> TrainStats:
    """Train, timed and under PeakMemory. Tokens are the trainer's own count of non-padding tokens processed
    (DPO: prompt + chosen + rejected; GRPO: prompts + generated completions). `steps_before`: the steps of
    an SFT phase already logged; this phase's steps are logged after them (61, 62, … after 60)."""
    from transformers.trainer_callback import (  # lazy: slow import
        PrinterCallback,
        ProgressCallback,
    )

    losses: list[float] = []
    for noisy in (PrinterCallback, ProgressCallback):  # tunebench shows its own progress
        trainer.remove_callback(noisy)
    trainer.add_callback(_progress_callback(ctx, losses, steps_before))
    release_memory()
    with PeakMemory() as mem:
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    if losses and not math.isfinite(losses[-1]):
        raise TrainingError(f"the loss became {losses[-1]} at step {len(losses)}; try a lower learning rate")
    trainer.model.eval()
    steps = trainer.state.global_step
    n_tokens = int(trainer.state.num_input_tokens_seen)
    return TrainStats(
        seconds=seconds,
        steps=steps,
        examples=steps * examples_per_step,
        tokens=n_tokens,
        target_tokens=0,
        tokens_per_s=n_tokens / seconds if seconds > 0 else 0.0,
        peak_rss_mb=mem.peak_rss_mb,
        peak_gpu_mb=mem.peak_gpu_mb,
        bf16=ctx.bf16,
        losses=losses,
    )


def last_logged(trainer: Any, keys: tuple[str, ...]) -> dict[str, float]:
    """The most recent logged value of each of `keys` (the trainer's own metrics, for result.json)."""
    found: dict[str, float] = {}
    for entry in reversed(trainer.state.log_history):
        for key in keys:
            if key in entry and key not in found:
                found[key] = float(entry[key])
    return found
