"""The training budget: what every trained method gets (steps or epochs, batch, learning rate and its
schedule, dev curve, early stopping). A spec's `budget:` and a method entry's overrides build it
(config.py); the training loop, the methods and the learning-rate search read it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tunebench.core.errors import did_you_mean
from tunebench.core.typed import coerce, require

#: early_stopping.restore's values (see EarlyStopping.restore).
RESTORE_RULES = ("beyond_noise", "best", "never")


@dataclass
class EarlyStopping:
    """Stop a run when its dev score has not improved for `patience` evaluations; evaluate it at its last
    state unless its best dev state leads that one beyond the dev split's noise (`restore`).

    Off unless a spec asks for it: every method then gets the same declared budget, which is what the
    leaderboard compares, and each run still records whether it was improving when the budget ran out
    (`train.convergence`), so a budget that was too short is flagged rather than hidden.
    """

    patience: int = 3
    """Dev evaluations (one every `dev_every` steps) without an improvement before training stops."""
    min_delta: float = 0.0
    """An improvement must exceed this (in the metric's units, 0.01 = one point of accuracy) to count."""
    restore: str = "beyond_noise"
    """Which state the run is evaluated at when its best dev point came before its last one:
    `beyond_noise` puts the best state back only when it leads the last state by more than 1.96 paired
    standard errors on the same dev examples, else keeps the last state; `best` always puts it back (the
    rule of transformers' `load_best_model_at_end`, and tunebench's until December 2026); `never` keeps
    the last state (early stopping then only saves time). Why `beyond_noise` is the default: FINDINGS §7c."""

    def check(self, where: str) -> None:
        require(self.patience >= 1, f"{where}.patience", f"must be at least 1, got {self.patience}")
        require(
            self.restore in RESTORE_RULES,
            f"{where}.restore",
            f"expected one of {', '.join(RESTORE_RULES)}, got {self.restore!r}."
            + did_you_mean(self.restore, RESTORE_RULES),
        )
        require(
            math.isfinite(self.min_delta) and self.min_delta >= 0,
            f"{where}.min_delta",
            f"must be 0 or more, got {self.min_delta}",
        )


@dataclass
class Budget:
    """The training budget, identical for every trained method unless a method entry overrides a field."""

    steps: int = 150
    """Optimizer steps per trained run (ignored when `epochs` is set)."""
    epochs: float | None = None
    """Passes over the training split; when set, replaces `steps`. The way to size a budget for a data file:
    the same number of epochs means the same data seen, whatever the file's size."""
    batch_size: int = 32
    """Examples per optimizer step (before gradient accumulation)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; effective batch = batch_size × grad_accum."""
    max_length: int = 256
    """Longest tokenized example (prompt + target); longer ones are truncated from the left of the prompt."""
    lr: float | None = None
    """Peak learning rate (AdamW); unset: the method's own default (`tunebench methods` lists them)."""
    warmup: float | None = None
    """Fraction of the steps spent warming up linearly to `lr`, then cosine decay; unset: the method's."""
    weight_decay: float | None = None
    """AdamW's decoupled weight decay; unset: the method's default."""
    precision: str = "auto"
    """auto (bf16 autocast where the CPU or GPU supports it), bf16, or fp32."""
    eval_batch_size: int = 64
    """Examples per generation batch at evaluation."""
    lr_grid: list[float] | str = field(default_factory=list)
    """Learning rates to choose from on the dev split before the final runs (empty: train with `lr`), or
    `auto`: the method's own grid around its default rate. Opt-in because each candidate costs a training
    run; methods that do not train skip it."""
    lr_search: str = "grid"
    """grid (every candidate gets the whole budget) or halving (successive halving: all candidates get a
    fraction of the steps, the better half on dev goes on with twice as many, until one is left)."""
    dev_every: int = 0
    """Score the dev split every N optimizer steps for the learning curve (0: never). Costs one dev
    evaluation each time; that time is left out of the training time."""
    early_stopping: EarlyStopping | None = None
    """Stop when the dev curve stops improving and restore the best state, e.g. {patience: 3, min_delta:
    0}; needs `dev_every`. Unset: every run trains its whole budget."""
    group_by_length: bool = False
    """Draw each batch from examples of similar length (transformers' length-grouped order: mega-batches of
    up to 50 batches, each sorted by length, then the batches shuffled; train/data.py `epoch_order`), so
    that dynamic padding pads little. On BANKING77's questions (5 to 64 tokens) it cut the tokens computed
    from 2.86 per useful one to 1.10 and trained minilm-l6 2.39× faster (bench/encoder_throughput.py);
    false draws plain random batches. Either way the order is a pure function of the seed, but the two
    orders differ, so a run with and without it differs by that draw. Where length nearly tells the label
    (one class written in longer texts), grouped batches lean to one label each. Off by default: on the
    default experiment (3-digit addition, smollm2-135m, 80 steps) it dropped LoRA from 62.0% to 8.5% exact
    match, a cause not found yet."""
    cache_frozen: bool = True
    """When every trained parameter sits at or above some transformer block (partial's last blocks), compute
    the frozen blocks below once per training example and replay them at every step, epoch, seed and rate
    candidate (train/frozen.py), instead of running them at every step. The frozen blocks then run without
    dropout; false keeps the uncached path, dropout included. Supervised training only (not the objectives'
    own loops)."""
    checkpoint_every: int = 50
    """Save a training checkpoint every N optimizer steps (0: never), so that a killed run resumes from
    it. It does not change results, so it is left out of the run's config hash."""

    def check(self, where: str) -> None:
        if isinstance(self.lr_grid, str) and self.lr_grid != AUTO:  # "1e-4,1e-3" from a flag
            self.lr_grid = coerce(self.lr_grid, list[float], f"{where}.lr_grid")
        floats = {name: getattr(self, name) for name in ("epochs", "lr", "warmup", "weight_decay")}
        floats.update({f"lr_grid[{i}]": lr for i, lr in enumerate(self.grid)})
        for name, value in floats.items():  # YAML reads .inf and .nan as numbers
            require(
                value is None or math.isfinite(value),
                f"{where}.{name}",
                f"must be a finite number, got {value}",
            )
        require(self.steps >= 1, f"{where}.steps", f"must be at least 1, got {self.steps}")
        require(
            self.epochs is None or self.epochs > 0, f"{where}.epochs", f"must be positive, got {self.epochs}"
        )
        require(self.batch_size >= 1, f"{where}.batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.grad_accum >= 1, f"{where}.grad_accum", f"must be at least 1, got {self.grad_accum}")
        require(self.max_length >= 8, f"{where}.max_length", f"must be at least 8, got {self.max_length}")
        require(
            self.lr is None or self.lr > 0,
            f"{where}.lr",
            f"the learning rate must be positive, got {self.lr}",
        )
        require(
            self.warmup is None or 0 <= self.warmup < 1,
            f"{where}.warmup",
            f"a fraction in [0, 1) is expected, got {self.warmup}",
        )
        require(
            self.weight_decay is None or self.weight_decay >= 0,
            f"{where}.weight_decay",
            "must be non-negative",
        )
        require(
            self.precision in ("auto", "bf16", "fp32"),
            f"{where}.precision",
            f"expected auto, bf16 or fp32, got {self.precision!r}",
        )
        require(self.eval_batch_size >= 1, f"{where}.eval_batch_size", "must be at least 1")
        for i, lr in enumerate(self.grid):
            require(lr > 0, f"{where}.lr_grid[{i}]", f"a learning rate must be positive, got {lr}")
        require(len(set(self.grid)) == len(self.grid), f"{where}.lr_grid", "a learning rate is listed twice")
        require(
            self.lr_search in ("grid", "halving"),
            f"{where}.lr_search",
            f"expected grid or halving, got {self.lr_search!r}",
        )
        require(self.dev_every >= 0, f"{where}.dev_every", f"must be 0 (off) or more, got {self.dev_every}")
        require(
            self.early_stopping is None or self.dev_every > 0,
            f"{where}.early_stopping",
            "stops on the dev curve, so it needs dev_every (score the dev split every N steps), e.g. "
            "dev_every: 50",
        )
        require(
            self.checkpoint_every >= 0,
            f"{where}.checkpoint_every",
            f"must be 0 (off) or more, got {self.checkpoint_every}",
        )

    @property
    def grid(self) -> list[float]:
        """The learning rates to search (empty for `auto` before a method's recipe resolved it)."""
        return [] if isinstance(self.lr_grid, str) else list(self.lr_grid)

    def with_recipe(self, recipe: Any) -> Budget:
        """Every field left unset filled from a method's recipe (methods/base.py `Recipe`); a method that
        does not train has none, and its training fields stay unset."""
        if recipe is None:
            return dataclasses.replace(self, lr_grid=self.grid)
        return dataclasses.replace(
            self,
            lr=recipe.lr if self.lr is None else self.lr,
            warmup=recipe.warmup if self.warmup is None else self.warmup,
            weight_decay=recipe.weight_decay if self.weight_decay is None else self.weight_decay,
            lr_grid=list(recipe.lr_grid) if self.lr_grid == AUTO else self.grid,
        )

    def filled(self) -> Budget:
        """Unset training fields at tunebench's generic values: for a budget built in code without a method
        (a spec always resolves them from the method's recipe, see `with_recipe`)."""
        return dataclasses.replace(
            self,
            lr=GENERIC["lr"] if self.lr is None else self.lr,
            warmup=GENERIC["warmup"] if self.warmup is None else self.warmup,
            weight_decay=GENERIC["weight_decay"] if self.weight_decay is None else self.weight_decay,
        )


#: `lr_grid: auto`: search the method's own grid.
AUTO = "auto"
#: The values every method shared before methods declared recipes; only budgets built in code use them.
GENERIC = {"lr": 1e-3, "warmup": 0.1, "weight_decay": 0.0}
