"""Scoring and confidence intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Scores:
    primary: str
    metrics: dict[str, float]
    #: Per-example 0/1 correctness, for bootstrap CIs and the predictions file.
    correct: list[bool]


def score_exact_match(answers: list[str], gold: list[str]) -> Scores:
    correct = [a == g for a, g in zip(answers, gold, strict=True)]
    return Scores("exact_match", {"exact_match": _mean(correct)}, correct)


def score_classification(answers: list[str], gold: list[str], labels: list[str]) -> Scores:
    """Accuracy and macro-F1 over the task's label set (an answer outside it counts as wrong)."""
    from sklearn.metrics import f1_score  # lazy: slow import

    correct = [a == g for a, g in zip(answers, gold, strict=True)]
    macro_f1 = f1_score(gold, answers, labels=labels, average="macro", zero_division=0) if gold else 0.0
    return Scores("accuracy", {"accuracy": _mean(correct), "macro_f1": float(macro_f1)}, correct)


def bootstrap_ci(correct: list[bool], n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-example scores."""
    values = np.asarray(correct, dtype=np.float64)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_resamples, values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _mean(values: list[bool]) -> float:
    return float(np.mean(values)) if values else 0.0
