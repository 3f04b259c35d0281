"""Exact match, accuracy + macro-F1, and bootstrap confidence intervals."""

from __future__ import annotations

import pytest

from tunebench.tasks.metrics import bootstrap_ci, score_classification, score_exact_match


def test_exact_match():
    scores = score_exact_match(["4", "5", " 6", "7"], ["4", "6", "6", "7"])
    assert scores.primary == "exact_match"
    assert scores.correct == [True, False, False, True]
    assert scores.metrics == {"exact_match": 0.5}


def test_exact_match_empty():
    scores = score_exact_match([], [])
    assert scores.correct == []
    assert scores.metrics["exact_match"] == 0.0


def test_exact_match_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        score_exact_match(["1", "2"], ["1"])


def test_classification_against_a_hand_computed_macro_f1():
    labels = ["neg", "neu", "pos"]
    gold = ["neg", "neg", "neu", "neu", "pos", "pos"]
    pred = ["neg", "neu", "neu", "neu", "pos", "maybe"]  # "maybe" is outside the label set
    scores = score_classification(pred, gold, labels)
    # neg: tp=1 fp=0 fn=1 -> P=1,   R=1/2 -> F1=2/3
    # neu: tp=2 fp=1 fn=0 -> P=2/3, R=1   -> F1=4/5
    # pos: tp=1 fp=0 fn=1 -> P=1,   R=1/2 -> F1=2/3
    expected_f1 = (2 / 3 + 4 / 5 + 2 / 3) / 3
    assert scores.primary == "accuracy"
    assert scores.correct == [True, False, True, True, True, False]
    assert scores.metrics["accuracy"] == pytest.approx(4 / 6)
    assert scores.metrics["macro_f1"] == pytest.approx(expected_f1)
    assert scores.metrics["macro_f1"] == pytest.approx(0.711111, abs=1e-6)


def test_classification_out_of_label_set_prediction_counts_wrong():
    labels = ["a", "b"]
    scores = score_classification(["x", "x"], ["a", "b"], labels)
    assert scores.correct == [False, False]
    assert scores.metrics == {"accuracy": 0.0, "macro_f1": 0.0}


def test_classification_perfect():
    scores = score_classification(["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"])
    assert scores.metrics == {"accuracy": 1.0, "macro_f1": 1.0}


def test_classification_empty():
    scores = score_classification([], [], ["a", "b"])
    assert scores.metrics == {"accuracy": 0.0, "macro_f1": 0.0}


def test_bootstrap_interval_contains_the_mean():
    correct = [True] * 30 + [False] * 20
    lo, hi = bootstrap_ci(correct, seed=0)
    assert 0.0 <= lo < 0.6 < hi <= 1.0
    # about 1.96 standard errors either side: width ~ 2 * 1.96 * sqrt(.6 * .4 / 50) ~ 0.27
    assert 0.20 < hi - lo < 0.35


def test_bootstrap_all_correct_and_all_wrong():
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)
    assert bootstrap_ci([False] * 10) == (0.0, 0.0)


def test_bootstrap_is_deterministic_for_a_seed():
    correct = [i % 3 == 0 for i in range(999)]
    assert bootstrap_ci(correct, seed=7) == bootstrap_ci(correct, seed=7)
    # the seed is used: other seeds resample differently (fine-grained means, so the ends move)
    assert len({bootstrap_ci(correct, seed=s) for s in range(4)}) > 1


def test_bootstrap_narrows_with_more_examples():
    small = [True, False] * 10
    large = [True, False] * 1000
    lo_s, hi_s = bootstrap_ci(small, seed=0)
    lo_l, hi_l = bootstrap_ci(large, seed=0)
    assert lo_s <= 0.5 <= hi_s and lo_l <= 0.5 <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4  # 100x the examples: about 10x narrower


def test_bootstrap_empty():
    assert bootstrap_ci([]) == (0.0, 0.0)
