"""Early stopping on the dev curve and the 'still improving' verdict: pure functions first, then a run."""

from __future__ import annotations

import json
import math
import re
import statistics
from types import SimpleNamespace

import pytest
import torch

from tunebench.cli.main import main
from tunebench.config import parse_spec
from tunebench.core.errors import SpecError
from tunebench.runs import devcurve
from tunebench.runs.devcurve import DevCurve
from tunebench.train.budget import Budget, EarlyStopping
from tunebench.train.convergence import convergence, from_dev_curve, from_losses, sign_test


def test_a_dev_curve_still_rising_at_the_end_is_still_improving():
    rising = [(10, 0.50), (20, 0.60), (30, 0.65), (40, 0.72)]
    assert from_dev_curve(rising, threshold=0.01)[0] is True
    flat = [(10, 0.50), (20, 0.70), (30, 0.71), (40, 0.705)]
    assert from_dev_curve(flat, threshold=0.01)[0] is False  # +0.005 over step 30's best: within one example
    assert from_dev_curve([(10, 0.5), (20, 0.9)], threshold=0.01)[0] is None  # too few points to say


def test_a_late_gain_within_the_dev_splits_noise_is_not_still_improving():
    curve = [(100, 0.90), (200, 0.92), (300, 0.926), (400, 0.938)]
    # 500 dev examples: the last checkpoint gained 10 and lost 4 against step 300's (+6 examples, +1.2
    # points): a fair coin does that often enough (one-sided p 0.09), so it is not called improving
    items = {
        400: [True] * 459 + [True] * 10 + [False] * 4 + [False] * 27,
        300: [True] * 459 + [False] * 10 + [True] * 4 + [False] * 27,
    }
    assert (sum(items[400]), sum(items[300])) == (469, 463)
    verdict, detail = from_dev_curve(curve, threshold=0.002, items=items)
    assert verdict is False and "10 dev examples gained, 4 lost" in detail
    assert from_dev_curve(curve, threshold=0.002)[0] is True  # without the examples: the threshold alone
    clear = {400: [True] * 30, 300: [False] * 30}
    assert from_dev_curve([(100, 0.5), (300, 0.6), (400, 0.9)], 0.01, clear)[0] is True
    assert sign_test(10, 4) == pytest.approx(0.0898, abs=1e-4) and sign_test(0, 0) == 1.0


def test_training_losses_that_still_fall_beyond_their_noise_are_still_improving():
    falling = [2.0 - 0.01 * i + (0.02 if i % 2 else -0.02) for i in range(100)]
    assert from_losses(falling)[0] is True
    flat = [1.0 + (0.05 if i % 2 else -0.05) for i in range(100)]
    assert from_losses(flat)[0] is False
    assert from_losses([1.0] * 10)[0] is None


def test_convergence_prefers_early_stopping_then_the_dev_curve_then_the_loss():
    losses = [2.0 - 0.01 * i for i in range(100)]
    curve = [(25, 0.5), (50, 0.6), (75, 0.6), (100, 0.6)]
    assert convergence(curve, losses, stopped_early=True, threshold=0.01)["evidence"] == "early stopping"
    by_dev = convergence(curve, losses, stopped_early=False, threshold=0.01)
    assert (by_dev["still_improving"], by_dev["evidence"]) == (False, "dev curve")
    by_loss = convergence([], losses, stopped_early=False, threshold=0.01)
    assert (by_loss["still_improving"], by_loss["evidence"]) == (True, "training loss")


class _Counter:
    """A stand-in method whose one weight is its step count, and whose dev score the test scripts."""

    def __init__(self) -> None:
        self.weight = torch.zeros(1)

    def trainable_state(self):
        return {"w": self.weight.clone()}

    def load_trainable_state(self, state) -> None:
        self.weight.copy_(state["w"])


def _scripted(monkeypatch, scores: list[float], items: list[list[bool]] | None = None) -> None:
    it = iter(zip(scores, items or [[] for _ in scores], strict=True))

    def dev_eval(method, ctx):
        score, correct = next(it)
        return "accuracy", score, correct

    monkeypatch.setattr(devcurve.measure, "dev_eval", dev_eval)


def _train(method: _Counter, dev: DevCurve, steps: int = 100) -> int:
    """Step the stand-in until early stopping ends it; the step it ended at."""
    for step in range(1, steps + 1):
        method.weight += 1
        if dev.after_step(step, steps, SimpleNamespace()):  # type: ignore[arg-type]
            return step
    return steps


