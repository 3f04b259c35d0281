"""A run's identity is its content (model weights, data, method, budget, seed, versions), not the
experiment that asked for it: the same run asked for again anywhere under the runs folder, or in a shared
run cache, is reused, and `--force` trains it again."""

from __future__ import annotations

import json
import shutil

from tunebench.config import parse_spec
from tunebench.models import resolve_model
from tunebench.models.fingerprint import fingerprint
from tunebench.models.zoo import ResolvedModel
from tunebench.runs.grid import identity
from tunebench.runs.runner import run_experiment

TASK = {"name": "arithmetic", "digits": 1, "train_size": 16, "dev_size": 4, "test_size": 6}


def _spec(out, name, *, steps=2, run_cache=None):
    data = {
        "name": name,
        "models": ["tiny-llama"],
        "methods": ["zero-shot", "lora"],
        "task": TASK,
        "budget": {"steps": steps, "batch_size": 4, "precision": "fp32", "max_length": 32},
        "out": str(out),
    }
    return parse_spec({**data, **({"run_cache": str(run_cache)} if run_cache else {})})


def test_the_same_run_in_another_experiment_is_reused(tmp_path, capsys):
    runs = tmp_path / "runs"
    first = run_experiment(_spec(runs, "first"))
    second = run_experiment(_spec(runs, "second"))
    for before, again in zip(first, second, strict=True):
        name = f"tiny-llama--{before['method']}--s0"
        assert again["reused"] == {"from": "an earlier run", "path": str((runs / "first" / name).resolve())}
        assert again["config_hash"] == before["config_hash"] and again["metrics"] == before["metrics"]
        assert again["experiment"] == "second" and again["config"]["experiment"] == "second"
        folder = runs / "second" / name
        assert json.loads((folder / "config.json").read_text())["experiment"] == "second"
        assert (folder / "predictions.jsonl").read_text() == (
            runs / "first" / name / "predictions.jsonl"
        ).read_text()
        assert any((folder / "artifact").iterdir())
    assert "the same run finished in first, reusing it" in capsys.readouterr().err


def test_a_changed_budget_or_force_trains_again(tmp_path):
    runs = tmp_path / "runs"
    run_experiment(_spec(runs, "first"))
    zero, lora = run_experiment(_spec(runs, "longer", steps=3))
    assert "reused" in zero  # prompting ignores the training budget: the same run
    assert "reused" not in lora and lora["train"]["steps"] == 3
    forced = run_experiment(_spec(runs, "forced"), force=True)
    assert all("reused" not in r for r in forced)


def test_runs_come_from_a_shared_run_cache(tmp_path):
    cache = tmp_path / "team-runs"
    run_experiment(_spec(cache, "nightly"))
    mine = run_experiment(_spec(tmp_path / "mine", "local", run_cache=cache))
    assert all(r["reused"]["path"].startswith(str(cache.resolve())) for r in mine)


def test_identity_leaves_out_the_experiment_and_paths(tmp_path):
    model = resolve_model("tiny-llama")
    copy = tmp_path / "elsewhere"
    shutil.copytree(model.path, copy)
    moved = ResolvedModel("renamed", str(copy), model.kind)
    assert fingerprint(moved) == fingerprint(model)  # the same weights at another path and name
    config = {
        "experiment": "a",
        "model_path": model.path,
        "task": {"name": "file", "path": "/data/x.csv", "test_path": "/data/y.csv", "data_fingerprint": "f"},
        "seed": 0,
    }
    assert identity(config) == {"task": {"name": "file", "data_fingerprint": "f"}, "seed": 0}
    (copy / "model.safetensors").write_bytes(b"changed weights")
    (copy / ".tunebench-fingerprint.json").unlink()
    assert fingerprint(ResolvedModel("renamed", str(copy), model.kind)) != fingerprint(model)
