"""End to end through the CLI on a tiny random model: the files a run writes, reuse, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.runs.record import documented_keys

TINY = [
    "--model",
    "tiny-llama",
    "--task-opt",
    "train_size=64",
    "--task-opt",
    "dev_size=8",
    "--task-opt",
    "test_size=12",
    "--task-opt",
    "digits=2",
    "--steps",
    "4",
    "--budget",
    "batch_size=8",
    "--budget",
    "eval_batch_size=6",
]
RESULT_KEYS = {
    "schema",
    "status",
    "error",
    "experiment",
    "model",
    "task",
    "method",
    "seed",
    "config",
    "config_hash",
    "primary_metric",
    "metrics",
    "ci95",
    "params",
    "train",
    "eval",
    "artifact",
    "task_info",
    "env",
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = main(["compare", *TINY, "--out", str(out), "--name", "e2e"])
    return out / "e2e", code


def test_every_run_writes_its_files(finished_run):
    exp, code = finished_run
    assert code == 0
    assert (exp / "spec.yaml").exists()
    runs = sorted(p.name for p in exp.iterdir() if p.is_dir())
    assert runs == [f"tiny-llama--{m}--s0" for m in ("few-shot", "full", "lora", "zero-shot")]
    for name in runs:
        folder = exp / name
        result = json.loads((folder / "result.json").read_text())
        assert set(result) >= RESULT_KEYS, RESULT_KEYS - set(result)
        # every key written is documented in runs/record.py, and every documented key is written
        assert set(result) <= documented_keys(), set(result) - documented_keys()
        assert documented_keys() - set(result) <= {
            "reused",
            "continued",
        }  # only where a run reused a selection's training
        assert result["schema"] == 1 and result["status"] == "ok", result["error"]
        assert result["primary_metric"] == "exact_match"
        lo, hi = result["ci95"]
        assert 0.0 <= lo <= result["metrics"]["exact_match"] <= hi <= 1.0
        assert result["eval"]["n"] == 12
        config = json.loads((folder / "config.json").read_text())
        assert config == result["config"]
        rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 12
        assert set(rows[0]) == {"input", "target", "prediction", "answer", "correct"}
        assert sum(r["correct"] for r in rows) / 12 == pytest.approx(result["metrics"]["exact_match"])
        assert (folder / "artifact").is_dir() and result["artifact"]["bytes"] > 0
        assert not list(folder.glob(".*"))  # no temporary files left behind


def test_artifacts_and_costs_match_the_method(finished_run):
    exp, _ = finished_run
    lora = json.loads((exp / "tiny-llama--lora--s0" / "result.json").read_text())
    full = json.loads((exp / "tiny-llama--full--s0" / "result.json").read_text())
    zero = json.loads((exp / "tiny-llama--zero-shot--s0" / "result.json").read_text())
    assert (exp / "tiny-llama--lora--s0" / "artifact" / "adapter_model.safetensors").exists()
    assert (exp / "tiny-llama--lora--s0" / "artifact" / "adapter_config.json").exists()
    assert (exp / "tiny-llama--full--s0" / "artifact" / "model.safetensors").exists()
    assert (exp / "tiny-llama--few-shot--s0" / "artifact" / "prompt.json").exists()
    assert zero["train"] is None and zero["params"]["trainable"] == 0
    assert full["params"]["trainable"] == full["params"]["total"]
    assert 0 < lora["params"]["trainable"] < lora["params"]["total"]
    for r in (lora, full):
        assert r["train"]["steps"] == 4
        assert r["train"]["examples"] == 32
        assert r["train"]["tokens"] > 0 and r["train"]["tokens_per_s"] > 0
    log = [json.loads(line) for line in (exp / "tiny-llama--lora--s0" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if e["event"] == "train_step"] == [1, 2, 3, 4]


def test_second_invocation_reuses_finished_runs(finished_run, capsys):
    exp, _ = finished_run
    stamps = {p: p.stat().st_mtime_ns for p in exp.glob("*/result.json")}
    assert main(["compare", *TINY, "--out", str(exp.parent), "--name", "e2e"]) == 0
    assert {p: p.stat().st_mtime_ns for p in exp.glob("*/result.json")} == stamps
    assert capsys.readouterr().err.count("finished earlier") == 4


def test_force_redoes_a_run(finished_run):
    exp, _ = finished_run
    path = exp / "tiny-llama--zero-shot--s0" / "result.json"
    before = path.stat().st_mtime_ns
    assert (
        main(
            ["compare", *TINY, "--methods", "zero-shot", "--force", "--out", str(exp.parent), "--name", "e2e"]
        )
        == 0
    )
    assert path.stat().st_mtime_ns != before


def test_a_failing_run_is_recorded_and_the_grid_goes_on(tmp_path):
    # A generative method on an encoder is refused; the decoder's run still happens.
    code = main(
        [
            "compare",
            *TINY,
            "--model",
            "tiny-bert",  # added to the tiny-llama of TINY
            "--methods",
            "zero-shot",
            "--out",
            str(tmp_path),
            "--name",
            "mixed",
        ]
    )
    assert code == 1
    bert = json.loads((tmp_path / "mixed" / "tiny-bert--zero-shot--s0" / "result.json").read_text())
    llama = json.loads((tmp_path / "mixed" / "tiny-llama--zero-shot--s0" / "result.json").read_text())
    assert llama["status"] == "ok"
    assert bert["status"] == "failed" and "needs a decoder" in bert["error"]
    assert not (tmp_path / "mixed" / "tiny-bert--zero-shot--s0" / "predictions.jsonl").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "smollm2-13m"], "Did you mean 'smollm2-135m'"),
        (["--task", "arithmatic"], "Did you mean 'arithmetic'"),
        (["--methods", "lora,ful"], "Did you mean 'full'"),
        (["--budget", "lr=0"], "lr: the learning rate must be positive"),
        (["--budget", "lr=-1e-4"], "lr: the learning rate must be positive"),
        (["--steps", "0"], "steps: must be at least 1"),
        (["--budget", "stepz=3"], "unknown key 'stepz'. Did you mean 'steps'?"),
        (["--task-opt", "opp=add"], "unknown key 'opp'. Did you mean 'op'?"),
    ],
)
def test_bad_input_names_the_setting_and_writes_nothing(tmp_path, capsys, flags, message):
    code = main(["compare", *TINY, *flags, "--out", str(tmp_path / "store")])
    assert code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "store").exists()


def test_spec_with_an_unknown_key_names_it(tmp_path, capsys):
    spec = tmp_path / "exp.yaml"
    spec.write_text("name: x\nmodels: [tiny-llama]\nmethods: [zero-shot]\nseeds: [0]\nbudgt: {steps: 1}\n")
    assert main(["compare", str(spec), "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'budgt'" in err and "Did you mean 'budget'" in err
    assert not (tmp_path / "store").exists()


def test_bad_data_file_names_file_and_line(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    code = main(
        [
            "compare",
            "--model",
            "tiny-llama",
            "--task",
            str(data),
            "--task-opt",
            "input=text",
            "--task-opt",
            "target=label",
            "--methods",
            "zero-shot",
            "--out",
            str(tmp_path / "store"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{data}:2" in err and "not valid JSON" in err
    assert not (tmp_path / "store").exists()


def test_listing_commands(capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    for name in ("zero-shot", "few-shot", "lora", "full", "black box", "white box"):
        assert name in listed
    assert main(["tasks"]) == 0
    assert "arithmetic" in capsys.readouterr().out
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    for name in ("smollm2-135m", "gemma3-270m", "minilm-l6", "tiny-llama"):
        assert name in listed


def test_classification_file_task_end_to_end(tmp_path):
    rows = [
        {"text": f"item {i} is {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}
        for i in range(40)
    ]
    data = tmp_path / "sentiment.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(
        [
            "compare",
            "--model",
            "tiny-llama",
            "--task",
            str(data),
            "--task-opt",
            "input=text",
            "--task-opt",
            "target=label",
            "--methods",
            "zero-shot,lora",
            "--steps",
            "2",
            "--budget",
            "batch_size=4",
            "--out",
            str(tmp_path / "store"),
            "--name",
            "cls",
        ]
    )
    assert code == 0
    result = json.loads(Path(tmp_path / "store" / "cls" / "tiny-llama--lora--s0" / "result.json").read_text())
    assert result["primary_metric"] == "accuracy"
    assert set(result["metrics"]) == {"accuracy", "macro_f1"}
    assert result["task_info"]["labels"] == ["neg", "pos"]
