"""--tracker mlflow: every run logged with its config, per-step losses, dev scores, final figures and record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.core.errors import TunebenchError
from tunebench.runs.tracking import make_tracker

TINY = [
    "--model", "tiny-llama", "--task-opt", "train_size=32", "--task-opt", "dev_size=6",
    "--task-opt", "test_size=6", "--task-opt", "digits=2", "--steps", "4", "--budget", "batch_size=8",
    "--budget", "eval_batch_size=6", "--budget", "dev_every=2", "--methods", "zero-shot,lora",
]  # fmt: skip


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = main(["compare", *TINY, "--out", str(out), "--name", "tracked", "--tracker", "mlflow"])
    client = _client((out / "mlruns").as_uri())
    return out, code, client


def _client(uri: str):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(client):
    return _runs_of(client, "tracked")


def test_each_run_is_logged_with_params_metrics_and_record(tracked):
    out, code, client = tracked
    assert code == 0
    runs = _runs(client)
    assert set(runs) == {"tiny-llama--zero-shot--s0", "tiny-llama--lora--s0"}
    lora = runs["tiny-llama--lora--s0"]
    record = json.loads((out / "tracked" / "tiny-llama--lora--s0" / "result.json").read_text())
    assert lora.info.status == "FINISHED"
    assert lora.data.tags["tunebench.status"] == "ok"
    assert lora.data.tags["tunebench.config_hash"] == record["config_hash"]
    # params: the run's config, flattened
    assert lora.data.params["budget.steps"] == "4"
    assert float(lora.data.params["budget.lr"]) == record["config"]["budget"]["lr"]
    assert lora.data.params["task.digits"] == "2"
    assert lora.data.params["method.name"] == "lora"
    # per-step training loss, as in the run's log
    history = client.get_metric_history(lora.info.run_id, "train/loss")
    logged = [json.loads(line) for line in (out / "tracked" / "tiny-llama--lora--s0" / "log.jsonl").open()]
    losses = {e["step"]: e["loss"] for e in logged if e["event"] == "train_step"}
    assert sorted((m.step, m.value) for m in history) == sorted(losses.items())
    assert len(history) == 4
    # the dev curve (dev_every=2): steps 2 and 4
    dev = client.get_metric_history(lora.info.run_id, "dev/score")
    assert [(m.step, m.value) for m in sorted(dev, key=lambda m: m.step)] == [
        (s, v) for s, v in record["train"]["dev_curve"]
    ]
    # final figures
    metrics = lora.data.metrics
    assert metrics["test/exact_match"] == pytest.approx(record["metrics"]["exact_match"])
    assert metrics["train/steps"] == 4
    assert metrics["params/trainable"] == record["params"]["trainable"]
    assert metrics["wall_seconds"] == pytest.approx(record["wall_seconds"])
    # the record itself, as an artifact
    path = client.download_artifacts(lora.info.run_id, "result.json", str(out))
    assert json.loads(Path(path).read_text()) == record
    zero = runs["tiny-llama--zero-shot--s0"]
    assert "train/loss" not in zero.data.metrics and "test/exact_match" in zero.data.metrics


def test_a_reused_run_is_not_logged_twice(tracked):
    out, _, client = tracked
    assert main(["compare", *TINY, "--out", str(out), "--name", "tracked", "--tracker", "mlflow"]) == 0
    experiment = client.get_experiment_by_name("tracked")
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_a_failed_run_is_logged_as_failed(tmp_path):
    uri = (tmp_path / "elsewhere").as_uri()
    code = main(
        ["compare", *TINY, "--model", "tiny-bert", "--methods", "zero-shot", "--out", str(tmp_path),
         "--name", "mixed", "--tracker", "mlflow", "--tracking-uri", uri]
    )  # fmt: skip
    assert code == 1
    client = _client(uri)
    runs = _runs_of(client, "mixed")
    assert runs["tiny-llama--zero-shot--s0"].info.status == "FINISHED"
    failed = runs["tiny-bert--zero-shot--s0"]
    assert failed.info.status == "FAILED"
    assert "decoder" in failed.data.tags["tunebench.error"]
    assert not (tmp_path / "mlruns").exists()  # the given URI, not the default store


def _runs_of(client, name):
    experiment = client.get_experiment_by_name(name)
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def test_bad_tracker_flags_are_named(tmp_path, capsys):
    assert main(["compare", *TINY, "--out", str(tmp_path), "--tracker", "mlfow"]) == 2
    assert "did you mean 'mlflow'" in capsys.readouterr().err.lower()
    assert main(["compare", *TINY, "--out", str(tmp_path), "--tracking-uri", "x"]) == 2
    assert "--tracker mlflow" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran


def test_without_mlflow_the_flag_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if MLflow were not installed
    with pytest.raises(TunebenchError, match=r"pip install 'tunebench\[mlflow\]'"):
        make_tracker("mlflow", None, tmp_path / "e", "e")


def test_an_unusable_tracking_uri_fails_before_any_run(tmp_path, capsys):
    uri = "bogus-scheme://nowhere"
    assert main(["compare", *TINY, "--out", str(tmp_path), "--tracker", "mlflow", "--tracking-uri", uri]) == 2
    assert f"--tracking-uri {uri}: MLflow cannot use it" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
