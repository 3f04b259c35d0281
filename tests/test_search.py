"""Searching any method option on dev with Optuna (runs/search.py): the search space and its errors as pure
functions, then searches on the tiny random BERT (caching, pruning on the dev curve, a Pareto set), then
the CLI and the report end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.config import parse_spec
from tunebench.core.errors import SpecError
from tunebench.core.searchspace import apply_flags, flag_value
from tunebench.runs import measure, search
from tunebench.runs.runner import run_experiment


def _lora(**entry):
    return parse_spec(
        {"models": ["tiny-llama"], "methods": [{"name": "lora", **entry}]}, source="x.yaml"
    ).methods[0]


def test_lists_and_ranges_become_dimensions_of_the_options_types():
    m = _lora(search={"lr": {"log": [1e-4, 3e-3]}, "r": [4, 8, 16, 32], "alpha": [16, 32],
                      "dropout": {"float": [0.0, 0.2]}, "steps": {"int": [2, 6]}}, trials=12)  # fmt: skip
    dims = {d.name: d for d in m.search.space}
    assert (dims["lr"].kind, dims["lr"].low, dims["lr"].high, dims["lr"].group) == (
        "log",
        1e-4,
        3e-3,
        "budget",
    )
    assert dims["r"].values == (4, 8, 16, 32) and dims["r"].group == "method"
    assert dims["alpha"].values == (16.0, 32.0)  # alpha is a float option: the values are coerced
    assert dims["steps"].integer and dims["steps"].size == 5
    assert m.search.trials == 12 and not m.search.exhaustive
    assert m.search.objectives == ["dev"] and m.search.pruner.name == "median"
    assert m.budget.lr_grid == []


def test_a_search_of_lists_alone_trains_every_combination_by_default():
    m = _lora(
        search={"r": [4, 8], "init": ["default", "gaussian"], "target_modules": [["q_proj"], ["all-linear"]]}
    )
    assert m.search.trials == 8 and m.search.exhaustive
    capped = _lora(search={"r": [4, 8]}, trials=10)  # more trials than combinations would repeat some
    assert capped.search.trials == 2 and capped.search.exhaustive
    sampled = _lora(search={"r": [4, 8, 16]}, trials=2)
    assert sampled.search.trials == 2 and not sampled.search.exhaustive


def test_a_list_over_lr_alone_is_the_learning_rate_grid():
    searched = _lora(search={"lr": [1e-4, 1e-3, 1e-2]}, lr_search="halving")
    grid = _lora(lr_grid=[1e-4, 1e-3, 1e-2], lr_search="halving")
    assert searched.search is None and searched.budget == grid.budget  # the same search, run the same way
    assert _lora(search={"lr": [1e-4, 1e-3]}, trials=2).search is not None  # a trial count: an Optuna search


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"search": {"rr": [4, 8]}, "trials": 2},
         "x.yaml: methods[0] (lora).search: unknown option 'rr'. Did you mean 'r'?"),
        ({"search": {"target_modules": {"log": [1, 8]}}, "trials": 2},
         "search.target_modules: a range needs a numeric option, and target_modules takes list"),
        ({"search": {"init": {"float": [0, 1]}}, "trials": 2}, "search.init: a range needs a numeric option"),
        ({"search": {"alpha": {"int": [8, 32]}}, "trials": 2}, "search.alpha: an int range needs an integer option"),
        ({"search": {"r": {"int": [8, 4]}}, "trials": 2}, "search.r.int: expected lo < hi, got [8, 4]"),
        ({"search": {"lr": {"log": [0, 1e-3]}}, "trials": 2}, "search.lr.log: a log range needs lo > 0"),
        ({"search": {"r": [0, 4]}}, "(lora).search.r: the rank must be at least 1, got 0"),
        ({"search": {"r": [4, 4]}}, "search.r: a value is listed twice"),
        ({"search": {"r": [4]}}, "search.r: give at least two values"),
        ({"search": {"r": 8}}, "search.r: expected a list of values or a range"),
        ({"search": {"r": {"log": [4, 64]}}}, "(lora).trials: a search over a range needs a trial count"),
        ({"r": 8, "search": {"r": [4, 8]}}, "search.r: r is both set on the entry (8) and searched"),
        ({"search": {"dev_every": [1, 2]}}, "search.dev_every: cannot be searched"),
        ({"search": {"lr_grid": [1, 2]}}, "search.lr_grid: cannot be searched: a learning-rate grid"),
        ({"search": {"r": [4, 8]}, "lr_grid": [1e-4, 1e-3]}, "(lora).lr_grid: a learning-rate grid and a search"),
        ({"trials": 4}, "(lora).trials: trials configure a search; add search:"),
        ({"search": {"r": [4, 8]}, "objectives": ["dev", "memory"]},
         "objectives: unknown objective 'memory'. Did you mean 'peak_memory'?"),
        ({"search": {"r": [4, 8]}, "objectives": ["trainable_params"]}, "objectives: include dev"),
        ({"search": {"r": [4, 8]}, "pruner": "medain"}, "pruner.name: expected median, hyperband, none, got 'medain'"),
        ({"search": {"r": [4, 8]}, "trials": 0}, "(lora).trials: must be at least 1"),
    ],
)  # fmt: skip
def test_bad_searches_are_refused_naming_the_key(entry, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        _lora(**entry)


def test_a_prompting_method_searches_its_options_but_not_training_fields():
    spec = parse_spec({"models": ["tiny-llama"], "methods": [{"name": "few-shot", "search": {"k": [2, 4]}}]})
    assert spec.methods[0].search.trials == 2
    with pytest.raises(SpecError, match=r"search.lr: cannot be searched: few-shot does not train"):
        parse_spec({"models": ["tiny-llama"], "methods": [{"name": "few-shot", "search": {"lr": [1e-3, 1e-2]},
                                                           "trials": 2}]})  # fmt: skip


def test_the_spec_with_a_search_writes_back_as_a_spec_that_parses_to_the_same():
    spec = parse_spec({"models": ["tiny-llama"], "methods": [
        {"name": "lora", "search": {"lr": {"log": [1e-4, 3e-3]}, "r": [4, 8]}, "trials": 3,
         "objectives": ["dev", "trainable_params"], "pruner": "hyperband"}]})  # fmt: skip
    again = parse_spec(spec.to_dict())
    assert again.methods[0].search == spec.methods[0].search


def test_search_flags():
    assert flag_value("4,8,16", "f") == [4, 8, 16]
    assert flag_value("log:1e-4:3e-3", "f") == {"log": [1e-4, 3e-3]}
    assert flag_value("int:2:8", "f") == {"int": [2, 8]}
    assert flag_value("q_proj+v_proj,all-linear", "f") == [["q_proj", "v_proj"], "all-linear"]
    entries = apply_flags(["zero-shot", {"name": "lora", "r": 8}], [
        "lora.alpha=16,32", "lora.lr=log:1e-4:3e-3", "lora.trials=12", "lora.objectives=dev,trainable_params",
        "lora.pruner=none"])  # fmt: skip
    assert entries[1] == {"name": "lora", "r": 8, "search": {"alpha": [16, 32], "lr": {"log": [1e-4, 3e-3]}},
                          "trials": 12, "objectives": ["dev", "trainable_params"], "pruner": "none"}  # fmt: skip
    assert apply_flags(
        [{"name": "lora", "r": 16, "lr_grid": [1e-3]}], ["lora.r=4,8", "lora.lr=1e-3,1e-2"]
    ) == [
        {"name": "lora", "search": {"r": [4, 8], "lr": [1e-3, 1e-2]}}  # flags override the spec's values
    ]
    with pytest.raises(SpecError, match=r"--search lroa.r=4,8: 'lroa' is not among the methods .* 'lora'"):
        apply_flags(["lora"], ["lroa.r=4,8"])
    with pytest.raises(SpecError, match=r"expected METHOD.KEY=VALUES"):
        apply_flags(["lora"], ["r=4,8"])
    with pytest.raises(SpecError, match=r"expected log:LO:HI"):
        apply_flags(["lora"], ["lora.lr=log:1e-4"])


# -- the study, with a stand-in for training (fast: no model is trained) ----------------------------------


def _fake_training(monkeypatch, calls: list):
    """Each trial's dev curve, as a pure function of its configuration: a score that grows to the
    configuration's quality over the 6 steps (reported to the pruner at steps 2, 4 and 6)."""

    def train(self, cell, asked, number, params, key, path):
        calls.append(dict(params))
        quality = 0.9 - abs(params["r"] - 4) / 10 - (0.3 if params.get("lr", 1e-2) < 1e-3 else 0.0)
        trial = search.Trial(number, params, key=key, metric="accuracy", trainable_params=100 * params["r"])
        for step in (2, 4, 6):
            score = round(quality * step / 6, 4)
            trial.dev_curve.append([step, score])
            trial.steps = step
            if self._prune(asked, step, score):
                trial.status, trial.pruned_at, trial.dev_score = "pruned", step, score
                return trial
        trial.dev_score, trial.final_loss = quality, 1 - quality
        return trial

    monkeypatch.setattr(search._Runner, "_train", train)