def _answers(right: int, n: int = 200, wrong_first: int = 0) -> list[bool]:
    """n dev answers, `right` of them right, the first `wrong_first` of them wrong."""
    return [False] * wrong_first + [True] * right + [False] * (n - right - wrong_first)


def test_early_stopping_stops_after_patience_and_restore_best_puts_the_best_state_back(monkeypatch):
    _scripted(monkeypatch, [0.5, 0.7, 0.69, 0.7, 0.6, 0.9])
    method = _Counter()
    budget = Budget(dev_every=10, early_stopping=EarlyStopping(patience=3, restore="best"))
    dev = DevCurve(method, budget)  # type: ignore[arg-type]
    assert _train(method, dev) == 50  # 0.7 at step 20, then three evaluations without beating it
    record = dev.finish()
    assert record["stopped_at"] == 50 and record["best_step"] == 20 and record["restored"]
    assert record["kept_step"] == 20 and record["last_step"] == 50
    assert method.weight.item() == 20  # the state of step 20 is back


def test_a_best_state_within_the_dev_noise_of_the_last_is_not_put_back(monkeypatch):
    # 200 dev examples: step 20 is right on 140, the last (step 50) on 137, three of step 20's right
    # answers wrong at step 50 and none gained: a lead of 3 examples, z 1.74 < 1.96
    answers = [_answers(100), _answers(140), _answers(138), _answers(139), _answers(137, wrong_first=3)]
    _scripted(monkeypatch, [sum(a) / 200 for a in answers], answers)
    method = _Counter()
    dev = DevCurve(method, Budget(dev_every=10, early_stopping=EarlyStopping(patience=3)))  # type: ignore[arg-type]
    assert _train(method, dev) == 50
    record = dev.finish()
    assert (record["restore"], record["best_step"], record["kept_step"], record["restored"]) == (
        "beyond_noise", 20, 50, False,
    )  # fmt: skip
    assert method.weight.item() == 50  # the last state stays
    lead = record["lead"]
    assert (lead["best_only"], lead["last_only"], lead["n"], lead["beyond_noise"]) == (3, 0, 200, False)
    assert lead["z"] == pytest.approx(1.74, abs=0.01) and "within the dev split's noise" in record["note"]


def test_a_best_state_that_leads_beyond_the_dev_noise_is_put_back(monkeypatch):
    # step 20 right on 150; the last state loses 12 of those and gains 2 elsewhere: a lead of 10, z 2.7
    last = _answers(138, wrong_first=12)
    last[-1] = last[-2] = True
    answers = [_answers(100), _answers(150), _answers(145), _answers(141), last]
    _scripted(monkeypatch, [sum(a) / 200 for a in answers], answers)
    method = _Counter()
    dev = DevCurve(method, Budget(dev_every=10, early_stopping=EarlyStopping(patience=3)))  # type: ignore[arg-type]
    _train(method, dev)
    record = dev.finish()
    assert record["restored"] and record["kept_step"] == 20 and method.weight.item() == 20
    assert (record["lead"]["best_only"], record["lead"]["last_only"]) == (12, 2) and record["lead"][
        "beyond_noise"
    ]


def test_restore_never_keeps_the_last_state_without_copying_the_best(monkeypatch):
    answers = [_answers(100), _answers(190), _answers(20), _answers(20)]
    _scripted(monkeypatch, [sum(a) / 200 for a in answers], answers)
    method = _Counter()
    copies = []
    method.trainable_state = lambda: copies.append(1) or {"w": method.weight.clone()}  # type: ignore[method-assign]
    dev = DevCurve(method, Budget(dev_every=10, early_stopping=EarlyStopping(patience=2, restore="never")))  # type: ignore[arg-type]
    assert _train(method, dev) == 40
    record = dev.finish()
    assert not record["restored"] and record["kept_step"] == 40 and method.weight.item() == 40 and not copies
    assert record["lead"]["beyond_noise"]  # recorded all the same: the lead a restore would have kept


def test_the_paired_lead_is_the_mean_difference_over_its_standard_error():
    best = [True] * 10 + [False] * 4 + [True] * 186
    last = [False] * 10 + [True] * 4 + [True] * 186
    d = [int(b) - int(a) for b, a in zip(best, last, strict=True)]
    z = statistics.fmean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    lead = devcurve.paired_lead(best, last)
    assert lead is not None and lead["z"] == pytest.approx(z, abs=1e-3) and not lead["beyond_noise"]
    assert devcurve.paired_lead([True] * 5, [False] * 5) == {
        "best_only": 5, "last_only": 0, "n": 5, "z": None, "beyond_noise": True,
    }  # fmt: skip
    assert devcurve.paired_lead([True, False], [True, False])["z"] == 0.0  # type: ignore[index]
    assert devcurve.paired_lead([], [True]) is None and devcurve.paired_lead(None, [True]) is None


