"""The bad-input matrix (docs/bad-input.md): one test per row, through the command line where a user meets it.

Each asserts the message a user sees, and that a refused spec writes nothing.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tunebench.cli.main import main
from tunebench.core.errors import TunebenchError
from tunebench.report import make_report
from tunebench.tasks import build_task

TINY = ["--model", "tiny-llama", "--methods", "zero-shot"]
ARITH = ["--task-opt", "train_size=32", "--task-opt", "dev_size=4", "--task-opt", "test_size=6"]
ARITH += ["--task-opt", "digits=2"]


def rows(n: int = 30, labels=("pos", "neg")) -> list[dict]:
    return [{"text": f"review number {i}", "label": labels[i % len(labels)]} for i in range(n)]


def jsonl(path: Path, data: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


def refused(capsys, tmp_path: Path, *flags: str) -> str:
    """Run compare with `flags`; it must exit 2 and write nothing. The message, on one line."""
    code = main(["compare", *TINY, *flags, "--out", str(tmp_path / "store")])
    err = capsys.readouterr().err.replace("\n", "")
    assert code == 2, err
    assert not (tmp_path / "store").exists()
    return err


def file_task(path: Path, *opts: str) -> list[str]:
    flags = ["--task", str(path), "--task-opt", "input=text", "--task-opt", "target=label"]
    for opt in opts:
        flags += ["--task-opt", opt]
    return flags


# --- data files -----------------------------------------------------------------------------------------


def test_malformed_jsonl_line(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    err = refused(capsys, tmp_path, *file_task(path))
    assert f"{path}:2: not valid JSON (Expecting value at column" in err


def test_jsonl_line_that_is_not_an_object(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n["b", "y"]\n')
    assert f"{path}:2: expected a JSON object, got list" in refused(capsys, tmp_path, *file_task(path))


def test_csv_row_with_an_extra_field(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,pos\nb,neg\nc,pos,extra\n")
    err = refused(capsys, tmp_path, *file_task(path))
    assert f"{path}:4: 3 fields, but the header has 2 (text, label)" in err


def test_csv_field_over_the_size_limit(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,pos\n" + "x" * 200_000 + ",neg\n")
    err = refused(capsys, tmp_path, *file_task(path))
    assert f"{path}:3: not valid CSV (field larger than field limit" in err


def test_latin1_file_names_line_and_byte_and_the_encoding_option(tmp_path, capsys):
    path = tmp_path / "d.csv"
    text = "text,label\n" + "".join(f"caf\u00e9 {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30))
    path.write_bytes(text.encode("latin-1"))
    err = refused(capsys, tmp_path, *file_task(path))
    assert f"{path}:2: not UTF-8 text (byte 0xe9 at offset 14: invalid continuation byte)" in err
    assert "--task-opt encoding=latin-1" in err
    task = build_task("file", {"path": str(path), "input": "text", "target": "label", "encoding": "latin-1"})
    assert {e.input for e in task.splits().test} <= {f"caf\u00e9 {i}" for i in range(30)}


def test_unknown_encoding_is_a_spec_error(tmp_path, capsys):
    path = jsonl(tmp_path / "d.jsonl", rows())
    assert "task.encoding: unknown encoding 'latin-9x'" in refused(
        capsys, tmp_path, *file_task(path, "encoding=latin-9x")
    )


def test_missing_field_suggests_the_close_match(tmp_path, capsys):
    path = jsonl(tmp_path / "d.jsonl", rows())
    err = refused(
        capsys, tmp_path, "--task", str(path), "--task-opt", "input=text", "--task-opt", "target=lable"
    )
    assert f"{path}:1: no field 'lable'. Did you mean 'label'? Fields present: text, label" in err


def test_extra_fields_are_ignored(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{**r, "id": i, "meta": {"a": 1}} for i, r in enumerate(rows())])
    task = build_task("file", {"path": str(path), "input": "text", "target": "label"})
    assert len(task.splits().train) == 21


def test_a_field_holding_an_object_is_refused(tmp_path, capsys):
    data = rows()
    data[4]["text"] = {"title": "nested"}
    path = jsonl(tmp_path / "d.jsonl", data)
    err = refused(capsys, tmp_path, *file_task(path))
    assert f"{path}:5: field 'text' holds a JSON object; expected text or a number" in err


@pytest.mark.parametrize(("name", "content"), [("e.jsonl", ""), ("e.csv", ""), ("h.csv", "text,label\n")])
def test_empty_file(tmp_path, capsys, name, content):
    path = tmp_path / name
    path.write_text(content)
    assert f"{path}: the file holds no examples" in refused(capsys, tmp_path, *file_task(path))


def test_missing_data_file(tmp_path, capsys):
    path = tmp_path / "nope.jsonl"
    assert f"{path}: no such file" in refused(capsys, tmp_path, *file_task(path))


def test_a_label_set_of_one(tmp_path, capsys):
    path = jsonl(tmp_path / "d.jsonl", rows(labels=("yes",)))
    err = refused(capsys, tmp_path, *file_task(path))
    assert f"{path}: every target is 'yes'; classification needs two labels" in err


def test_targets_longer_than_max_length_are_counted_and_reported(tmp_path, capsys):
    long = [{"text": f"q{i}", "label": " ".join(f"word{j}" for j in range(i, i + 12))} for i in range(24)]
    path = jsonl(tmp_path / "d.jsonl", long)
    flags = ["compare", "--model", "tiny-llama", "--methods", "lora", *file_task(path), "--steps", "2"]
    flags += ["--budget", "max_length=8", "--budget", "batch_size=4", "--out", str(tmp_path), "--name", "cut"]
    assert main(flags) == 0
    out = capsys.readouterr()
    result = json.loads((tmp_path / "cut" / "tiny-llama--lora--s0" / "result.json").read_text())
    n_train = result["config"]["task"]["sizes"]["train"]
    assert result["train"]["truncated"] == n_train > 0
    assert f"{n_train} of {n_train} training examples are longer than max_length 8" in out.err.replace(
        "\n", ""
    )
    printed = out.out.replace("\n", " ")  # the leaderboard says it too
    assert f"{n_train} training examples were cut to max_length 8 tokens" in " ".join(printed.split())
    assert main(["report", str(tmp_path / "cut"), "--format", "md"]) == 0
    assert "training examples were cut to max_length 8" in capsys.readouterr().out


def test_duplicate_inputs_across_splits_are_counted_warned_and_reported(tmp_path, capsys):
    data = [{"text": f"q{i % 30}", "label": "x" if i % 2 else "y"} for i in range(45)]  # 15 inputs twice
    path = jsonl(tmp_path / "d.jsonl", data)
    assert main(["compare", *TINY, *file_task(path), "--out", str(tmp_path), "--name", "dup"]) == 0
    out = capsys.readouterr()
    result = json.loads((tmp_path / "dup" / "tiny-llama--zero-shot--s0" / "result.json").read_text())
    overlap = result["task_info"]["overlap"]
    assert overlap["test_in_train"] > 0 and overlap["dev_in_train"] > 0
    assert "warning: d.jsonl: duplicate inputs across splits" in out.err.replace("\n", " ")
    assert "duplicate inputs across splits" in " ".join(out.out.split())
    message = " ".join(refused(capsys, tmp_path, *file_task(path, "duplicates=error")).split())
    assert f"{path}: duplicate inputs across splits ({overlap['dev_in_train']} dev in train" in message
    task = build_task("file", {"path": str(path), "input": "text", "target": "label", "duplicates": "drop"})
    train = {e.input for e in task.splits().train}
    assert task.splits().test and not any(e.input in train for e in task.splits().test + task.splits().dev)


# --- methods that do not fit the model ------------------------------------------------------------------


def test_bitfit_on_a_model_without_biases(tmp_path, capsys):
    """Llama-style blocks have no bias terms: bitfit would train nothing but the head. The run is recorded
    as failed with the reason; the rest of the grid goes on."""
    flags = ["--model", "tiny-llama", "--methods", "bitfit,zero-shot", *ARITH, "--steps", "1"]
    code = main(["compare", *flags, "--out", str(tmp_path / "store"), "--name", "x"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1, err
    message = "bitfit trains bias terms, and tiny-llama's blocks have none (a Llama-style model)"
    assert message in err
    failed = json.loads((tmp_path / "store" / "x" / "tiny-llama--bitfit--s0" / "result.json").read_text())
    assert failed["status"] == "failed" and message in failed["error"]
    done = json.loads((tmp_path / "store" / "x" / "tiny-llama--zero-shot--s0" / "result.json").read_text())
    assert done["status"] == "ok"


# --- names and numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "tiny-lama"], "unknown model 'tiny-lama'. Did you mean 'tiny-llama'"),
        (["--task", "arithmatic"], "unknown task 'arithmatic'. Did you mean 'arithmetic'?"),
        (["--methods", "lorra"], "unknown method 'lorra'. Did you mean 'lora'"),
        (["--steps", "-3"], "budget.steps: must be at least 1, got -3"),
        (["--budget", "lr=abc"], "budget.lr: expected a number, got 'abc'"),
        (["--budget", "lr=.inf"], "budget.lr: must be a finite number, got inf"),
        (["--budget", "checkpoint_every=-1"], "budget.checkpoint_every: must be 0 (off) or more, got -1"),
        (["--seeds", "-1"], "seeds: seeds must be 0 or more, got [-1]"),
        (["--seeds", "1,1"], "seeds: a seed is listed twice: [1, 1]"),
    ],
)
def test_unknown_names_and_invalid_numbers(tmp_path, capsys, flags, message):
    assert message in refused(capsys, tmp_path, *ARITH, *flags)


# --- the output folder and the disk ---------------------------------------------------------------------


def test_output_folder_under_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = main(["compare", *TINY, *ARITH, "--out", str(tmp_path / "afile" / "runs")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert f"cannot write to the output folder {tmp_path / 'afile' / 'runs'}" in err
    assert "is a file; choose another --out" in err


def test_output_folder_without_write_permission(tmp_path, capsys, monkeypatch):
    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    # chmod does not stop root (tests may run as root): refuse the permission where tunebench asks for it
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    code = main(["compare", *TINY, *ARITH, "--out", str(locked)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and f"{locked} is not writable; choose another --out" in err
    assert list(locked.iterdir()) == []


def _fail_fsync_of(name: str, monkeypatch) -> None:
    """Simulate a full disk: fsync of a file whose name contains `name` fails with ENOSPC."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_while_writing_the_result(tmp_path, capsys, monkeypatch):
    _fail_fsync_of("result.json", monkeypatch)
    code = main(["compare", *TINY, *ARITH, "--out", str(tmp_path), "--name", "full"])
    err = " ".join(capsys.readouterr().err.split())
    run = tmp_path / "full" / "tiny-llama--zero-shot--s0"
    assert code == 2
    assert f"cannot write {run / 'result.json'}: No space left on device; the disk is full" in err
    assert not (run / "result.json").exists()
    assert not list(run.glob(".*tmp*"))  # no half-written file left behind


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    from tunebench.train import checkpoint

    real = checkpoint.fsync_file
    calls = []

    def fsync(path):  # the first checkpoint is written, the second meets a full disk
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path)

    monkeypatch.setattr(checkpoint, "fsync_file", fsync)
    flags = ["compare", "--model", "tiny-llama", "--methods", "lora", *ARITH, "--steps", "6"]
    flags += [
        "--budget",
        "checkpoint_every=2",
        "--budget",
        "batch_size=4",
        "--out",
        str(tmp_path),
        "--name",
        "ck",
    ]
    assert main(flags) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "No space left on device" in err and "the disk is full" in err
    run = tmp_path / "ck" / "tiny-llama--lora--s0"
    assert json.loads((run / "checkpoint" / "meta.json").read_text())["step"] == 2
    assert not (run / "result.json").exists() and not list(run.glob("checkpoint.tmp-*"))
    monkeypatch.setattr(checkpoint, "fsync_file", real)  # space freed: the same command resumes
    assert main(flags) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "ok" and result["train"]["resumed_from"] == 2


