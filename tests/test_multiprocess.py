"""One run on two processes (torchrun, gloo on CPU): DDP training, one writer, the same data as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunebench.train import distributed
from tunebench.train.data import Batch

ARGS = [
    "compare", "--model", "tiny-llama", "--methods", "zero-shot,lora", "--task-opt", "train_size=32",
    "--task-opt", "dev_size=4", "--task-opt", "test_size=6", "--task-opt", "digits=2", "--steps", "3",
    "--budget", "batch_size=8", "--budget", "eval_batch_size=6", "--budget", "precision=fp32",
]  # fmt: skip


def _torchrun() -> list[str]:
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("torchrun is not installed")
    return [found, "--standalone", "--nproc_per_node", "2", "-m", "tunebench.cli.main"]


def test_one_run_on_two_processes(tmp_path, tiny_llama):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNEBENCH_NO_PROGRESS": "1"}
    launched = subprocess.run(
        [*_torchrun(), *ARGS, "--out", str(tmp_path), "--name", "ddp"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    exp = tmp_path / "ddp"
    lora = json.loads((exp / "tiny-llama--lora--s0" / "result.json").read_text())
    assert lora["status"] == "ok", lora["error"]
    # the step counts of the whole batch (8 examples a step), though each process trained on 4 of them
    assert lora["train"]["steps"] == 3 and lora["train"]["examples"] == 24
    assert lora["eval"]["n"] == 6 and (exp / "tiny-llama--lora--s0" / "artifact").is_dir()
    assert json.loads((exp / "tiny-llama--zero-shot--s0" / "result.json").read_text())["status"] == "ok"
    # one writer: the main process's files only, and one report
    assert sorted(p.name for p in exp.iterdir()) == [
        "report.html", "spec.yaml", "tiny-llama--lora--s0", "tiny-llama--zero-shot--s0",
    ]  # fmt: skip
    assert launched.stderr.count("[2/2] tiny-llama--lora--s0") == 1  # the other process is quiet

    # The same command in one process trains on the same batches: the losses agree to float tolerance
    # (two half-batch means averaged vs one mean over the whole batch: the halves have equal token counts
    # only by chance, so a small difference is expected, not zero).
    single = subprocess.run(
        [sys.executable, "-m", "tunebench.cli.main", *ARGS, "--out", str(tmp_path), "--name", "one"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads((tmp_path / "one" / "tiny-llama--lora--s0" / "result.json").read_text())
    steps = [
        json.loads(line) for line in (exp / "tiny-llama--lora--s0" / "log.jsonl").read_text().splitlines()
    ]
    ddp_losses = [e["loss"] for e in steps if e.get("event") == "train_step"]
    steps = [json.loads(line) for line in (tmp_path / "one" / "tiny-llama--lora--s0" / "log.jsonl").open()]
    one_losses = [e["loss"] for e in steps if e.get("event") == "train_step"]
    assert ddp_losses == pytest.approx(one_losses, rel=0.05)
    assert lora["train"]["tokens"] == alone["train"]["tokens"]


def test_shards_are_disjoint_and_cover_the_batch(monkeypatch):
    batch = Batch(torch_arange(8, 3), torch_arange(8, 3), torch_arange(8, 1).squeeze(1))
    monkeypatch.setenv("WORLD_SIZE", "2")
    rows = []
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
        part = distributed.shard(batch)
        assert part.input_ids.shape == (4, 3)
        rows += part.labels.tolist()
    assert rows == batch.labels.tolist()


def torch_arange(rows: int, cols: int):
    import torch

    return torch.arange(rows * cols).reshape(rows, cols)
