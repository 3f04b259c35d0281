"""Training-set sizes (`data_sizes`, `--data-sizes`): nested subsets drawn in one fixed order, their place
in a run's identity and folder name, the report's curve and crossovers (on constructed runs whose answer
is known), and one end-to-end comparison on a tiny encoder."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from tunebench.cli.main import main
from tunebench.config import parse_spec
from tunebench.core import store
from tunebench.core.errors import SpecError
from tunebench.report import build_report, fmt
from tunebench.report.charts import chart_svgs
from tunebench.report.formats import to_csv, to_json, to_markdown
from tunebench.report.load import RunData
from tunebench.report.training_sizes import AHEAD, BEHIND, TIED, size_study
from tunebench.runs.grid import Cell, identity
from tunebench.runs.runner import build_grid
from tunebench.tasks import Example
from tunebench.tasks.subsets import DataSizes, draw_subsets, parse_data_sizes


def examples(n: int, labels: tuple[str, ...] = ("a", "b", "c")) -> list[Example]:
    return [Example(f"text {i}", labels[i % len(labels)]) for i in range(n)]


# -- subsets -----------------------------------------------------------------------------------------------


def test_subsets_are_nested_deterministic_and_keep_the_split_order():
    train = examples(500)
    sizes = parse_data_sizes([300, "all", 10, "100"], "data_sizes")
    drawn = draw_subsets(train, sizes, "data_sizes")
    assert [s.requested for s, _ in drawn] == [10, 100, 300, "all"]
    assert [len(x) for _, x in drawn] == [10, 100, 300, 500]
    for (_, small), (_, large) in itertools.pairwise(drawn):
        assert set(small) < set(large)  # nested
    for _, subset in drawn:
        positions = [train.index(e) for e in subset]
        assert positions == sorted(positions)  # the split's own order
    assert drawn[-1][1] == train and drawn[-1][0].whole  # all: the split itself
    again = draw_subsets(train, parse_data_sizes([10, 100, 300, "all"], "x"), "x")
    assert [x for _, x in again] == [x for _, x in drawn]  # the same draw every time
    other = draw_subsets(train, parse_data_sizes({"total": [10], "seed": 1}, "x"), "x")
    assert other[0][1] != drawn[0][1]  # another order seed: another draw
    fingerprints = {s.fingerprint for s, _ in drawn}
    assert len(fingerprints) == 4
    assert drawn[0][0].tag == "n10" and drawn[-1][0].tag == "n-all"


def test_the_draw_is_a_uniform_sample_not_the_first_examples():
    train = examples(1000)
    (_, subset), *_ = draw_subsets(train, parse_data_sizes([100], "x"), "x")
    positions = [train.index(e) for e in subset]
    assert max(positions) > 500  # drawn from the whole split


def test_per_class_subsets_draw_that_many_of_every_label_nested():
    labels = ("pos",) * 3 + ("neg",)  # imbalanced: 3 to 1
    train = [Example(f"t{i}", labels[i % 4]) for i in range(400)]
    drawn = draw_subsets(train, parse_data_sizes({"per_class": [5, 20, "all"]}, "x"), "x")
    for size, subset in drawn[:2]:
        counts = {label: sum(e.target == label for e in subset) for label in ("neg", "pos")}
        assert counts == {"neg": size.requested, "pos": size.requested}
        assert dict(size.label_counts) == counts
    assert set(drawn[0][1]) < set(drawn[1][1]) < set(drawn[2][1])
    assert drawn[2][1] == train and drawn[2][0].tag == "all-per-class"
    assert drawn[0][0].tag == "5-per-class" and drawn[0][0].examples == 10


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([100, 600], "size 600 is more than the training split's 500 examples; use sizes up to 500, or all"),
        ([500, "all"], "500 and all are the same 500 training examples"),
        (
            {"per_class": [200]},
            "size 200 per class is more than the training split's 167 examples of label 'a'",
        ),
    ],
)
def test_a_size_the_split_cannot_hold_is_refused_naming_both(value, message):
    with pytest.raises(SpecError) as e:
        draw_subsets(examples(500), parse_data_sizes(value, "data_sizes"), "data_sizes")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([100, "al"], "data_sizes[1]: expected a number of examples or 'all', got 'al'. Did you mean 'all'?"),
        ([0, 10], "data_sizes[0]: a size must be at least 1, got 0"),
        ([10, 10], "data_sizes: 10 is listed twice"),
        ([], "give at least one size"),
        ({"per_clas": [10]}, "unknown key 'per_clas'. Did you mean 'per_class'?"),
        ({"per_class": [10], "total": [5]}, "give either total"),
    ],
)
def test_bad_sizes_name_the_entry(value, message):
    with pytest.raises(SpecError) as e:
        parse_data_sizes(value, "data_sizes")
    assert message in str(e.value)


def test_a_flag_string_parses_like_the_list():
    assert parse_data_sizes("100, 30,all", "x") == DataSizes(total=[30, 100, "all"])
    assert parse_data_sizes({"per_class": "10,all"}, "x") == DataSizes(per_class=[10, "all"])


# -- the grid: identity, folder names, selection per size -----------------------------------------------------


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    spec = parse_spec(
        {
            "name": "sizes",
            "models": ["tiny-llama"],
            "methods": ["zero-shot", "lora"],
            "task": {"name": "arithmetic", "digits": 2, "train_size": 40, "dev_size": 4, "test_size": 6},
            "data_sizes": [8, 20, "all"],
            "out": str(out),
        }
    )
    return build_grid(spec)


def test_each_size_is_a_cell_with_its_own_identity_and_folder(grid):
    assert grid.total == 1 * 3 * 2 * 1
    groups = list(grid.groups())
    assert [(size.requested, method.name) for _, method, size, _ in groups] == [
        (8, "zero-shot"), (8, "lora"), (20, "zero-shot"), (20, "lora"), ("all", "zero-shot"), ("all", "lora"),
    ]  # fmt: skip
    model, lora = grid.models[0], grid.spec.methods[1]
    cells = [Cell(model, lora, 0, size) for size in grid.sizes]
    names = [c.name for c in cells]
    assert names == ["tiny-llama--lora--n8--s0", "tiny-llama--lora--n20--s0", "tiny-llama--lora--n-all--s0"]
    configs = [grid.config(c) for c in cells]
    digests = [store.config_hash(identity(c)) for c in configs]
    assert len(set(digests)) == 3  # runs at different sizes never collide
    assert configs[0]["task"]["sizes"]["train"] == 8 and configs[0]["task"]["train_subset"]["examples"] == 8
    assert configs[0]["data_size"]["tag"] == "n8" and "data_size" not in identity(configs[0])
    assert len(grid.splits_for(cells[0]).train) == 8 and grid.splits_for(cells[0]).test == grid.splits.test
    # the whole split is the run an experiment without data_sizes makes: the same identity, found under
    # either folder name, and the same learning-rate search folder
    plain = Cell(model, lora, 0)
    assert digests[2] == store.config_hash(identity(grid.config(plain)))
    assert cells[2].aliases == [cells[2].name, plain.name]
    assert cells[2].selection_name == plain.selection_name == "tiny-llama--lora"
    assert cells[0].selection_name == "tiny-llama--lora--n8"  # a search per size


def test_per_class_sizes_need_a_classification_task(tmp_path, capsys):
    code = main(
        ["compare", "--model", "tiny-llama", "--task-opt", "train_size=20", "--methods", "zero-shot",
         "--data-sizes", "per_class=5,all", "--out", str(tmp_path / "store")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert (
        "data_sizes.per_class: counts examples of every label, but arithmetic-add-3x3 is a generation task"
        in err
    )
    assert not (tmp_path / "store").exists()


def test_a_size_larger_than_the_split_stops_the_command_before_anything_runs(tmp_path, capsys):
    code = main(
        ["compare", "--model", "tiny-llama", "--task-opt", "train_size=20", "--methods", "zero-shot",
         "--data-sizes", "10,50", "--out", str(tmp_path / "store")]
    )  # fmt: skip
    assert code == 2
    assert "size 50 is more than the training split's 20 examples" in capsys.readouterr().err.replace(
        "\n", " "
    )
    assert not (tmp_path / "store" / "default" / "tiny-llama--zero-shot--n10--s0").exists()


# -- the report, on constructed runs ----------------------------------------------------------------------

N = 200  # test items: enough for a paired test to tell 20 points apart, and not 2


def sized_run(
    method: str, correct: list[bool], size: int | str, examples: int, seed: int = 0, model: str = "m"
) -> RunData:
    """A finished run at one training-set size, as the report reads it."""
    tag = f"n{size}" if size != "all" else "n-all"
    data_size = {"tag": tag, "requested": size, "per_class": False, "examples": examples, "of": 1000,
                 "seed": 0, "fingerprint": tag, "label_counts": None}  # fmt: skip
    trains = method != "zero-shot"
    result = {
        "schema": 1, "status": "ok", "error": None, "experiment": "exp", "model": model, "task": "t",
        "method": method, "seed": seed, "data_size": data_size,
        "config": {"task": {"data_fingerprint": "f0", "sizes": {"train": examples}}, "budget": {"lr": 1e-3}},
        "primary_metric": "accuracy", "metrics": {"accuracy": sum(correct) / len(correct)}, "ci95": [0.0, 1.0],
        "params": {"trainable": 1000 if trains else 0, "total": 10_000, "trainable_pct": 10.0 if trains else 0},
        "train": {"seconds": 5.0, "steps": 100, "planned_steps": 100, "examples": 3200, "tokens": 1,
                  "tokens_per_s": 1.0, "peak_rss_mb": 100.0} if trains else None,
        "eval": {"seconds": 1.0, "n": N, "ms_per_example": 1.0, "peak_rss_mb": 100.0},
        "latency": {"ms_per_example": 1.0}, "artifact": {"bytes": 1}, "env": {"device": "cpu"},
    }  # fmt: skip
    rows = [{"input": f"q{i}", "target": "y", "prediction": "y" if c else "n", "answer": "y" if c else "n",
             "correct": c} for i, c in enumerate(correct)]  # fmt: skip
    return RunData(result, f"/runs/exp/{model}--{method}--{tag}--s{seed}/result.json", rows)


def scores(rate: float, seed: int) -> list[bool]:
    """N items, a share `rate` right (independent items: the paired test's discordance is realistic)."""
    rng = random.Random(seed)
    return [rng.random() < rate for _ in range(N)]


def crossover_runs() -> list[RunData]:
    """The probe at 80% whatever the size; fine-tuning about level with it (its own errors, a few points
    apart) at 100 and 300 examples, and from 1,000 on right wherever the probe is and on most of the rest
    (95%, 97%): fine-tuning is the reference, ahead from 1,000; the probe as good as it up to 300."""
    probe = scores(0.80, 1)
    runs = []
    for size, n, full_rate in ((100, 100, 0.80), (300, 300, 0.80), (1000, 1000, 0.95), ("all", 5000, 0.97)):
        if full_rate <= 0.80:
            full = scores(full_rate, 7 + n)  # independent errors: discordant both ways
        else:  # right where the probe is, and on a share of its errors: a paired gain
            extra = scores((full_rate - 0.80) / 0.20, 2)
            full = [p or x for p, x in zip(probe, extra, strict=True)]
        runs += [sized_run("probe", probe, size, n), sized_run("full", full, size, n)]
    return runs


def test_the_leaderboard_is_the_largest_size_and_the_study_has_every_size():
    data = build_report(crossover_runs())
    assert data.sizes is not None
    assert [lv.examples for lv in data.sizes.levels] == [100, 300, 1000, 5000]
    assert {e.method for e in data.entries} == {"probe", "full"}
    assert all(e.seeds == [0] for e in data.entries)  # not four sizes counted as four seeds
    assert data.entries[0].method == "full" and data.entries[0].best
    assert len(data.runs) == 8 and {r.size for r in data.runs} == {"n100", "n300", "n1000", "n-all"}
    assert data.sizes.reference == "full"


def test_the_crossover_comes_from_the_paired_test_at_each_size():
    study = size_study(crossover_runs())
    assert study is not None
    (probe,) = study.crossovers
    assert [v.state for v in probe.verdicts] == [TIED, TIED, BEHIND, BEHIND]
    assert probe.verdicts[2].diff < -0.1 and probe.verdicts[2].p_adjusted < 0.05
    assert "Below about 1,000 examples, probe is as good as full" in study.summary
    assert "from 1,000 examples on, full is ahead" in study.summary
    assert "the crossover lies between 300 examples and 1,000 examples" in probe.sentence
    data = build_report(crossover_runs())
    assert data.recommendation.why.startswith("With all 5,000 training examples: full scores")
    assert "Below about 1,000 examples, probe is as good as full" in data.recommendation.why


def test_a_method_that_wins_at_small_sizes_is_named_ahead_there():
    runs = []
    for size, n, (probe_rate, full_rate) in ((100, 100, (0.9, 0.5)), ("all", 5000, (0.6, 0.95))):
        runs.append(sized_run("probe", scores(probe_rate, 4), size, n))
        runs.append(sized_run("full", scores(full_rate, 5), size, n))
    study = size_study(runs)
    assert [v.state for v in study.crossovers[0].verdicts] == [AHEAD, BEHIND]
    assert "Below about all 5,000 training examples, probe is better than full" in study.summary


def test_a_verdict_that_comes_back_places_no_crossover():
    """Behind at 10 and at all, not distinguishable at 30 alone (FINDINGS §7a had this: the decoder's full
    fine-tuning against the encoder's probe): no crossover is placed, each size's test is named, and the
    p-value is marked as Holm-corrected."""
    best = scores(0.9, 1)
    runs = []
    for size, n, other in ((10, 100, scores(0.5, 2)), (30, 300, list(best)), ("all", 1000, scores(0.5, 3))):
        runs += [sized_run("probe", best, size, n), sized_run("full", other, size, n)]
    study = size_study(runs)
    (full,) = study.crossovers
    assert [v.state for v in full.verdicts] == [BEHIND, TIED, BEHIND]
    assert not full.crosses and not full.steady
    assert full.sentence.startswith("probe is ahead of full at 100 examples and all 1,000 training examples")
    assert "but not in between (not distinguishable at 300 examples: Δ" in full.sentence
    assert "places no crossover" in study.summary and "crossover lies" not in study.summary
    assert "p (Holm) = 1.00" in study.summary


def test_a_middle_size_of_its_own_reads_at_that_size():
    best = scores(0.9, 1)
    runs = []
    for size, n, other in ((10, 100, scores(0.99, 2)), (30, 300, list(best)), ("all", 1000, scores(0.5, 3))):
        runs += [sized_run("probe", best, size, n), sized_run("full", other, size, n)]
    (full,) = size_study(runs).crossovers
    assert [v.state for v in full.verdicts] == [AHEAD, TIED, BEHIND] and full.crosses
    assert "; at 300 examples, full is as good as probe" in full.sentence  # not 'from 300 to 300'
    assert (
        "the crossovers lie between 100 examples and 300 examples, between 300 examples and" in full.sentence
    )


def test_no_crossover_is_said_as_such_and_one_size_is_no_study():
    runs = [sized_run(m, scores(r, i), s, n) for s, n in ((100, 100), ("all", 500))
            for i, (m, r) in enumerate((("full", 0.95), ("zero-shot", 0.3)))]  # fmt: skip
    study = size_study(runs)
    assert study.summary == "full is ahead of zero-shot at every size tried (no crossover)."
    assert size_study([r for r in runs if r.result["data_size"]["requested"] == 100]) is None


def test_a_method_run_at_fewer_sizes_is_said_to_be_compared_there_only():
    runs = [sized_run(m, scores(r, i), s, n) for s, n in ((100, 100), ("all", 500))
            for i, (m, r) in enumerate((("full", 0.95), ("zero-shot", 0.3)))]  # fmt: skip
    runs.append(sized_run("lora", scores(0.2, 7), 100, 100))  # not run on the whole split (yet)
    summary = size_study(runs).summary
    assert "full is ahead of zero-shot at every size tried (no crossover)." in summary
    assert "full is ahead of lora at 100 examples, the only size both ran." in summary


def test_with_two_models_each_model_is_asked_against_its_own_best():
    """An encoder whose probe is best everywhere, and a decoder whose fine-tuning beats its own probe: the
    decoder's probe is compared with the decoder's fine-tuning (a crossover of that model), not with the
    encoder's probe, and the decoder's best with the best of all."""
    encoder = scores(0.92, 1)
    runs = []
    for size, n in ((10, 100), (30, 300), ("all", 1000)):
        decoder_ft = scores({10: 0.55, 30: 0.75, "all": 0.85}[size], 3)
        decoder_probe = [
            c and k for c, k in zip(decoder_ft, scores(0.9, 4), strict=True)
        ]  # ft's errors, and more
        runs += [sized_run("probe", encoder, size, n, model="enc"),
                 sized_run("full", decoder_ft, size, n, model="dec"),
                 sized_run("probe", decoder_probe, size, n, model="dec")]  # fmt: skip
    study = size_study(runs)
    assert study.reference == "enc · probe" and study.references == ["enc · probe", "dec · full"]
    crossing = {c.label: c for c in study.crossovers}
    assert crossing["dec · probe"].reference == "dec · full"
    assert crossing["dec · full"].reference == "enc · probe"
    assert {v.state for v in crossing["dec · full"].verdicts} == {BEHIND}
    assert "dec · full is ahead of dec · probe at every size tried (no crossover)." in study.summary
    assert "enc · probe is ahead of dec · full at every size tried" in study.summary
    md = to_markdown(build_report(runs))
    assert "| dec · full (reference) |" in md and "each model's best at the largest size" in md
    # a method that did not finish at the largest size keeps its verdicts at the sizes where it did
    without = [r for r in runs if r.path != "/runs/exp/dec--probe--n-all--s0/result.json"]
    (probe,) = [c for c in size_study(without).crossovers if c.label == "dec · probe"]
    assert probe.reference == "dec · full" and [v.x for v in probe.verdicts] == [100, 300]


def test_every_format_carries_the_sizes_and_the_chart_has_intervals():
    data = build_report(crossover_runs())
    md = to_markdown(data)
    assert "## Quality by training examples" in md and "| full (reference) |" in md and "≈" in md
    rows = to_csv(data).splitlines()
    assert rows[0].startswith("data_size,training_examples,model,method") and len(rows) == 1 + 8
    sizes = json.loads(to_json(data))["sizes"]
    assert [lv["examples"] for lv in sizes["levels"]] == [100, 300, 1000, 5000]
    assert [v["state"] for v in sizes["crossovers"][0]["verdicts"]] == ["tied", "tied", "behind", "behind"]
    chart = chart_svgs(data)["quality-by-training-examples.svg"]
    assert chart.count('class="err"') == 8  # an interval at every size, for both methods
    probe = next(e for e in data.sizes.levels[0].entries if e.method == "probe")
    assert ">Training examples</text>" in chart and f"probe: {fmt.pct(probe.mean)} (95% CI" in chart


# -- end to end -------------------------------------------------------------------------------------------


def test_compare_with_data_sizes_on_a_tiny_encoder(tmp_path):
    rng = random.Random(0)
    rows = [{"text": f"item {i} is {'good' if i % 2 else 'bad'} {rng.random():.3f}",
             "label": "pos" if i % 2 else "neg"} for i in range(60)]  # fmt: skip
    data = tmp_path / "sentiment.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = ["--model", "tiny-bert", "--task", str(data), "--task-opt", "input=text", "--task-opt",
             "target=label", "--methods", "probe,lora", "--steps", "2", "--budget", "batch_size=4",
             "--budget", "lr_grid=1e-3,1e-2", "--out", str(tmp_path / "store")]  # fmt: skip
    assert main(["compare", *flags, "--name", "plain"]) == 0
    charts = tmp_path / "charts"
    assert main(["compare", *flags, "--name", "sizes", "--data-sizes", "per_class=4,all"]) == 0
    exp = tmp_path / "store" / "sizes"
    names = sorted(p.name for p in exp.iterdir() if p.is_dir() and p.name != "selection")
    assert names == [
        f"tiny-bert--{m}--{s}--s0" for m in ("lora", "probe") for s in ("4-per-class", "all-per-class")
    ]
    small = json.loads((exp / "tiny-bert--lora--4-per-class--s0" / "result.json").read_text())
    whole = json.loads((exp / "tiny-bert--lora--all-per-class--s0" / "result.json").read_text())
    assert small["status"] == whole["status"] == "ok"
    assert small["data_size"]["examples"] == 8 and small["data_size"]["label_counts"] == {"neg": 4, "pos": 4}
    assert (
        small["config"]["task"]["train_subset"]["examples"] == 8 and small["eval"]["n"] == whole["eval"]["n"]
    )
    assert small["selection"]["grid"] == [1e-3, 1e-2] and small["selection"]["chosen_lr"] is not None
    assert small["config"]["budget"]["lr"] == small["selection"]["chosen_lr"]  # chosen at this size
    assert (exp / "selection" / "tiny-bert--lora--4-per-class").is_dir()
    # the whole split is the run the experiment without sizes made: reused, not trained again
    assert whole["reused"]["from"] == "an earlier run" and "plain" in whole["reused"]["path"]
    assert whole["data_size"]["tag"] == "all-per-class" and "train_subset" not in whole["config"]["task"]
    html = (exp / "report.html").read_text()
    assert 'id="data-sizes"' in html and "against training examples per class" in html
    assert "4 per class" in html and "reference" in html
    assert main(["report", str(exp), "--charts", str(charts)]) == 0
    assert (charts / "quality-by-training-examples.svg").exists()