# --- the run store and the model cache ------------------------------------------------------------------


def test_corrupted_or_foreign_result_files_are_named(tmp_path, capsys):
    assert main(["compare", *TINY, *ARITH, "--out", str(tmp_path), "--name", "c"]) == 0
    capsys.readouterr()
    path = tmp_path / "c" / "tiny-llama--zero-shot--s0" / "result.json"
    good = path.read_text()
    for content, message in [
        (good[: len(good) // 2], f"{path}: not a readable result file"),
        ('{"hello": "world"}', f"{path}: not a tunebench result (no 'schema' and 'status' keys)"),
        (good.replace('"schema": 1', '"schema": 7'), f"{path}: result schema 7, but this tunebench reads"),
    ]:
        path.write_text(content)
        with pytest.raises(TunebenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
            make_report(tmp_path / "c")
        assert main(["report", str(tmp_path / "c"), "--format", "md"]) == 2
        assert message in " ".join(capsys.readouterr().err.split())
    # compare redoes a run whose result is damaged
    path.write_text(good[:10])
    assert main(["compare", *TINY, *ARITH, "--out", str(tmp_path), "--name", "c"]) == 0
    assert json.loads(path.read_text())["status"] == "ok"


def test_interrupted_model_preparation_leaves_no_corrupt_cache(tmp_path, monkeypatch):
    from tunebench.models import MODELS, resolve_model
    from tunebench.models.zoo import READY

    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path))
    models = tmp_path / "models"
    entry = MODELS.get("tiny-llama")
    real_build = entry.build

    def killed_midway(folder: Path) -> None:
        (folder / "config.json").write_text("{}")  # half a model
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "build", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        resolve_model("tiny-llama")
    assert not (models / "tiny-llama").exists() and not list(models.glob("tiny-llama.partial-*"))
    monkeypatch.setattr(entry, "build", real_build)
    # a SIGKILL leaves its partial folder behind: ignored, removed, and the model prepared again
    stale = models / "tiny-llama.partial-99999"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"truncated")
    resolved = resolve_model("tiny-llama")
    assert Path(resolved.path) == models / "tiny-llama" and (models / "tiny-llama" / READY).exists()
    assert not stale.exists()
    # a folder without the ready marker (an older layout, say) is rebuilt too
    (models / "tiny-llama" / READY).unlink()
    assert (Path(resolve_model("tiny-llama").path) / READY).exists()