def _grid(tmp: Path, method: dict):
    from tunebench.runs.runner import build_grid

    return build_grid(_spec(tmp, method, "fake"))


def test_a_search_is_replayed_from_its_records_and_prunes_on_the_dev_curve(tmp_path, monkeypatch):
    from tunebench.models import resolve_model
    from tunebench.runs.grid import Cell

    calls: list = []
    _fake_training(monkeypatch, calls)
    method = {"name": "lora", "search": {"r": [1, 2, 4, 8, 16], "lr": {"log": [1e-4, 1e-1]}}, "trials": 10,
              "pruner": {"name": "median", "startup_trials": 2}}  # fmt: skip
    grid = _grid(tmp_path, method)
    cell = Cell(resolve_model("tiny-bert"), grid.spec.methods[0], 0)
    first = search.search_for_cell(cell, grid)
    assert first["trained"] == len(calls) == 10 - _repeats(first)
    statuses = [t["status"] for t in first["trials"]]
    assert statuses[:2] == ["complete", "complete"] and "pruned" in statuses
    for t in first["trials"]:
        if t["status"] == "pruned":
            assert t["pruned_at"] < 6 and t["dev_curve"][-1][0] == t["pruned_at"]
    best = max((t for t in first["trials"] if t["status"] == "complete"), key=lambda t: t["dev_score"])
    assert first["chosen"] == best["params"] and first["pruner"] == "median"
    records = sorted(
        p.name for p in (tmp_path / "fake" / "selection" / "tiny-bert--lora").glob("trial--*.json")
    )
    assert len(records) == len({t["key"] for t in first["trials"]})

    calls.clear()
    again = search.search_for_cell(cell, grid)
    assert calls == [] and again["trained"] == 0  # every trial told from its record
    assert _without_cached(again) == _without_cached(first)  # the same proposals, the same pruning

    more = search.search_for_cell(dataclasses_replace_trials(cell, 12), grid)
    assert [t["params"] for t in more["trials"][:10]] == [t["params"] for t in first["trials"]]
    assert more["trained"] == 2  # raising trials continues the same sequence


