"""The dev curve of one training run, and early stopping on it.

Every `budget.dev_every` optimizer steps the method is scored on the dev split (never test). With
`budget.early_stopping`, the best-scoring trainable state is kept in memory; training stops once
`patience` evaluations in a row failed to beat it by more than `min_delta`, and the best state is put
back at the end (also when the budget ran out after the best point), so the run is evaluated at its best
dev point. What happened is recorded in result.json under `train.early_stopping`.

A resumed run replays its saved curve to know the best score and the evaluations since it; the best
state itself is kept in memory only, so when the best point came before the interruption it cannot be
restored, and the record says so (`restored: false`).
"""

from __future__ import annotations

import time
from typing import Any

from tunebench.methods import Context, Method
from tunebench.runs import measure
from tunebench.train.budget import Budget


class DevCurve:
    def __init__(self, method: Method, budget: Budget, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.method = method
        self.every = budget.dev_every
        self.rule = budget.early_stopping
        self.curve: list[list[float]] = saved.get("curve", [])
        """[[step, dev score], ...]"""
        self.seconds: float = saved.get("dev_seconds", 0.0)
        """Time spent scoring the dev split (left out of the training time)."""
        self.metric: str | None = None
        self.best_step: int | None = None
        self.best_score: float | None = None
        self.since_best = 0
        self.stopped_at: int | None = None
        self.items: dict[int, list[bool]] = {}
        """Step → per-example dev correctness of this process's evaluations (the convergence test pairs
        two of them; not saved with a checkpoint, so a resumed run falls back to the scores alone)."""
        self._best_state: dict | None = None
        for step, score in self.curve:  # a resumed run: where the best point and the patience stand
            self._note(int(step), score)

    def saved(self) -> dict[str, Any]:
        """What a checkpoint keeps of the curve (see train/checkpoint.py's `extra`)."""
        return {"curve": self.curve, "dev_seconds": self.seconds}

    def after_step(self, step: int, steps: int, ctx: Context) -> bool:
        """Score dev when due; True when early stopping ends training after this step."""
        if not self.every or (step % self.every and step != steps):
            return False
        start = time.perf_counter()
        with measure.training_modes_kept(self.method):
            self.metric, score, correct = measure.dev_eval(self.method, ctx)
        self.seconds += time.perf_counter() - start
        self.curve.append([step, score])
        self.items[step] = correct
        if self._note(step, score) and self.rule is not None:
            self._best_state = self.method.trainable_state()
        if self.rule is not None and self.since_best >= self.rule.patience and step < steps:
            self.stopped_at = step
            return True
        return False

    def _note(self, step: int, score: float) -> bool:
        """Update the best point; True when `score` is a new best."""
        delta = self.rule.min_delta if self.rule is not None else 0.0
        if self.best_score is None or score > self.best_score + delta:
            self.best_step, self.best_score, self.since_best = step, score, 0
            return True
        self.since_best += 1
        return False

    def finish(self) -> dict[str, Any] | None:
        """Put the best state back (early stopping only); the record for result.json's train.early_stopping."""
        if self.rule is None:
            return None
        last_step = int(self.curve[-1][0]) if self.curve else None
        restored, note = False, None
        if self.best_step is not None and self.best_step != last_step:
            if self._best_state is not None:
                self.method.load_trainable_state(self._best_state)
                restored = True
            else:
                note = (
                    "the best state came before a resume (or the method cannot copy its state): not restored"
                )
        self._best_state = None
        return {
            "patience": self.rule.patience,
            "min_delta": self.rule.min_delta,
            "stopped_at": self.stopped_at,
            "best_step": self.best_step,
            "best_score": self.best_score,
            "restored": restored,
            "note": note,
        }