def test_min_delta_and_no_early_stopping_without_a_rule(monkeypatch):
    _scripted(monkeypatch, [0.5, 0.505, 0.509, 0.6])
    method = _Counter()
    dev = DevCurve(method, Budget(dev_every=1, early_stopping=EarlyStopping(patience=2, min_delta=0.01)))  # type: ignore[arg-type]
    assert [dev.after_step(s, 10, None) for s in (1, 2, 3)] == [False, False, True]  # type: ignore[arg-type]
    _scripted(monkeypatch, [0.5, 0.4, 0.3])
    plain = DevCurve(method, Budget(dev_every=1))  # type: ignore[arg-type]
    assert not any(plain.after_step(s, 10, None) for s in (1, 2, 3))  # type: ignore[arg-type]
    assert plain.finish() is None and [v for _, v in plain.curve] == [0.5, 0.4, 0.3]


def test_a_resumed_curve_knows_its_best_point_and_patience(monkeypatch):
    saved = {"curve": [[10, 0.5], [20, 0.8], [30, 0.7]], "dev_seconds": 1.0}
    dev = DevCurve(_Counter(), Budget(dev_every=10, early_stopping=EarlyStopping(patience=2)), saved)  # type: ignore[arg-type]
    assert (dev.best_step, dev.since_best) == (20, 1)
    _scripted(monkeypatch, [0.75])
    assert dev.after_step(40, 100, None)  # type: ignore[arg-type]
    record = dev.finish()
    assert not record["restored"] and "not restored" in record["note"]  # step 20's state was not kept


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"early_stopping": {"patience": 3}}, "budget.early_stopping: stops on the dev curve, so it needs dev_every"),
        ({"dev_every": 5, "early_stopping": {"patience": 0}}, "budget.early_stopping.patience: must be at least 1"),
        ({"dev_every": 5, "early_stopping": {"patiense": 2}}, "unknown key 'patiense'. Did you mean 'patience'?"),
        ({"dev_every": 5, "early_stopping": {"restore": "bset"}},
         "budget.early_stopping.restore: expected one of beyond_noise, best, never, got 'bset'. Did you mean 'best'?"),
    ],
)  # fmt: skip
def test_early_stopping_settings_are_validated(budget, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec({"models": ["tiny-llama"], "methods": ["lora"], "budget": budget}, source="spec.yaml")


def test_early_stopping_is_refused_for_an_objective_trained_in_phases():
    with pytest.raises(SpecError, match=r"lora\+dpo\).early_stopping: an objective trains in phases"):
        parse_spec(
            {"models": ["tiny-llama"], "methods": ["lora+dpo"],
             "budget": {"dev_every": 2, "early_stopping": {"patience": 1}}}
        )  # fmt: skip


def test_a_run_records_its_convergence_and_early_stopping(tmp_path):
    args = [
        "compare", "--model", "tiny-llama", "--task-opt", "train_size=48", "--task-opt", "dev_size=4",
        "--task-opt", "test_size=4", "--task-opt", "digits=2", "--methods", "lora", "--steps", "24",
        "--budget", "batch_size=8", "--budget", "eval_batch_size=4", "--budget", "dev_every=2",
        "--budget", "early_stopping={patience: 1}", "--budget", "lr=1e-9", "--out", str(tmp_path), "--name", "es",
    ]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / "es" / "tiny-llama--lora--s0"
    train = json.loads((run / "result.json").read_text())["train"]
    # at lr 1e-9 nothing changes: the second evaluation does not beat the first, and training stops there
    assert train["steps"] == 4 and train["planned_steps"] == 24
    early = train["early_stopping"]
    assert early["stopped_at"] == 4 and early["best_step"] == 2
    # the two states answer every dev example alike: no lead, so the last state is the one evaluated
    assert (early["kept_step"], early["restored"], early["lead"]["z"]) == (4, False, 0.0)
    assert train["convergence"] == {
        "still_improving": False, "evidence": "early stopping", "detail": "stopped by early stopping"
    }  # fmt: skip
    events = [json.loads(line)["event"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert events.count("dev_eval") == 2 and "early_stop" in events