def _repeats(record: dict) -> int:
    """Trials that proposed a configuration an earlier trial of the same search had trained."""
    keys = [t["key"] for t in record["trials"]]
    return len(keys) - len(set(keys))


def _without_cached(record: dict) -> list:
    return [{k: v for k, v in t.items() if k != "cached"} for t in record["trials"]]


def dataclasses_replace_trials(cell, trials: int):
    import dataclasses

    method = dataclasses.replace(cell.method, search=dataclasses.replace(cell.method.search, trials=trials))
    return dataclasses.replace(cell, method=method)


def test_several_objectives_give_the_pareto_set(tmp_path, monkeypatch):
    from tunebench.models import resolve_model
    from tunebench.runs.grid import Cell

    _fake_training(monkeypatch, [])
    method = {"name": "lora", "search": {"r": [1, 2, 4, 8]}, "objectives": ["dev", "trainable_params"]}
    grid = _grid(tmp_path, method)
    record = search.search_for_cell(Cell(resolve_model("tiny-bert"), grid.spec.methods[0], 0), grid)
    assert record["sampler"] == "grid" and sorted(t["params"]["r"] for t in record["trials"]) == [1, 2, 4, 8]
    by_r = {t["params"]["r"]: t["number"] for t in record["trials"]}
    # quality peaks at r=4 (0.9; r=2 0.7, r=1 0.6, r=8 0.5) and the parameters grow with r: r=8 is dominated
    assert sorted(record["pareto"]) == sorted(by_r[r] for r in (1, 2, 4))
    assert record["chosen"] == {"r": 4} and record["pruner"] is None


