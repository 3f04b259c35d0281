"""The dev curve of one training run, and early stopping on it.

Every `budget.dev_every` optimizer steps the method is scored on the dev split (never test). With
`budget.early_stopping`, training stops once `patience` evaluations in a row failed to beat the best dev
score by more than `min_delta`. Which state is then evaluated is the rule's `restore`:

beyond_noise (the default)
    the last evaluated state, unless the best dev state leads it by more than 1.96 paired standard errors
    of the difference on the same dev examples; only then is the best state put back. Two checkpoints of
    one run a few dev examples apart are within the split's noise, and the later one is the better-trained
    one: on 2,000 held-out BANKING77 questions, restoring the first best dev state cost 0.45 points of test
    accuracy against keeping the last state (95% CI 0.21-0.74, 20 runs; FINDINGS §7c).
best
    the best dev state, always (transformers' `load_best_model_at_end`; tunebench's rule until Dec 2026).
never
    the last state; early stopping only saves time.

The best state is kept in memory while it may be needed. What happened is recorded in result.json under
`train.early_stopping`: the best and the last step, the state kept, and the paired test that decided.

A resumed run replays its saved curve to know the best score and the evaluations since it; the best
state and the per-example answers are kept in memory only, so when the best point came before the
interruption it cannot be restored, and the record says so (`restored: false`).
"""

from __future__ import annotations

import math
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
        if self._note(step, score) and self.rule is not None and self.rule.restore != "never":
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
        """Put the best state back where the rule says so (early stopping only); the record for result.json's
        train.early_stopping."""
        if self.rule is None:
            return None
        last_step = int(self.curve[-1][0]) if self.curve else None
        last_score = self.curve[-1][1] if self.curve else None
        restored, note, test = False, None, None
        if self.best_step is not None and self.best_step != last_step:
            test = paired_lead(self.items.get(self.best_step), self.items.get(last_step or -1))
            if self.rule.restore == "never":
                note = "restore: never: the last state is kept"
            elif self._best_state is None:
                note = (
                    "the best state came before a resume (or the method cannot copy its state): not restored"
                )
            elif self.rule.restore == "beyond_noise" and test is not None and not test["beyond_noise"]:
                note = (
                    f"the best dev state (step {self.best_step}) leads the last by {_z(test)} paired standard "
                    f"errors, within the dev split's noise (at most {Z_NOISE}): the last state is kept"
                )
            else:
                self.method.load_trainable_state(self._best_state)
                restored = True
                if self.rule.restore == "best":
                    note = "restore: best: the best dev state is put back"
                elif test is None:
                    note = "no per-example dev answers to test the lead (a resumed run): the best state is put back"
                else:
                    note = (
                        f"the best dev state (step {self.best_step}) leads the last by {_z(test)} paired "
                        f"standard errors, beyond the dev split's noise (> {Z_NOISE}): it is put back"
                    )
        self._best_state = None
        return {
            "patience": self.rule.patience,
            "min_delta": self.rule.min_delta,
            "restore": self.rule.restore,
            "stopped_at": self.stopped_at,
            "best_step": self.best_step,
            "best_score": self.best_score,
            "last_step": last_step,
            "last_score": last_score,
            "kept_step": self.best_step if restored else last_step,
            "restored": restored,
            "lead": test,
            "note": note,
        }


def _z(test: dict[str, Any]) -> str:
    return "∞" if test["z"] is None else f"{test['z']:.2f}"


#: Paired standard errors by which the best dev state must lead the last one to be put back (two-sided 5%).
Z_NOISE = 1.96


def paired_lead(best: list[bool] | None, last: list[bool] | None) -> dict[str, Any] | None:
    """How far the best state's dev answers lead the last state's, in paired standard errors.

    Per dev example d = (best right) - (last right), in {-1, 0, 1}; the lead is mean(d), its standard
    error sd(d) / sqrt(n). Pairing matters: two checkpoints of one run agree on most examples, so the
    difference is far less noisy than either score. None when either evaluation's answers are unknown."""
    if not best or not last or len(best) != len(last):
        return None
    n = len(best)
    best_only = sum(b and not a for b, a in zip(best, last, strict=True))
    last_only = sum(a and not b for b, a in zip(best, last, strict=True))
    mean, se = (best_only - last_only) / n, paired_se(best, last)
    # se 0: every changed example moved toward the best (an infinite lead), or none changed (no lead)
    z = mean / se if se else (math.inf if mean > 0 else 0.0)
    return {
        "best_only": best_only,
        "last_only": last_only,
        "n": n,
        "z": round(z, 3) if math.isfinite(z) else None,  # None: infinite (JSON has no infinity)
        "beyond_noise": z > Z_NOISE,
    }


def paired_se(a: list[bool], b: list[bool]) -> float:
    """Standard error of mean(a) - mean(b) for paired 0/1 outcomes on the same items (sample sd, n - 1)."""
    n = len(a)
    if n < 2:
        return 0.0
    changed = sum(x != y for x, y in zip(a, b, strict=True))  # d² is 1 where the two differ, else 0
    mean = (sum(a) - sum(b)) / n
    return math.sqrt(max(changed / n - mean**2, 0.0) * n / (n - 1) / n)
