"""--executor process (the default of `compare`): each run in a fresh process of its own, with the results a
run in this process gets; a process that dies is one failed run, with its reason; errors travel back."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.core.errors import SpecError
from tunebench.report.data import _environment
from tunebench.report.load import RunData
from tunebench.runs import executors
from tunebench.runs.child import ChildDied, death_reason, run_in_child

TINY = [
    "--model", "tiny-llama", "--task-opt", "train_size=32", "--task-opt", "dev_size=4",
    "--task-opt", "test_size=6", "--task-opt", "digits=2", "--steps", "3", "--budget", "batch_size=8",
    "--budget", "eval_batch_size=6",
]  # fmt: skip


# Run by the child processes below: module-level, so that the spawned child can import them by name.
def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def _raise_spec_error() -> None:
    raise SpecError("budget.steps: expected a positive number, got -1")


class _Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        import threading

        self.lock = threading.Lock()


def _raise_unpicklable() -> None:
    raise _Unpicklable()


def _killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_child_returns_its_result_and_raises_its_error():
    pid, square = run_in_child(_pid_and_square, 7)
    assert square == 49 and pid != os.getpid()
    with pytest.raises(SpecError, match=r"budget\.steps: expected a positive number"):
        run_in_child(_raise_spec_error)  # the same type: a grid-stopping error stops the grid here too
    with pytest.raises(RuntimeError, match="_Unpicklable: holds a lock"):
        run_in_child(_raise_unpicklable)


def test_a_child_that_dies_says_how():
    with pytest.raises(ChildDied, match=r"killed \(SIGKILL\).*out-of-memory killer"):
        run_in_child(_killed)
    assert "SIGSEGV" in death_reason(-signal.SIGSEGV) and "native code" in death_reason(-signal.SIGSEGV)
    assert "status 3" in death_reason(3)


def _result(exp: Path, name: str) -> dict:
    return json.loads((exp / name / "result.json").read_text())


@pytest.mark.parametrize("executor", ["process", "local"])
def test_process_runs_match_local_runs(executor, tmp_path, tiny_llama, capfd):
    """Each executor on its own folder; the two give the same records (compared by the second)."""
    argv = ["compare", *TINY, "--methods", "zero-shot,lora", "--executor", executor]
    assert main([*argv, "--out", str(tmp_path), "--name", executor]) == 0
    out, err = capfd.readouterr()  # the child's own output too: its libraries are as quiet as the CLI's
    assert "Loading weights" not in out + err and "kernels-community" not in out + err
    exp = tmp_path / executor
    lora = _result(exp, "tiny-llama--lora--s0")
    assert lora["status"] == "ok" and lora["train"]["steps"] == 3 and lora["eval"]["n"] == 6
    assert lora["train"]["peak_rss_mb"] > 0 and (exp / "tiny-llama--lora--s0" / "artifact").is_dir()
    assert lora["env"]["process"] == ("own" if executor == "process" else "shared")
    assert (exp / "report.html").exists()
    _RECORDS[executor] = {n: _result(exp, n) for n in ("tiny-llama--zero-shot--s0", "tiny-llama--lora--s0")}
    if len(_RECORDS) == 2:  # same seed, same machine: the same numbers wherever the run ran
        for name, record in _RECORDS["process"].items():
            assert record["metrics"] == _RECORDS["local"][name]["metrics"], name
            assert record["config_hash"] == _RECORDS["local"][name]["config_hash"], name


_RECORDS: dict[str, dict] = {}


def test_finished_runs_start_no_process(tmp_path, tiny_llama, monkeypatch, capsys):
    argv = ["compare", *TINY, "--methods", "zero-shot", "--out", str(tmp_path), "--name", "again"]
    assert main([*argv, "--executor", "local"]) == 0

    def no_child(*args, **kwargs):
        raise AssertionError("a finished run started a process")

    monkeypatch.setattr(executors, "run_in_child", no_child)
    assert main([*argv, "--executor", "process"]) == 0
    assert "finished earlier" in capsys.readouterr().err


def test_a_run_whose_process_dies_is_recorded_and_the_grid_goes_on(tmp_path, tiny_llama, monkeypatch):
    real = executors.run_in_child

    def lora_dies(fn, grid, cell, *args, **kwargs):
        if cell.method.name == "lora":
            raise ChildDied(death_reason(-signal.SIGKILL))
        return real(fn, grid, cell, *args, **kwargs)

    monkeypatch.setattr(executors, "run_in_child", lora_dies)
    argv = ["compare", *TINY, "--methods", "lora,zero-shot", "--executor", "process"]
    assert main([*argv, "--out", str(tmp_path), "--name", "dies"]) == 1  # a run failed
    exp = tmp_path / "dies"
    died = _result(exp, "tiny-llama--lora--s0")
    assert died["status"] == "failed" and "out-of-memory killer" in died["error"]
    assert died["config_hash"] and died["config"]["method"]["name"] == "lora"
    assert _result(exp, "tiny-llama--zero-shot--s0")["status"] == "ok"  # the grid went on


def test_the_default_executor_and_its_errors(monkeypatch, capsys, tmp_path):
    assert executors.DEFAULT_EXECUTOR == "process"
    assert isinstance(executors.make_executor("process"), executors.ProcessExecutor)
    with pytest.raises(SpecError, match="Did you mean 'process'"):
        executors.make_executor("proces")
    with pytest.raises(SpecError, match="--executor is process; add --executor ray"):
        executors.make_executor("process", "head:10001")


def test_the_report_warns_when_runs_shared_a_process():
    def run(process: str | None) -> RunData:
        env = {"device": "cpu", "cpu": "x"} | ({"process": process} if process else {})
        return RunData({"env": env, "train": {"peak_rss_mb": 900.0}})

    assert _environment([run("own"), run("own")])["shared_process"] == 0
    assert _environment([run("shared"), run("own"), run(None)])["shared_process"] == 2  # None: older records
    assert _environment([run("shared")])["shared_process"] == 0  # one run: nothing to compare it with


def _ask(*questions: int) -> list:
    from tunebench.runs.child import ask_parent

    return [ask_parent(q) for q in questions]


def test_a_child_asks_its_parent():
    assert run_in_child(_ask, 1, 2, 3, answer=lambda q: q * 10) == [10, 20, 30]
    with pytest.raises(RuntimeError, match="given no `answer`"):
        run_in_child(_ask, 1)


@pytest.mark.parametrize("executor", ["process", "local"])
def test_learning_rate_candidates_train_apart_with_local_results(executor, tmp_path, tiny_llama, monkeypatch):
    """Under the process executor each candidate of the learning-rate search trains in a process of its own;
    the selection (every candidate's dev score, the chosen rate) is the one a single process makes."""
    from tunebench.runs import selection

    started = []
    real = selection.run_in_child

    def counted(fn, cell, *args, **kwargs):
        started.append(cell.method.budget.lr)
        return real(fn, cell, *args, **kwargs)

    monkeypatch.setattr(selection, "run_in_child", counted)
    argv = ["compare", *TINY, "--methods", "lora", "--budget", "lr_grid=1e-3,1e-2", "--executor", executor]
    assert main([*argv, "--out", str(tmp_path), "--name", "lr"]) == 0
    record = _result(tmp_path / "lr", "tiny-llama--lora--s0")
    candidates = [(c["lr"], c["dev_score"], c["final_loss"]) for c in record["selection"]["candidates"]]
    # every candidate (the grid's two, and a third where the grid's edge was extended) in a child
    assert started == ([lr for lr, _, _ in candidates] if executor == "process" else [])
    _SELECTIONS[executor] = (candidates, record["selection"]["chosen_lr"], record["metrics"])
    if len(_SELECTIONS) == 2:
        assert _SELECTIONS["process"] == _SELECTIONS["local"]


_SELECTIONS: dict[str, tuple] = {}


def test_a_candidate_whose_process_dies_is_a_failed_candidate(tmp_path, tiny_llama, monkeypatch):
    from tunebench.runs import selection

    real = selection.run_in_child

    def large_dies(fn, cell, *args, **kwargs):
        if cell.method.budget.lr == 1e-2:
            raise ChildDied(death_reason(-signal.SIGKILL))
        return real(fn, cell, *args, **kwargs)

    monkeypatch.setattr(selection, "run_in_child", large_dies)
    argv = ["compare", *TINY, "--methods", "lora", "--budget", "lr_grid=1e-3,1e-2", "--executor", "process"]
    assert main([*argv, "--out", str(tmp_path), "--name", "lr"]) == 0
    record = _result(tmp_path / "lr", "tiny-llama--lora--s0")
    by_lr = {c["lr"]: c for c in record["selection"]["candidates"]}
    assert by_lr[1e-2]["status"] == "failed" and "out-of-memory killer" in by_lr[1e-2]["error"]
    assert record["selection"]["chosen_lr"] != 1e-2 and record["status"] == "ok"
