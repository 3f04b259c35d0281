"""The rules experiments/restore_rule.py replays (a study script, loaded by path): each picks the state it
says it picks, and the replayed stopping is tunebench's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "experiments" / "restore_rule.py"
spec = importlib.util.spec_from_file_location("restore_rule", PATH)
assert spec is not None and spec.loader is not None
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def point(step: int, dev_right: int, test: float, n: int = 200) -> dict:
    return {
        "step": step,
        "dev": dev_right / n,
        "dev_correct": [True] * dev_right + [False] * (n - dev_right),
        "test": test,
    }


def test_a_tie_goes_to_the_earliest_or_the_latest_state():
    points = [point(50, 180, 0.80), point(150, 186, 0.86), point(250, 186, 0.89), point(282, 185, 0.88)]
    assert study.choose(points, "earliest")["step"] == 150
    assert study.choose(points, "latest")["step"] == 250
    assert study.choose(points, "final")["step"] == 282
    assert study.choose(points, "oracle")["step"] == 250
    # one question behind the best is within a 200-question split's paired noise: the last state is kept
    assert study.choose(points, "within-noise")["step"] == 282


def test_a_lead_beyond_the_dev_noise_is_restored():
    points = [point(50, 150, 0.70), point(150, 190, 0.90), point(282, 160, 0.75)]
    # 30 questions of 200 ahead, on nested correct sets: far beyond 1.96 paired standard errors
    assert study.choose(points, "within-noise")["step"] == 150


def test_paired_standard_error_counts_only_the_items_that_differ():
    same = [True, False] * 50
    assert study.paired_se(same, same) == 0.0
    flipped = [True] * 10 + [False] * 90
    assert study.paired_se(flipped, [False] * 100) == pytest.approx((0.1 * 0.9 / 99) ** 0.5)


def test_replayed_stopping_follows_the_patience():
    points = [
        point(s, d, 0.5) for s, d in [(50, 190), (100, 180), (150, 190), (200, 185), (250, 189), (282, 199)]
    ]
    # a tie does not reset the patience (tunebench's strict improvement): stops after 4 evaluations
    assert [p["step"] for p in study.stopped_curve(points, 4)] == [50, 100, 150, 200, 250]
    assert len(study.stopped_curve(points, 10)) == 6
