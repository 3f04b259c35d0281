"""--executor ray on a local Ray instance (2 CPUs): each run a task, failures recorded, finished runs reused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.config import Resources, parse_spec
from tunebench.core.errors import SpecError, TunebenchError
from tunebench.runs.executors import make_executor, task_options

TESTS = Path(__file__).parent
SOURCE = TESTS.parent / "src"
TINY = [
    "--model", "tiny-llama", "--task-opt", "train_size=32", "--task-opt", "dev_size=4",
    "--task-opt", "test_size=6", "--task-opt", "digits=2", "--steps", "3", "--budget", "batch_size=8",
    "--budget", "eval_batch_size=6", "--executor", "ray",
]  # fmt: skip


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module: 2 CPUs, no dashboard, workers on this source tree and with the
    test's crashing method registered."""
    ray = pytest.importorskip("ray")
    sys.path.insert(0, str(TESTS))
    import ray_hooks

    ray_hooks.register()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": f"{SOURCE}:{TESTS}", "TOKENIZERS_PARALLELISM": "false"},
            "worker_process_setup_hook": "ray_hooks.register",
        },
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def grid(local_ray, tmp_path_factory, tiny_llama, tiny_bert):
    out = tmp_path_factory.mktemp("runs")
    argv = ["compare", *TINY, "--model", "tiny-bert", "--methods", "zero-shot,lora,crash-worker"]
    code = main([*argv, "--out", str(out), "--name", "grid"])
    return out / "grid", code


def _result(exp: Path, name: str) -> dict:
    return json.loads((exp / name / "result.json").read_text())


def test_each_run_lands_in_the_store(grid):
    exp, code = grid
    assert code == 1  # some runs failed on purpose
    for name in ("tiny-llama--zero-shot--s0", "tiny-llama--lora--s0"):
        result = _result(exp, name)
        assert result["status"] == "ok", result["error"]
        assert (exp / name / "predictions.jsonl").exists() and (exp / name / "artifact").is_dir()
    lora = _result(exp, "tiny-llama--lora--s0")
    assert lora["train"]["steps"] == 3 and lora["eval"]["n"] == 6
    # the task ran in a Ray worker, with as many threads as the CPUs it asked for (1)
    assert lora["env"]["threads"] == 1
    assert (exp / "report.html").exists()


def test_a_run_that_raises_is_recorded_and_the_others_go_on(grid):
    exp, _ = grid
    failed = _result(exp, "tiny-bert--zero-shot--s0")
    assert failed["status"] == "failed" and "decoder" in failed["error"]


def test_a_worker_that_dies_is_recorded_as_failed(grid):
    exp, _ = grid
    for model in ("tiny-llama", "tiny-bert"):
        crashed = _result(exp, f"{model}--crash-worker--s0")
        if model == "tiny-bert":  # refused before it could crash (an encoder cannot generate)
            assert "decoder" in crashed["error"]
            continue
        assert crashed["status"] == "failed"
        assert "Ray worker" in crashed["error"] and "died" in crashed["error"]
        assert crashed["config_hash"] and crashed["config"]["method"]["name"] == "crash-worker"


def test_finished_runs_are_not_run_again(grid, capsys):
    exp, _ = grid
    stamps = {p: p.stat().st_mtime_ns for p in exp.glob("tiny-llama--[lz]*/result.json")}
    assert len(stamps) == 2
    code = main(["compare", *TINY, "--methods", "zero-shot,lora", "--out", str(exp.parent), "--name", "grid"])
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    err = capsys.readouterr().err
    assert err.count("finished earlier") == 2 and "started on Ray" not in err


def test_resources_come_from_the_spec_and_must_fit_the_cluster():
    cluster = {"CPU": 2.0, "memory": 8 * 2**30}
    assert task_options(Resources(cpus=2, memory="1GB"), cluster, "resources") == {
        "num_cpus": 2.0, "num_gpus": 0.0, "memory": 2**30,
    }  # fmt: skip
    assert task_options(Resources(), {**cluster, "GPU": 1.0}, "r")["num_gpus"] == 1.0  # auto: 1 with a GPU
    with pytest.raises(
        TunebenchError, match=r"methods \(lora\).resources: a run asks for 1 GPU, and the Ray cluster has 0"
    ):
        task_options(Resources(gpus=1), cluster, "methods (lora).resources")
    with pytest.raises(TunebenchError, match=r"asks for 3 CPU, and the Ray cluster has 2 in all"):
        task_options(Resources(cpus=3), cluster, "resources")


def test_ray_flag_errors_are_named(tmp_path, capsys):
    assert main(["compare", *TINY[:-2], "--executor", "rey", "--out", str(tmp_path)]) == 2
    assert "did you mean 'ray'" in capsys.readouterr().err.lower()
    assert main(["compare", *TINY[:-2], "--ray-address", "x:1", "--out", str(tmp_path)]) == 2
    assert "--executor ray" in capsys.readouterr().err


def test_resources_in_the_spec():
    spec = parse_spec(
        {
            "models": ["tiny-llama"],
            "resources": {"cpus": 2, "memory": "2GB"},
            "methods": ["zero-shot", {"name": "lora", "resources": {"gpus": 1}}],
        }
    )
    assert spec.methods[0].resources == Resources(cpus=2, memory="2GB")
    assert spec.methods[1].resources == Resources(cpus=2, gpus=1, memory="2GB")
    assert spec.to_dict()["methods"][1]["resources"]["gpus"] == 1
    with pytest.raises(SpecError, match=r"resources: unknown key 'gpu'.*Did you mean 'gpus'"):
        parse_spec({"models": ["m"], "methods": ["zero-shot"], "resources": {"gpu": 1}})
    with pytest.raises(SpecError, match=r"methods\[0\] \(lora\).resources.memory 'lots'"):
        parse_spec({"models": ["m"], "methods": [{"name": "lora", "resources": {"memory": "lots"}}]})
    with pytest.raises(SpecError, match=r"resources.cpus: must be positive"):
        parse_spec({"models": ["m"], "methods": ["zero-shot"], "resources": {"cpus": 0}})


def test_without_ray_the_flag_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(TunebenchError, match=r"pip install 'tunebench\[ray\]'"):
        make_executor("ray")