# -- searches on the tiny random BERT ---------------------------------------------------------------------

BUDGET = {"steps": 6, "batch_size": 8, "max_length": 16, "eval_batch_size": 16, "dev_every": 2, "warmup": 0.0}


def _data(folder: Path) -> Path:
    """Two classes told apart by their words alone (as the conformance suite's)."""
    words = {"pos": ["great", "good", "nice", "fine"], "neg": ["awful", "bad", "poor", "sad"]}
    rows = [{"text": f"{words[label][i % 4]} {words[label][(i // 4) % 4]} {i}", "label": label}
            for i in range(40) for label in ("pos", "neg")]  # fmt: skip
    path = folder / "sentiment.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _spec(tmp: Path, method: dict, name: str):
    task = {"name": str(_data(tmp)), "input": "text", "target": "label", "dev_size": 8, "test_size": 8}
    return parse_spec({"name": name, "models": ["tiny-bert"], "task": task, "methods": [method],
                       "budget": BUDGET, "out": str(tmp)})  # fmt: skip


PRUNED = {"name": "lora", "search": {"lr": {"log": [1e-5, 1e-1]}, "r": [2, 4]}, "trials": 5,
          "pruner": {"name": "median", "startup_trials": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(measure, "LATENCY_EXAMPLES", 1)
        (first,) = run_experiment(_spec(tmp, PRUNED, "pruned"))
    return tmp, first


def test_the_chosen_configuration_is_the_final_runs_and_its_trial_is_reused(searched):
    tmp, result = searched
    assert result["status"] == "ok", result["error"]
    search = result["search"]
    assert search["split"] == "dev" and search["sampler"] == "TPE" and search["seed"] == 0
    assert len(search["trials"]) == 5 and search["trained"] == 5
    chosen = search["trials"][search["chosen_trial"]]
    assert chosen["status"] == "complete" and search["chosen"] == chosen["params"]
    complete = [t for t in search["trials"] if t["status"] == "complete"]
    assert chosen["dev_score"] == max(t["dev_score"] for t in complete)
    assert result["config"]["method"]["r"] == chosen["params"]["r"]
    assert result["config"]["budget"]["lr"] == chosen["params"]["lr"]
    # the chosen trial trained this very run (seed 0, the whole budget): evaluated on test, not trained again
    assert result["reused"]["from"] == "configuration search" and result["train"]["steps"] == 6
    kept = [p.name for p in (tmp / "pruned" / "selection" / "tiny-bert--lora").iterdir() if p.is_dir()]
    assert kept == [f"trial--{chosen['key']}"]  # the others' states are dropped


def test_trials_are_pruned_on_the_dev_curve(searched):
    _, result = searched
    search = result["search"]
    assert search["pruner"] == "median" and search["pruning_off"] is None
    pruned = [t for t in search["trials"] if t["status"] == "pruned"]
    assert pruned, [(t["params"], t["dev_curve"]) for t in search["trials"]]
    for t in pruned:
        assert t["pruned_at"] in (2, 4) and t["dev_curve"][-1][0] == t["pruned_at"] and t["steps"] < 6
    first = search["trials"][0]  # startup_trials: 1, so the first trial always runs to the end
    assert first["status"] == "complete" and [s for s, _ in first["dev_curve"]] == [2, 4, 6]


def test_a_second_run_trains_no_trial_and_a_lost_trial_alone_is_trained_again(searched, capsys):
    tmp, first = searched
    folder = tmp / "pruned" / "selection" / "tiny-bert--lora"
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    capsys.readouterr()
    (again,) = run_experiment(_spec(tmp, PRUNED, "pruned"))
    err = capsys.readouterr().err
    assert "train step" not in err and err.count("finished earlier") == 5 + 1  # five trials, the final run
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.json")} == stamps
    assert again["search"] == first["search"]  # the run's record keeps the search that trained its trials
    # an interrupted search: the last trial's record was never written; only that trial trains again, and
    # the seeded sampler proposes what it proposed the first time
    last = first["search"]["trials"][-1]
    (folder / f"trial--{last['key']}.json").unlink()
    (resumed,) = run_experiment(_spec(tmp, PRUNED, "pruned"))
    trials = [line for line in capsys.readouterr().err.splitlines() if line.lstrip().startswith("trial ")]
    assert len(trials) == 5 and [t for t in trials if "finished earlier" not in t] == [trials[-1]]
    assert (folder / f"trial--{last['key']}.json").exists()
    # the same proposals, results and choice (the retrained trial's time and memory are measured anew)
    kept = ("number", "params", "status", "dev_score", "dev_curve", "pruned_at", "key")
    assert [{k: t[k] for k in kept} for t in resumed["search"]["trials"]] == [
        {k: t[k] for k in kept} for t in first["search"]["trials"]
    ]
    assert resumed["search"]["chosen"] == first["search"]["chosen"]


def test_a_multi_objective_search_gives_the_pareto_set(tmp_path):
    method = {"name": "lora", "lr": 1e-2, "search": {"r": [1, 8]}, "objectives": ["dev", "trainable_params"]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(measure, "LATENCY_EXAMPLES", 1)
        (result,) = run_experiment(_spec(tmp_path, method, "pareto"))
    search = result["search"]
    assert search["sampler"] == "grid" and search["objectives"] == ["dev", "trainable_params"]
    assert search["pruner"] is None and "one objective" in search["pruning_off"]
    trials = search["trials"]
    assert sorted(t["params"]["r"] for t in trials) == [1, 8] and all(
        t["status"] == "complete" for t in trials
    )
    small, large = sorted(trials, key=lambda t: t["params"]["r"])
    assert small["trainable_params"] < large["trainable_params"]
    # r=1 trains the fewest parameters: always on the front; r=8 only where it scores higher on dev
    expected = {small["number"]} | ({large["number"]} if large["dev_score"] > small["dev_score"] else set())
    assert set(search["pareto"]) == expected
    assert search["chosen_trial"] in search["pareto"]
    assert result["config"]["method"]["r"] == search["chosen"]["r"]


# -- the command line and the report -------------------------------------------------------------------


def test_compare_with_search_flags_shows_the_trials_in_the_report(tmp_path):
    data = _data(tmp_path)
    argv = ["compare", "--model", "tiny-bert", "--task", str(data), "--task-opt", "input=text",
            "--task-opt", "target=label", "--task-opt", "dev_size=8", "--task-opt", "test_size=8",
            "--methods", "lora", "--steps", "4", "--budget", "batch_size=8", "--budget", "max_length=16",
            "--budget", "dev_every=2", "--search", "lora.r=1,4", "--search", "lora.lr=log:1e-3:1e-1",
            "--search", "lora.trials=3", "--out", str(tmp_path), "--name", "cli"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(measure, "LATENCY_EXAMPLES", 1)
        assert main(argv) == 0
    exp = tmp_path / "cli"
    result = json.loads((exp / "tiny-bert--lora--s0" / "result.json").read_text())
    search = result["search"]
    assert search["space"] == {"r": [1, 4], "lr": {"log": [1e-3, 1e-1]}} and len(search["trials"]) == 3
    page = (exp / "report.html").read_text()
    assert "Options chosen on the dev split" in page and "of each trial of lora" in page
    assert page.count("<svg") >= 3 and "options chosen on dev by a search of 3 trials" in page
    assert main(["report", str(exp), "--format", "md", "--out", str(tmp_path / "r.md"),
                 "--charts", str(tmp_path / "charts")]) == 0  # fmt: skip
    md = (tmp_path / "r.md").read_text()
    assert "**Search, lora:** chosen r=" in md and "| trial | r | lr | dev | status |" in md
    assert (tmp_path / "charts" / "search-lora.svg").exists()
    spec = (exp / "spec.yaml").read_text()
    assert "search:" in spec and "trials: 3" in spec


# -- trials in processes of their own (the process executor) ----------------------------------------------


def test_trials_apart_give_the_same_search_and_ask_this_process_s_pruner(searched, tmp_path, monkeypatch):
    """Under the process executor each trial trains in a process of its own and reports its dev curve to
    the pruner here: the same trials, pruned at the same steps, the same choice and the same final run as
    in one process (the `searched` fixture)."""
    from tunebench.runs.executors import ProcessExecutor

    started = []
    real = search.run_in_child

    def counted(fn, *args, **kwargs):
        started.append(args[3])  # the trial's number
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(search, "run_in_child", counted)
    _, local = searched
    (apart,) = run_experiment(_spec(tmp_path, PRUNED, "pruned"), executor=ProcessExecutor())
    assert apart["status"] == "ok", apart["error"]
    assert started == [0, 1, 2, 3, 4]  # every trial trained in a child
    fields = ("params", "status", "dev_curve", "pruned_at", "dev_score", "steps", "key")
    assert [{f: t[f] for f in fields} for t in apart["search"]["trials"]] == [
        {f: t[f] for f in fields} for t in local["search"]["trials"]
    ]
    assert [t["status"] for t in apart["search"]["trials"]].count("pruned") >= 1  # the pruner was asked
    assert apart["search"]["chosen"] == local["search"]["chosen"]
    assert apart["metrics"] == local["metrics"] and apart["reused"]["from"] == "configuration search"
    for t in apart["search"]["trials"]:
        if t["status"] == "complete":
            assert t["peak_memory_mb"] > 0  # measured in the trial's own process
    kept = [p.name for p in (tmp_path / "pruned" / "selection" / "tiny-bert--lora").iterdir() if p.is_dir()]
    assert kept == [f"trial--{apart['search']['trials'][apart['search']['chosen_trial']]['key']}"]


def test_a_trial_whose_process_dies_is_a_failed_trial_and_the_search_goes_on(tmp_path, monkeypatch):
    from tunebench.runs.child import ChildDied, death_reason
    from tunebench.runs.executors import ProcessExecutor

    real = search.run_in_child

    def second_dies(fn, *args, **kwargs):
        if args[3] == 1:
            raise ChildDied(death_reason(-9))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(search, "run_in_child", second_dies)
    method = {"name": "lora", "search": {"r": [2, 4, 8]}, "pruner": "none"}
    (result,) = run_experiment(_spec(tmp_path, method, "dies"), executor=ProcessExecutor())
    assert result["status"] == "ok", result["error"]
    trials = result["search"]["trials"]
    assert [t["status"] for t in trials] == ["complete", "failed", "complete"]
    assert "out-of-memory killer" in trials[1]["error"]
    assert result["search"]["chosen"] in ({"r": 2}, {"r": 8})
