"""Learning-rate selection on the dev split, and the serving measurements (latency, merge, drift), first as
pure functions, then end to end on the tiny random Llama."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.config import parse_spec
from tunebench.core.errors import SpecError
from tunebench.runs import measure, selection
from tunebench.runs.runner import run_experiment
from tunebench.runs.selection import (
    Candidate,
    at_lr,
    beyond_edge,
    choose,
    final_loss,
    rung_fractions,
    select_lr,
)
from tunebench.train.budget import Budget


def test_rungs_of_grid_and_successive_halving():
    assert rung_fractions(4, "grid") == [1.0]
    assert rung_fractions(4, "halving") == [0.25, 0.5]  # 4 × 1/4 + 2 × 1/2 = 2 budgets, then the final run
    assert rung_fractions(3, "halving") == [0.25, 0.5]
    assert rung_fractions(8, "halving") == [0.125, 0.25, 0.5]
    assert rung_fractions(1, "halving") == [1.0]


def test_a_candidate_keeps_the_whole_budget_and_drops_the_grid():
    budget = Budget(steps=80, lr_grid=[1e-4, 1e-3])
    b = at_lr(budget, 1e-3)
    assert (b.lr, b.steps, b.lr_grid) == (1e-3, 80, [])  # a rung stops it early; its schedule is the budget's


def test_the_grid_is_extended_beyond_the_edge_where_the_winner_sits():
    assert beyond_edge([1e-4, 1e-3, 1e-2], 1e-2) == 0.1
    assert beyond_edge([1e-4, 1e-3, 1e-2], 1e-4) == 1e-5
    assert beyond_edge([2e-4, 5e-4, 1e-3, 2e-3], 2e-3) == 4e-3
    assert beyond_edge([1e-4, 1e-3, 1e-2], 1e-3) is None  # inside: nothing to extend
    assert beyond_edge([1e-3], 1e-3) is None  # one rate: no direction to go


def test_choose_prefers_dev_score_then_lower_loss_then_smaller_rate():
    cands = [
        Candidate(lr=1e-2, steps=4, dev_score=0.5, final_loss=0.9),
        Candidate(lr=1e-3, steps=4, dev_score=0.5, final_loss=0.4),
        Candidate(lr=1e-4, steps=4, dev_score=0.5, final_loss=0.4),
        Candidate(lr=1e-1, steps=4, status="failed", error="nan"),
        Candidate(lr=1e-5, steps=4, dev_score=0.2, final_loss=0.1),
    ]
    assert choose(cands).lr == 1e-4
    assert choose([Candidate(lr=1.0, steps=1, status="failed")]) is None
    assert final_loss([5.0] * 18 + [1.0, 3.0]) == 2.0 and final_loss([]) is None


def fake_evaluate(calls: list, best: float = 1e-3):
    """A dev score that peaks at lr `best` and grows with the steps trained; lr >= 0.1 diverges."""

    def evaluate(budget: Budget, rung: int, fraction: float) -> Candidate:
        steps = round(budget.steps * fraction)
        calls.append((budget.lr, steps, rung))
        if budget.lr >= 1e-1:
            return Candidate(budget.lr, steps, rung, status="failed", error="nan loss", fraction=fraction)
        distance = abs(math.log10(budget.lr) - math.log10(best))
        score = max(0.0, 0.8 - 0.2 * distance) * steps / 80
        return Candidate(
            budget.lr, steps, rung, metric="exact_match", dev_score=score, final_loss=1.0, fraction=fraction
        )

    return evaluate


def test_grid_trains_every_candidate_with_the_whole_budget():
    calls: list = []
    budget = Budget(steps=80, lr_grid=[1e-4, 1e-3, 1e-2, 1e-1])
    sel = select_lr(budget, fake_evaluate(calls), seed=3)
    assert sel["chosen_lr"] == 1e-3 and sel["metric"] == "exact_match" and sel["seed"] == 3
    assert calls == [(lr, 80, 0) for lr in budget.lr_grid]
    assert sel["split"] == "dev" and len(sel["candidates"]) == 4
    assert sel["extended"] is None and not sel["at_edge"]


def test_halving_keeps_the_better_half_for_twice_as_long_on_the_whole_schedule():
    calls: list = []
    budget = Budget(steps=80, lr_grid=[1e-4, 1e-3, 1e-2, 1e-1], lr_search="halving")
    sel = select_lr(budget, fake_evaluate(calls), seed=0)
    assert calls[:4] == [(lr, 20, 0) for lr in budget.lr_grid]
    assert sorted(calls[4:]) == [(1e-4, 40, 1), (1e-3, 40, 1)]  # 1e-2 ties 1e-4 on score; the smaller wins
    assert sel["chosen_lr"] == 1e-3
    assert sum(steps for _, steps, _ in calls) == 160  # two budgets' worth, against four for the grid
    assert all(c["fraction"] in (0.25, 0.5) for c in sel["candidates"])


def test_a_winner_at_the_edge_extends_the_grid_one_step():
    calls: list = []
    budget = Budget(steps=80, lr_grid=[1e-5, 1e-4, 1e-3])
    sel = select_lr(budget, fake_evaluate(calls, best=1e-2), seed=0)
    assert calls[-1] == (1e-2, 80, 0)  # one step past 1e-3, trained like the winner
    assert sel["extended"] == {"from": 1e-3, "to": 1e-2, "direction": "up"}
    assert sel["chosen_lr"] == 1e-2 and sel["at_edge"]  # the extension won: a larger rate may be better still
    assert [c["extension"] for c in sel["candidates"]] == [False, False, False, True]
    inside = select_lr(budget, fake_evaluate([], best=1e-4), seed=0)
    assert inside["extended"] is None and inside["chosen_lr"] == 1e-4


def test_every_candidate_failing_gives_no_choice():
    sel = select_lr(Budget(lr_grid=[0.5, 1.0]), fake_evaluate([]), seed=0)
    assert sel["chosen_lr"] is None and all(c["status"] == "failed" for c in sel["candidates"])


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"lr_grid": [1e-3, -1e-4]}, "budget.lr_grid[1]: a learning rate must be positive"),
        ({"lr_grid": [1e-3, 1e-3]}, "budget.lr_grid: a learning rate is listed twice"),
        ({"lr_search": "bayes"}, "budget.lr_search: expected grid or halving, got 'bayes'"),
        ({"dev_every": -1}, "budget.dev_every: must be 0 (off) or more"),
        ({"lr_grid": "1e-3,abc"}, "budget.lr_grid[1]: expected a number, got 'abc'"),
    ],
)
def test_selection_settings_are_validated(budget, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec({"models": ["tiny-llama"], "methods": ["lora"], "budget": budget}, source="spec.yaml")


def test_a_method_entry_can_declare_its_own_grid():
    spec = parse_spec(
        {"models": ["tiny-llama"], "methods": ["zero-shot", {"name": "lora", "lr_grid": "1e-4,1e-3"}, "full"]}
    )
    grids = {m.name: m.budget.lr_grid for m in spec.methods}
    assert grids == {"zero-shot": [], "lora": [1e-4, 1e-3], "full": []}


# -- end to end on the tiny model --------------------------------------------------------------------

TINY = [
    "--model", "tiny-llama", "--task-opt", "train_size=48", "--task-opt", "dev_size=4", "--task-opt", "test_size=6",
    "--task-opt", "digits=2", "--steps", "4", "--budget", "batch_size=8", "--budget", "eval_batch_size=6",
]  # fmt: skip


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    args = ["compare", *TINY, "--methods", "zero-shot,lora,full", "--budget", "lr_grid=1e-4,3e-2",
            "--budget", "dev_every=2", "--out", str(out), "--name", "sel"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            measure, "LATENCY_EXAMPLES", 1
        )  # an untrained model's answers run to the token limit: slow
        code = main(args)
    return out / "sel", code, args


def _result(exp, method):
    return json.loads((exp / f"tiny-llama--{method}--s0" / "result.json").read_text())


def test_selection_is_recorded_and_the_final_run_uses_the_chosen_rate(selected):
    exp, code, _ = selected
    assert code == 0
    for method in ("lora", "full"):
        r = _result(exp, method)
        sel = r["selection"]
        assert sel["search"] == "grid" and sel["split"] == "dev" and sel["grid"] == [1e-4, 3e-2]
        # a two-rate grid's winner is always at an edge: one more rate beyond it
        edge = sel["extended"]["from"]
        assert [c["lr"] for c in sel["candidates"]] == [1e-4, 3e-2, 1e-4 / 300 if edge == 1e-4 else 9.0]
        assert all(c["steps"] == 4 and c["fraction"] == 1.0 for c in sel["candidates"])
        assert all(0 <= c["dev_score"] <= 1 for c in sel["candidates"] if c["status"] == "ok")
        assert r["config"]["budget"]["lr"] == sel["chosen_lr"]
        # the winner trained this very run (seed 0, whole budget): it was reused, not trained again
        assert r["reused"]["from"] == "learning-rate selection" and sel["reusable"]
        assert r["train"]["steps"] == 4 and r["train"]["dev_curve"]
        kept = [p.name for p in (exp / "selection" / f"tiny-llama--{method}").iterdir() if p.is_dir()]
        assert len(kept) == 1 and kept[0].startswith(f"lr{sel['chosen_lr']:g}--")  # the losers' states go
    zero = _result(exp, "zero-shot")
    assert zero["selection"] is None and "lr_grid" not in zero["config"]["budget"]  # prompting: no search
    assert len(list((exp / "selection" / "tiny-llama--lora").glob("*.json"))) == 3


def test_dev_curve_is_recorded_and_its_time_left_out_of_training(selected):
    exp, _, _ = selected
    train = _result(exp, "lora")["train"]
    assert [step for step, _ in train["dev_curve"]] == [2, 4]
    assert train["dev_eval_seconds"] > 0
    assert train["tokens_per_s"] == pytest.approx(train["tokens"] / train["seconds"])


def test_latency_merge_and_drift(selected):
    exp, _, _ = selected
    lora, full, zero = (_result(exp, m) for m in ("lora", "full", "zero-shot"))
    for r in (lora, full, zero):
        latency = r["latency"]
        assert latency["ms_per_example"] > 0 and latency["batch_size"] == 1 and latency["n"] == 1
    assert lora["latency"]["merged_ms_per_example"] > 0  # LoRA folds into the base
    assert full["latency"]["merged_ms_per_example"] is None  # nothing to merge
    assert zero["latency"]["merged_ms_per_example"] is None
    # Prompting leaves the model as it is; four steps of full fine-tuning at lr 1e-4 or 3e-2 move it.
    assert zero["drift"]["nll_increase"] == pytest.approx(0.0, abs=1e-6)
    assert abs(full["drift"]["nll_increase"]) > 1e-4
    assert full["drift"]["base_nll"] == zero["drift"]["base_nll"] == lora["drift"]["base_nll"]
    reference = json.loads(Path(lora["drift"]["reference"]).read_text())
    assert len(reference["texts"]) == lora["drift"]["texts"] == 8
    assert not (exp / "drift").exists()  # the reference lives in the model cache, shared by experiments


def test_a_second_compare_reuses_selection_and_runs(selected, capsys):
    exp, _, args = selected
    stamps = {p: p.stat().st_mtime_ns for p in exp.rglob("*.json")}
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("finished earlier") == 3 + 6  # three runs, six candidates
    assert {p: p.stat().st_mtime_ns for p in exp.rglob("*.json") if p in stamps} == stamps


def test_selection_never_sees_the_test_split(tmp_path, monkeypatch):
    """Every input the method is asked about during selection comes from dev (or train), never from test."""
    from tunebench.methods import METHODS
    from tunebench.models import resolve_model
    from tunebench.runs.grid import Cell
    from tunebench.runs.runner import build_grid
    from tunebench.runs.selection import select_for_cell

    spec = parse_spec(
        {"models": ["tiny-llama"], "methods": [{"name": "lora", "lr_grid": [1e-3, 1e-2], "dev_every": 2}],
         "task": {"name": "arithmetic", "digits": 2, "train_size": 32, "dev_size": 4, "test_size": 6},
         "budget": {"steps": 2, "batch_size": 8}, "out": str(tmp_path)}
    )  # fmt: skip
    grid = build_grid(spec)
    splits = grid.splits
    asked: list[str] = []
    lora = METHODS.get("lora")
    original = lora.predict
    monkeypatch.setattr(lora, "predict", lambda self, ctx, xs: asked.extend(xs) or original(self, ctx, xs))
    cell = Cell(resolve_model("tiny-llama"), spec.methods[0], 0)
    selection = select_for_cell(cell, grid)
    assert selection["chosen_lr"] in (1e-4, 1e-3, 1e-2, 1e-1)  # the grid, or one step beyond its edge
    assert asked and set(asked) <= {e.input for e in splits.dev}
    assert not set(asked) & {e.input for e in splits.test}


def test_an_empty_dev_split_is_refused_when_selection_needs_it():
    from tunebench.runs.grid import check_dev_split
    from tunebench.tasks.base import Example, Splits

    spec = parse_spec({"models": ["tiny-llama"], "methods": ["zero-shot", {"name": "lora", "lr_grid": [1e-3]}]},
                      source="exp.yaml")  # fmt: skip
    no_dev = Splits(train=[Example("1+1", "2")], dev=[], test=[Example("2+2", "4")])
    with pytest.raises(SpecError, match=r"exp.yaml: methods \(lora\).lr_grid needs a dev split"):
        check_dev_split(spec, no_dev)
    check_dev_split(parse_spec({"models": ["tiny-llama"], "methods": ["lora"]}), no_dev)  # no search: fine


def test_the_budget_of_a_prompting_method_leaves_out_training_fields():
    from tunebench.models import resolve_model
    from tunebench.runs.grid import Cell, cell_config
    from tunebench.tasks import build_task

    spec = parse_spec({"models": ["tiny-llama"], "methods": ["zero-shot", "lora"], "budget": {"steps": 3}})
    task = build_task("arithmetic", {"train_size": 8, "dev_size": 2, "test_size": 2})
    splits = task.splits()
    model = resolve_model("tiny-llama")
    zero = cell_config(Cell(model, spec.methods[0], 0), spec, task, splits)
    lora = cell_config(Cell(model, spec.methods[1], 0), spec, task, splits)
    assert set(zero["budget"]) == {"max_length", "precision", "eval_batch_size"}
    # checkpoint_every changes how a run is carried out, not its results: it stays out of the config hash
    assert set(lora["budget"]) == {f.name for f in dataclasses.fields(Budget)} - {"checkpoint_every"}


def test_latency_times_single_examples_within_a_time_budget(monkeypatch):
    import time
    from types import SimpleNamespace

    calls: list[tuple[int, list[str]]] = []

    class Slow:
        def predict(self, ctx, inputs):
            calls.append((ctx.budget.eval_batch_size, inputs))
            time.sleep(0.03)
            return ["x"] * len(inputs)

    ctx = SimpleNamespace(budget=Budget(eval_batch_size=64), on_eval_batch=print)
    monkeypatch.setattr(
        measure.dataclasses, "replace", lambda obj, **kw: SimpleNamespace(**{**vars(obj), **kw})
    )
    ms, n = measure.latency(Slow(), ctx, [f"q{i}" for i in range(9)])
    assert n == measure.LATENCY_EXAMPLES and 25 < ms < 200
    assert all(size == 1 and len(xs) == 1 for size, xs in calls)  # one example at a time
    monkeypatch.setattr(measure, "LATENCY_BUDGET_S", 0.05)
    calls.clear()
    assert measure.latency(Slow(), ctx, ["a", "b", "c", "d"])[1] == 2  # stops once the budget is spent
    assert measure.latency(Slow(), ctx, []) == (None, 0)


def test_a_halving_rung_continues_its_last_state_and_ends_as_a_whole_run(tmp_path):
    """The survivor of a rung goes on from the state its rung stopped at (weights, optimizer, schedule,
    data position, random generators), so the last rung is the whole run: its losses and test answers
    equal those of the same rate trained from scratch without a search."""
    base = {
        "models": ["tiny-llama"],
        "task": {"name": "arithmetic", "digits": 1, "train_size": 32, "dev_size": 8, "test_size": 6},
        "budget": {"steps": 8, "batch_size": 4, "precision": "fp32", "max_length": 32, "warmup": 0.0},
        "out": str(tmp_path),
    }
    searched = {"name": "lora", "lr_grid": [1e-3, 3e-3, 1e-2, 3e-2], "lr_search": "halving"}
    (halving,) = run_experiment(parse_spec({**base, "name": "halving", "methods": [searched]}))
    chosen = halving["selection"]["chosen_lr"]
    second_rung = [c for c in halving["selection"]["candidates"] if c["rung"] == 1 and not c["extension"]]
    assert [c["continued_from"] for c in second_rung] == [2, 2]  # went on from the ¼ rung's 2 steps
    assert halving["continued"] == {"from": "learning-rate selection", "step": 4}  # the ½ rung's steps
    assert not list((tmp_path / "halving" / "selection").rglob("*.continue*"))  # rung states moved or dropped

    (plain,) = run_experiment(
        parse_spec({**base, "name": "plain", "methods": [{"name": "lora", "lr": chosen}]})
    )
    assert "reused" not in plain

    def losses(name: str) -> list[float]:
        log = (tmp_path / name / "tiny-llama--lora--s0" / "log.jsonl").read_text().splitlines()
        return [e["loss"] for e in map(json.loads, log) if e["event"] == "train_step"]

    assert losses("halving") == losses("plain") and len(losses("plain")) == 8
    assert halving["metrics"] == plain["metrics"]
    predictions = [
        (tmp_path / n / "tiny-llama--lora--s0" / "predictions.jsonl").read_text()
        for n in ("halving", "plain")
    ]
    assert predictions[0] == predictions[1]


def test_halving_without_continuation_retrains_every_rung_and_chooses_the_same(tmp_path, monkeypatch):
    """`CONTINUE_RUNGS = False` (bench/ladder_cost.py's lever off) trains every rung and the final run from
    the start; as a continued rung is the same training stopped later, the dev scores, the choice and the
    final run are the same."""
    base = {
        "models": ["tiny-llama"],
        "task": {"name": "arithmetic", "digits": 1, "train_size": 32, "dev_size": 8, "test_size": 6},
        "budget": {"steps": 8, "batch_size": 4, "precision": "fp32", "max_length": 32, "warmup": 0.0},
        "out": str(tmp_path),
        "methods": [{"name": "lora", "lr_grid": [1e-3, 3e-3, 1e-2, 3e-2], "lr_search": "halving"}],
    }
    # separate runs folders: the same run finished in the first would be reused by the second
    (continued,) = run_experiment(parse_spec({**base, "name": "continued", "out": str(tmp_path / "a")}))
    monkeypatch.setattr(selection, "CONTINUE_RUNGS", False)
    (restarted,) = run_experiment(parse_spec({**base, "name": "restarted", "out": str(tmp_path / "b")}))
    assert "continued" not in restarted
    rungs = [c for c in restarted["selection"]["candidates"] if c["rung"] == 1 and not c["extension"]]
    assert [c["continued_from"] for c in rungs] == [0, 0]  # trained from the start
    assert restarted["selection"]["chosen_lr"] == continued["selection"]["chosen_lr"]
    dev = {
        k: [c["dev_score"] for c in r["selection"]["candidates"]]
        for k, r in (("a", continued), ("b", restarted))
    }
    assert dev["a"] == dev["b"]
    assert restarted["metrics"] == continued["metrics"]
