"""The report's data step (results → table → Pareto front → recommendation), its loaders' errors, the text
formats and the `report` command, on synthetic result records (no model, no browser)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.core.errors import SpecError, TunebenchError
from tunebench.report import build_report, fmt, load_runs
from tunebench.report.data import data_warnings, find_disagreements, size_series
from tunebench.report.formats import to_csv, to_json, to_markdown
from tunebench.report.load import RunData
from tunebench.report.pareto import AXES, front, pareto
from tunebench.report.recommend import Constraints, parse_constraints, recommend
from tunebench.report.table import bootstrap_ci, budget_check, leaderboard

N = 40  # test examples per run


def make_run(
    method: str,
    correct: list[bool] | int,
    *,
    seed: int = 0,
    model: str = "m",
    trainable: int = 0,
    total: int = 1_000_000,
    steps: int | None = None,
    examples: int | None = None,
    train_s: float = 30.0,
    peak_mb: float = 1000.0,
    eval_mb: float = 800.0,
    latency: float = 50.0,
    merged: float | None = None,
    drift: float | None = None,
    status: str = "ok",
    error: str | None = None,
    task: str = "arith",
    fingerprint: str = "f0",
    answers: list[str] | None = None,
    lr: float = 1e-3,
) -> RunData:
    """A run as the report reads it. `correct` is the per-example 0/1 list (or how many of N are right)."""
    if isinstance(correct, int):
        correct = [i < correct for i in range(N)]
    trains = steps is not None
    result = {
        "schema": 1, "status": status, "error": error, "experiment": "exp", "model": model, "task": task,
        "method": method, "seed": seed,
        "config": {"task": {"data_fingerprint": fingerprint}, "budget": {"lr": lr, "steps": steps}},
        "primary_metric": "exact_match" if status == "ok" else None,
        "metrics": {"exact_match": sum(correct) / len(correct)} if status == "ok" else {},
        "ci95": [0.0, 1.0] if status == "ok" else None,
        "params": {"trainable": trainable, "total": total, "trainable_pct": 100 * trainable / total},
        "train": {"seconds": train_s, "steps": steps, "examples": examples or (steps or 0) * 8, "tokens": 1000,
                  "tokens_per_s": 1000 / train_s, "peak_rss_mb": peak_mb, "peak_gpu_mb": None,
                  "dev_curve": [[steps // 2, 0.1], [steps, 0.2]]} if trains else None,
        "eval": {"seconds": 2.0, "n": N, "ms_per_example": 5.0, "peak_rss_mb": eval_mb, "peak_gpu_mb": None},
        "latency": {"ms_per_example": latency, "merged_ms_per_example": merged, "batch_size": 1, "n": 5},
        "drift": {"nll_increase": drift} if drift is not None else None,
        "artifact": {"path": "artifact", "bytes": 1000 + trainable * 4},
        "wall_seconds": train_s + 10,
        "env": {"device": "cpu", "cpu": "test cpu", "threads": 2, "packages": {"torch": "x"}},
    }  # fmt: skip
    if status != "ok":
        return RunData(result=result, path=f"/runs/{model}--{method}--s{seed}/result.json")
    answers = answers or [str(i) if c else "wrong" for i, c in enumerate(correct)]
    predictions = [
        {"input": f"q{i}", "target": str(i), "prediction": a, "answer": a, "correct": c}
        for i, (a, c) in enumerate(zip(answers, correct, strict=True))
    ]
    losses = [(s, 2.0 / s) for s in range(1, (steps or 0) + 1)]
    return RunData(result, f"/runs/{model}--{method}--s{seed}/result.json", predictions, losses)


def ladder() -> list[RunData]:
    """A plausible comparison: prompting low, LoRA and full high and tied, full far costlier; one failure."""
    return [
        make_run("zero-shot", 2, latency=40.0),
        make_run("few-shot", 6, latency=120.0),
        make_run("lora", 30, trainable=10_000, steps=20, peak_mb=1500, latency=60.0, merged=45.0, drift=0.05),
        make_run("lora", 28, seed=1, trainable=10_000, steps=20, peak_mb=1500, latency=60.0, merged=45.0, drift=0.07),
        make_run("full", 31, trainable=1_000_000, steps=20, peak_mb=4000, train_s=90.0, latency=50.0, drift=0.4),
        make_run("full", 29, seed=1, trainable=1_000_000, steps=20, peak_mb=4000, train_s=90.0, drift=0.5),
        make_run("prefix", [], status="failed", error="TrainingError: the loss became nan"),
    ]  # fmt: skip


# -- leaderboard ---------------------------------------------------------------------------------------


def test_seeds_are_aggregated_with_mean_spread_and_interval():
    entries = {e.method: e for e in leaderboard(ladder())}
    lora = entries["lora"]
    assert lora.seeds == [0, 1]
    assert lora.mean == pytest.approx((30 + 28) / 2 / N)
    assert lora.std == pytest.approx(abs(30 - 28) / N / 2**0.5)
    lo, hi = lora.ci95
    assert lo < lora.mean < hi and hi - lo < 0.5
    assert lora.drift == pytest.approx(0.06)
    assert lora.peak_mb == 1500 and lora.eval_peak_mb == 800
    assert entries["zero-shot"].std is None  # one seed: no spread
    assert entries["zero-shot"].train_seconds == 0.0 and not entries["zero-shot"].trains


def test_bootstrap_interval_narrows_with_more_examples_and_is_degenerate_when_constant():
    assert bootstrap_ci([[True] * 30]) == (1.0, 1.0)
    small = bootstrap_ci([[i % 2 == 0 for i in range(20)]])
    large = bootstrap_ci([[i % 2 == 0 for i in range(2000)]])
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 3
    assert bootstrap_ci([[]]) is None


def test_best_first_ties_marked_and_failures_last_with_reason():
    entries = leaderboard(ladder())
    assert [e.method for e in entries][:2] == ["full", "lora"]
    full, lora, few, zero, prefix = entries
    assert full.best and not full.tied
    assert lora.tied  # 72.5% vs 75%: intervals overlap on 40 examples
    assert not few.tied and not zero.tied  # 15% and 5% are clearly below
    assert not prefix.ok and prefix.failed == [(0, "TrainingError: the loss became nan")]


def test_equal_scores_put_the_cheaper_method_first():
    entries = leaderboard(
        [make_run("full", 10, trainable=100, steps=5), make_run("lora", 10, trainable=5, steps=5)]
    )
    assert [e.method for e in entries] == ["lora", "full"]
    assert entries[0].best and entries[1].tied


def test_a_seed_that_failed_is_kept_beside_the_ones_that_finished():
    runs = [
        make_run("lora", 20, trainable=5, steps=4),
        make_run("lora", [], seed=1, status="failed", error="OOM"),
    ]
    (entry,) = leaderboard(runs)
    assert entry.ok and entry.seeds == [0] and entry.failed == [(1, "OOM")]


def test_several_models_label_entries_with_their_model():
    runs = [
        make_run("lora", 10, model="small", total=100, steps=4),
        make_run("lora", 20, model="big", total=1000, steps=4),
    ]
    assert {e.label for e in leaderboard(runs)} == {"small · lora", "big · lora"}
    assert size_series(leaderboard(runs)) == {"lora": [(100, 0.25, pytest.approx((0.25, 0.25), abs=0.25)),
                                                       (1000, 0.5, pytest.approx((0.5, 0.5), abs=0.25))]}  # fmt: skip


def test_model_size_is_the_base_models_not_the_adapters():
    """LoRA's total counts its adapter; the chart places every method of a model at the base's size."""
    runs = [
        make_run("zero-shot", 5, model="small", total=100),
        make_run("lora", 10, model="small", total=104, trainable=4, steps=4),
        make_run("full", 12, model="small", total=100, trainable=100, steps=4),
        make_run("lora", 20, model="big", total=1008, trainable=8, steps=4),
    ]
    series = size_series(leaderboard(runs))
    assert [x for x, _, _ in series["lora"]] == [100, 1008]  # "big" ran lora only: its smallest total
    assert [x for x, _, _ in series["full"]] == [100] and [x for x, _, _ in series["zero-shot"]] == [100]


def test_budget_check_flags_unequal_steps():
    equal = budget_check(leaderboard([make_run("lora", 1, steps=20), make_run("full", 1, steps=20)]))
    assert equal.equal and "every trained method had a budget of 20 optimizer steps" in equal.notes[0]
    unequal = budget_check(leaderboard([make_run("lora", 1, steps=20), make_run("full", 1, steps=10)]))
    assert not unequal.equal and any("unequal optimizer steps" in n for n in unequal.notes)


def test_early_stopping_within_an_equal_budget_is_not_an_unequal_budget():
    stopped = make_run("full", 1, steps=12)
    stopped.result["train"].update(planned_steps=20, early_stopping={"stopped_at": 12, "best_step": 8})
    check = budget_check(leaderboard([make_run("lora", 1, steps=20), stopped]))
    assert check.equal, check.notes
    assert any("early stopping ended runs before their budget: full (1 of 1 seeds)" in n for n in check.notes)


# -- Pareto front --------------------------------------------------------------------------------------


def test_front_keeps_only_undominated_points():
    points = [(0.0, 0.1), (10.0, 0.5), (20.0, 0.4), (30.0, 0.9), (30.0, 0.8), (5.0, 0.1)]
    assert front(points) == [0, 1, 3]  # (20, .4) is beaten by (10, .5); (5, .1) by (0, .1)
    assert front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]  # equal points do not dominate each other


def test_pareto_per_axis_on_the_ladder():
    entries = leaderboard(ladder())
    by_axis = {a.key: [e.method for e in pareto(entries, a)] for a in AXES}
    assert by_axis["trainable"] == ["few-shot", "lora", "full"]  # zero-shot is beaten by few-shot at 0 params
    assert by_axis["memory"] == ["few-shot", "lora", "full"]
    assert "full" in by_axis["latency"] and "lora" in by_axis["latency"]  # lora merged 45 ms < full 50 ms
    assert by_axis["latency"][0] == "zero-shot"


# -- recommendation ------------------------------------------------------------------------------------


def test_recommendation_without_constraints_is_the_best_with_its_tied_runner_up():
    rec = recommend(leaderboard(ladder()))
    assert rec.best.method == "full"
    assert [e.method for e in rec.runners_up] == ["lora"]
    assert rec.why.startswith("full scores 75.0% exact match")
    # each saving of half or more, as a share of the best's cost (1,500 MB against 4,000 MB, 30 s against 90 s)
    assert rec.why.endswith(
        "lora (72.5%) is within the noise of it and needs 1% of its trainable parameters, 38% of its memory "
        "and 33% of its training time."
    )


def test_several_tied_runners_up_are_counted_and_the_one_saving_most_is_named():
    runs = [*ladder(), make_run("ia3", 29, trainable=500, steps=20, peak_mb=1400, train_s=12.0, latency=55.0)]
    rec = recommend(leaderboard(runs))
    assert rec.best.method == "full" and {e.method for e in rec.runners_up} == {"lora", "ia3"}
    # ia3 saves on three costs (parameters, memory, time), lora too, but ia3 trains fewer parameters
    assert (
        "; 2 of the 4 others that fit are within the noise of it, among them ia3 (72.5%), which needs "
        in rec.why
    )
    assert "0.05% of its trainable parameters, 35% of its memory and 13% of its training time" in rec.why


def test_nothing_is_recommended_when_every_method_scores_zero():
    rec = recommend(leaderboard([make_run("zero-shot", 0), make_run("lora", 0, trainable=100, steps=5)]))
    assert rec.best is None and rec.runners_up == []
    assert rec.why.startswith("No method learned the task: the best that fits scores 0.0% exact match")
    assert not any(e.best or e.tied for e in leaderboard([make_run("zero-shot", 0), make_run("lora", 0)]))


def test_memory_constraint_rules_out_the_best_and_says_so():
    rec = recommend(leaderboard(ladder()), parse_constraints(max_memory="2GB"))
    assert rec.best.method == "lora"
    assert [(e.method, why) for e, why in rec.excluded] == [
        ("full", ["needs 3.9 GB peak memory (--max-memory 2GB)"])
    ]
    assert "full scores higher (75.0%) but needs 3.9 GB peak memory (--max-memory 2GB)" in rec.why


def test_nothing_fits():
    rec = recommend(leaderboard(ladder()), parse_constraints(max_latency_ms="10"))
    assert rec.best is None and rec.why.startswith("No method fits: even the best, full, needs 50 ms latency")


def test_trainable_share_and_train_time_constraints():
    entries = leaderboard(ladder())
    assert recommend(entries, parse_constraints(max_trainable_params="1%")).best.method == "lora"
    assert recommend(entries, parse_constraints(max_trainable_params="5k")).best.method == "few-shot"
    assert recommend(entries, parse_constraints(max_train_seconds="1min")).best.method == "lora"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"max_memory": "4GB"}, {"max_memory_mb": 4096.0}),
        ({"max_memory": "512"}, {"max_memory_mb": 512.0}),
        ({"max_memory": "1.5 GiB"}, {"max_memory_mb": 1536.0}),
        ({"max_trainable_params": "2.5M"}, {"max_trainable_params": 2.5e6}),
        ({"max_trainable_params": "0.5%"}, {"max_trainable_pct": 0.5}),
        ({"max_latency_ms": "1.5s"}, {"max_latency_ms": 1500.0}),
        ({"max_train_seconds": "5min"}, {"max_train_seconds": 300.0}),
    ],
)
def test_constraint_values_and_units(kwargs, expected):
    c = parse_constraints(**kwargs)
    for key, value in expected.items():
        assert getattr(c, key) == pytest.approx(value)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"max_memory": "lots"}, "--max-memory 'lots'"),
        ({"max_trainable_params": "1M%"}, "--max-trainable-params '1M%'"),
        ({"max_latency_ms": "-3"}, "--max-latency-ms '-3'"),
        ({"max_train_seconds": "5 days"}, "--max-train-seconds '5 days'"),
    ],
)
def test_bad_constraints_name_the_flag(kwargs, flag):
    with pytest.raises(SpecError, match=flag.replace("%", "%")):
        parse_constraints(**kwargs)


def test_an_unmeasured_constraint_excludes_rather_than_guesses():
    entries = leaderboard([make_run("probe", 20, latency=None)])
    entries[0].latency_ms = None
    rec = recommend(entries, Constraints(max_latency_ms=100))
    assert rec.best is None and "latency was not measured" in rec.why


# -- error browser, whole report, formats ------------------------------------------------------------


def test_disagreements_put_split_decisions_first():
    a = make_run("a", [True, True, False, False] + [False] * (N - 4))
    b = make_run("b", [True, False, False, True] + [False] * (N - 4))
    # Example 2: both wrong with the same answer → not shown; 1 and 3: one right, one wrong → first.
    items, total = find_disagreements([a, b], leaderboard([a, b]))
    assert [d.input for d in items] == ["q1", "q3"] and total == 2
    assert items[0].answers == {"a": ("1", True), "b": ("wrong", False)}


def test_build_report_end_to_end_and_text_formats():
    data = build_report(
        ladder(),
        parse_constraints(max_memory="2GB"),
        columns={"cost at scale": lambda e, rs: f"{len(rs)} runs"},
    )
    assert data.metric == "exact_match" and data.models == ["m"]
    assert data.recommendation.best.method == "lora"
    assert {r.status for r in data.runs} == {"ok", "failed"}
    assert data.fronts["trainable"] == ["few-shot", "lora", "full"]
    assert data.entries[0].extra == {"cost at scale": "2 runs"}

    table = list(csv.DictReader(io.StringIO(to_csv(data))))
    assert [r["method"] for r in table] == ["full", "lora", "few-shot", "zero-shot", "prefix"]
    assert table[-1]["status"] == "failed" and "the loss became nan" in table[-1]["error"]
    assert table[1]["tied_with_best"] == "True" and float(table[1]["mean"]) == pytest.approx(0.725)
    assert table[0]["cost at scale"] == "2 runs"

    as_json = json.loads(to_json(data))
    assert as_json["recommendation"]["best"] == "lora" and as_json["entries"][0]["peak_mb"] == 4000

    md = to_markdown(data)
    assert "**Recommendation:** lora scores 72.5%" in md
    assert "| 1 | full **best** | 75.0% |" in md and "TrainingError: the loss became nan" in md


# -- reading a runs folder -----------------------------------------------------------------------------


def write_runs(root: Path, runs: list[RunData]) -> Path:
    for run in runs:
        r = run.result
        folder = root / f"{r['model']}--{r['method']}--s{r['seed']}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(r))
        if run.predictions is not None:
            (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in run.predictions))
        (folder / "log.jsonl").write_text(
            "".join(json.dumps({"event": "train_step", "step": s, "loss": v}) + "\n" for s, v in run.losses)
        )
    return root


def test_load_runs_reads_results_predictions_and_losses(tmp_path):
    root = write_runs(tmp_path / "exp", ladder())
    (root / "selection").mkdir()  # selection candidates are not results
    (root / "selection" / "lr0.001--abc.json").write_text("{}")
    runs = load_runs(root)
    assert len(runs) == 7
    lora = next(r for r in runs if r.result["method"] == "lora" and r.result["seed"] == 0)
    assert sum(lora.correct) == 30 and lora.losses[0] == (1, 2.0)
    assert build_report(runs).entries[0].loss_curve[:2] == [(1, 2.0), (2, 1.0)]


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TunebenchError, match="no results here"):
        load_runs(tmp_path)
    with pytest.raises(TunebenchError, match="no such folder"):
        load_runs(tmp_path / "missing")


def test_corrupted_result_names_the_file(tmp_path):
    root = write_runs(tmp_path / "exp", ladder()[:2])
    bad = root / "m--few-shot--s0" / "result.json"
    bad.write_text('{"schema": 1, "status": "ok", ')
    with pytest.raises(TunebenchError, match=f"{bad}: not a readable result file"):
        load_runs(root)


def test_results_from_different_tasks_are_refused_naming_both(tmp_path):
    root = write_runs(tmp_path / "exp", [make_run("lora", 3), make_run("full", 3, fingerprint="other")])
    with pytest.raises(TunebenchError, match="different tasks") as info:
        load_runs(root)
    assert "m--lora--s0/result.json" in str(info.value) and "m--full--s0/result.json" in str(info.value)


def test_damaged_predictions_name_file_and_line(tmp_path):
    root = write_runs(tmp_path / "exp", [make_run("lora", 3)])
    path = root / "m--lora--s0" / "predictions.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n{oops\n")
    with pytest.raises(TunebenchError, match=f"{path}:2: not valid JSON"):
        load_runs(root)


def test_report_command_writes_each_format(tmp_path, capsys):
    root = write_runs(tmp_path / "exp", ladder())
    assert main(["report", str(root), "--max-memory", "2GB"]) == 0
    printed = capsys.readouterr().out
    assert f"Report: {root / 'report.html'}" in printed.replace("\n", "")
    assert "Recommendation: lora scores 72.5%" in printed
    html = (root / "report.html").read_text()
    assert "<svg" in html and "Recommended:" in html

    assert main(["report", str(root), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("model,method,status,")
    assert main(["report", str(root), "--format", "md", "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("# exp · arith")
    assert f"Report: {tmp_path / 'r.md'}" in capsys.readouterr().out.replace("\n", "")
    assert main(["report", str(root), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["metric"] == "exact_match"


def test_report_command_errors_name_the_problem(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results here" in capsys.readouterr().err
    root = write_runs(tmp_path / "exp", ladder())
    assert main(["report", str(root), "--max-memory", "big"]) == 2
    assert "--max-memory 'big'" in capsys.readouterr().err


def test_sizes_never_print_in_scientific_notation():
    from tunebench.report.fmt import size_bytes

    assert [size_bytes(n) for n in (500, 1.5 * 2**20, 999 * 1024, 1023.8 * 1024)] == [
        "500 B", "1.5 MB", "999 kB", "1024 kB",
    ]  # fmt: skip


def test_terminal_leaderboard_fits_80_columns_with_two_models_and_an_extra_column():
    """Every figure shows whole on an 80-column screen; a two-model label is model over method. What does not
    fit goes whole, least needed first (the 95% CI, Δ's interval, drift), and comes back on a wider screen."""
    from rich.console import Console

    from tunebench.report.terminal import render

    runs = [
        make_run("lora", 30, model="smollm2-135m", trainable=4_880_000, total=135_000_000, steps=80,
                 train_s=207.0, peak_mb=2300, latency=271.0, drift=0.73),
        make_run("full", 28, model="gemma3-270m", trainable=268_000_000, total=268_000_000, steps=80,
                 train_s=411.0, peak_mb=7300, latency=3680.0, drift=3.05),
        make_run("zero-shot", 0, model="smollm2-135m", total=135_000_000),
    ]  # fmt: skip
    data = build_report(runs, columns={"est. peak": lambda e, rs: "6.7 GB"})
    console = Console(width=80, record=True, color_system=None)
    console.print(render(data))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "6.7 GB" in text and "3.68 s" in text  # the last columns are not cut
    rows = text.splitlines()
    first = next(i for i, line in enumerate(rows) if line.startswith("smollm2-135m"))
    assert rows[first + 1].startswith("lora")  # model over method, not "smollm2-135m ·" cut at a space
    full = next(line for line in rows if line.startswith("gemma3-270m"))
    assert "−5.0" in full and "0.50" in full  # Δ vs best and the (Holm) p, whole
    assert "…" not in text

    wide = Console(width=140, record=True, color_system=None)
    wide.print(render(data))
    text = wide.export_text()
    assert "+3.05" in text and "55–85%" in text and "−5.0 (−12.5, +0.0)" in text


def test_grpo_runs_without_a_learning_signal_are_warned_about():
    """The objective writes the warning (objectives/rl.py); the report labels it with the run."""
    idle, learning = make_run("lora+rl", 10, steps=20), make_run("lora+rl", 12, seed=1, steps=20)
    idle.result["objective"] = {"steps_without_signal": 18, "warnings": [
        "in 18 of 20 GRPO steps every group's answers got the same reward, so those steps taught nothing "
        "(raise sft_steps, generations or temperature)"
    ]}  # fmt: skip
    learning.result["objective"] = {"steps_without_signal": 3}
    data = build_report([idle, learning])
    assert data.training_warnings == [
        "m · lora+rl · seed 0: in 18 of 20 GRPO steps every group's answers got the same reward, so those "
        "steps taught nothing (raise sft_steps, generations or temperature)"
    ]
    assert "- Training: m · lora+rl · seed 0: in 18 of 20" in to_markdown(data)


def test_examples_cut_to_max_length_are_one_line_for_the_runs_they_happened_in():
    runs = [make_run("lora", 10, steps=4), make_run("full", 10, steps=4), make_run("zero-shot", 5)]
    for run in runs[:2]:
        run.result["train"]["truncated"] = 3
        run.result["config"]["budget"]["max_length"] = 64
    assert data_warnings(runs) == [
        "every run that trained in steps: 3 training examples were cut to max_length 64 tokens "
        "(raise budget.max_length)"
    ]
    runs[1].result["train"]["truncated"] = 5
    assert [w.split(":")[0] for w in data_warnings(runs)] == ["m · lora · seed 0", "m · full · seed 0"]


def test_memory_prints_one_decimal_in_gigabytes():
    assert [fmt.mem_mb(x) for x in (512, 1053, 6144, 6184, 150 * 1024)] == [
        "512 MB", "1.0 GB", "6.0 GB", "6.0 GB", "150 GB"
    ]  # fmt: skip


def test_learning_rates_print_as_people_write_them():
    rates = (3e-5, 1e-4, 2.5e-4, 1e-3, 0.03, 0.1, None)
    assert [fmt.lr(x) for x in rates] == ["3e-5", "1e-4", "2.5e-4", "1e-3", "0.03", "0.1", "—"]
