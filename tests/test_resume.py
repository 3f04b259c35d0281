"""Resume and integrity: checkpoints, a run killed with SIGKILL, determinism, failed runs kept apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tunebench.cli.main import main
from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.train import loop
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer
from tunebench.train.data import encode
from tunebench.train.loss import target_loss

LORA = "tiny-llama--lora--s0"


class Interrupted(Exception):
    """Stands for a kill inside one process: raised from the step callback."""


def _train(model_ref, steps: int, checkpoint: Checkpointer | None, stop_after: int | None = None):
    tok = load_tokenizer(model_ref)
    examples, _ = encode(tok, [f"{a} + 2 =" for a in range(20)], [str(a + 2) for a in range(20)], 64)
    torch.manual_seed(0)
    model = load_causal_lm(model_ref, torch.device("cpu"))

    def on_step(step: int, total: int, loss: float) -> None:
        if stop_after is not None and step == stop_after:
            raise Interrupted

    stats = loop.train(
        model,
        target_loss,
        examples,
        Budget(steps=steps, batch_size=6, lr=3e-3, warmup=0.2),
        seed=1,
        pad_id=tok.pad_token_id,
        device=torch.device("cpu"),
        bf16=False,
        on_step=on_step,
        checkpoint=checkpoint,
    )
    return stats, model


def test_resumed_training_equals_uninterrupted_training(tiny_llama, tmp_path):
    whole, whole_model = _train(tiny_llama, 12, None)
    ckpt = Checkpointer(tmp_path / "checkpoint", every=5, tag="t")
    with pytest.raises(Interrupted):
        _train(tiny_llama, 12, ckpt, stop_after=8)  # checkpoint at 5; steps 6-8 are lost
    assert ckpt.meta()["step"] == 5
    resumed, resumed_model = _train(tiny_llama, 12, Checkpointer(tmp_path / "checkpoint", 5, "t"))
    assert resumed.resumed_from == 5
    assert resumed.steps == 12 and resumed.examples == whole.examples and resumed.tokens == whole.tokens
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-6)
    for (name, a), (_, b) in zip(
        whole_model.named_parameters(), resumed_model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_a_checkpoint_of_another_config_or_an_unfinished_one_is_ignored(tiny_llama, tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoint", every=2, tag="mine")
    with pytest.raises(Interrupted):
        _train(tiny_llama, 6, ckpt, stop_after=3)
    assert Checkpointer(tmp_path / "checkpoint", 2, "other").meta() is None
    # a kill between the two renames of a swap leaves only checkpoint.old: it is used
    os.replace(tmp_path / "checkpoint", tmp_path / "checkpoint.old")
    assert ckpt.meta()["step"] == 2
    # a kill while writing leaves a temporary folder without meta.json: never used
    (tmp_path / "checkpoint.old" / "meta.json").unlink()
    assert ckpt.meta() is None
    ckpt.clear()
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_holds_only_the_trained_tensors(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    tok = load_tokenizer(tiny_llama)
    examples, _ = encode(tok, ["1 + 1 ="] * 4, ["2"] * 4, 32)
    model = get_peft_model(load_causal_lm(tiny_llama, torch.device("cpu")), LoraConfig(r=2))
    ckpt = Checkpointer(tmp_path / "checkpoint", every=1, tag="t")
    loop.train(
        model,
        target_loss,
        examples,
        Budget(steps=2, batch_size=2),
        seed=0,
        pad_id=tok.pad_token_id,
        device=torch.device("cpu"),
        bf16=False,
        checkpoint=ckpt,
    )
    saved = load_file(str(tmp_path / "checkpoint" / "trainable.safetensors"))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(saved) == trained and all("lora_" in n for n in saved)
    meta = json.loads((tmp_path / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 1 and meta["stats"]["steps"] == 1 and len(meta["stats"]["losses"]) == 1
    state = torch.load(tmp_path / "checkpoint" / "training.pt", weights_only=True)
    # hook: a method's own per-step state (AdaLoRA's rank allocator)
    assert set(state) == {"optimizer", "scheduler", "rng", "hook"}
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}


# --- through the command line, with a real SIGKILL ---------------------------------------------------


def _flags(out: Path) -> list[str]:
    return [
        "compare",
        "--model",
        "tiny-llama",
        "--task-opt",
        "train_size=96",
        "--task-opt",
        "dev_size=8",
        "--task-opt",
        "test_size=16",
        "--task-opt",
        "digits=2",
        "--methods",
        "zero-shot,lora",
        "--steps",
        "300",
        "--budget",
        "batch_size=16",
        "--budget",
        "checkpoint_every=20",
        "--budget",
        "eval_batch_size=16",
        "--out",
        str(out),
        "--name",
        "resume",
    ]


def _cli(out: Path) -> list[str]:
    return [sys.executable, "-m", "tunebench.cli.main", *_flags(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "TUNEBENCH_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _train_steps(log: Path) -> list[int]:
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e["step"] for e in events if e["event"] == "train_step"]


def _train_losses(log: Path) -> list[float]:
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e["loss"] for e in events if e["event"] == "train_step"]


def _kill_during_training(out: Path) -> int:
    """Start compare, wait for the LoRA run to pass its second checkpoint, SIGKILL it; the logged step."""
    log = out / "resume" / LORA / "log.jsonl"
    proc = subprocess.Popen(_cli(out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists():
                try:
                    steps = _train_steps(log)
                except json.JSONDecodeError:  # caught a line half-written
                    steps = []
                if steps and steps[-1] >= 50:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return steps[-1]
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed mid-training")


def test_a_killed_compare_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    whole = subprocess.run(_cli(tmp_path / "whole"), env=_env(), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr

    killed_at = _kill_during_training(tmp_path / "killed")
    exp = tmp_path / "killed" / "resume"
    assert 50 <= killed_at < 300
    assert not (exp / LORA / "result.json").exists()
    meta = json.loads((exp / LORA / "checkpoint" / "meta.json").read_text())
    assert meta["step"] % 20 == 0 and 40 <= meta["step"] <= killed_at
    zero_shot = exp / "tiny-llama--zero-shot--s0" / "result.json"
    stamp = zero_shot.stat().st_mtime_ns

    again = subprocess.run(_cli(tmp_path / "killed"), env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resuming from the checkpoint at step {meta['step']}" in again.stderr
    assert zero_shot.stat().st_mtime_ns == stamp  # the finished run of the grid was not redone
    resumed = json.loads((exp / LORA / "result.json").read_text())
    reference = json.loads((tmp_path / "whole" / "resume" / LORA / "result.json").read_text())
    assert resumed["status"] == "ok" and resumed["train"]["resumed_from"] == meta["step"]
    assert reference["train"]["resumed_from"] is None
    assert resumed["config_hash"] == reference["config_hash"]
    assert resumed["metrics"] == pytest.approx(reference["metrics"])
    assert resumed["train"]["final_loss"] == pytest.approx(reference["train"]["final_loss"], rel=1e-5)
    for key in ("steps", "examples", "tokens", "target_tokens", "max_width"):
        assert resumed["train"][key] == reference["train"][key], key
    # the log holds each step once: kept up to the checkpoint, then the resumed steps
    assert _train_steps(exp / LORA / "log.jsonl") == list(range(1, 301))
    losses = _train_losses(exp / LORA / "log.jsonl")
    assert losses == pytest.approx(
        _train_losses(tmp_path / "whole" / "resume" / LORA / "log.jsonl"), rel=1e-5
    )
    predictions = (exp / LORA / "predictions.jsonl").read_text()
    assert predictions == (tmp_path / "whole" / "resume" / LORA / "predictions.jsonl").read_text()
    assert not (exp / LORA / "checkpoint").exists()  # removed once the run finished


# --- determinism --------------------------------------------------------------------------------------

SMALL = [
    "compare",
    "--model",
    "tiny-llama",
    "--task-opt",
    "train_size=48",
    "--task-opt",
    "dev_size=8",
    "--task-opt",
    "test_size=12",
    "--task-opt",
    "digits=2",
    "--steps",
    "6",
    "--budget",
    "batch_size=8",
]


def test_same_spec_and_seed_give_the_same_results(tmp_path):
    for out in ("a", "b"):
        assert main([*SMALL, "--methods", "lora,full", "--out", str(tmp_path / out), "--name", "same"]) == 0
    for run in ("tiny-llama--lora--s0", "tiny-llama--full--s0"):
        a, b = (json.loads((tmp_path / o / "same" / run / "result.json").read_text()) for o in ("a", "b"))
        assert a["config_hash"] == b["config_hash"]
        assert a["metrics"] == b["metrics"] and a["ci95"] == b["ci95"]
        assert a["train"]["final_loss"] == pytest.approx(b["train"]["final_loss"], rel=1e-6)
        preds = [(tmp_path / o / "same" / run / "predictions.jsonl").read_text() for o in ("a", "b")]
        assert preds[0] == preds[1]


# --- failed runs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (ValueError("boom"), "ValueError: boom"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "lower batch_size"),
        ("nan", "the loss became nan at step 3; try a lower learning rate"),
    ],
)
def test_a_failed_run_is_recorded_kept_apart_and_the_grid_goes_on(tmp_path, monkeypatch, failure, reason):
    real_step = loop.accumulate_step
    calls = {"lora": 0}

    def failing_step(model, *args):
        if hasattr(model, "peft_config"):  # only the LoRA run fails, at its third step
            calls["lora"] += 1
            if calls["lora"] == 3:
                if failure == "nan":
                    return float("nan")
                raise failure
        return real_step(model, *args)

    monkeypatch.setattr(loop, "accumulate_step", failing_step)
    flags = [*SMALL, "--methods", "lora,full", "--budget", "checkpoint_every=1", "--out", str(tmp_path)]
    assert main([*flags, "--name", "fail"]) == 1
    exp = tmp_path / "fail"
    failed = json.loads((exp / LORA / "result.json").read_text())
    assert failed["status"] == "failed" and reason in failed["error"]
    apart = exp / LORA / failed["failed_files"]
    assert apart.name.startswith("failed-") and apart.is_dir()
    log = (apart / "log.jsonl").read_text()
    assert '"step": 2' in log and '"event": "error"' in log
    assert not (exp / LORA / "log.jsonl").exists()
    assert not (exp / LORA / "checkpoint").exists()  # a rerun starts clean
    assert json.loads((exp / "tiny-llama--full--s0" / "result.json").read_text())["status"] == "ok"

    # the next attempt redoes the failed run from the start; the failed attempt's files stay apart
    monkeypatch.setattr(loop, "accumulate_step", real_step)
    assert main([*flags, "--name", "fail"]) == 0
    again = json.loads((exp / LORA / "result.json").read_text())
    assert again["status"] == "ok" and again["train"]["resumed_from"] is None
    assert apart.is_dir() and sorted(p.name for p in (exp / LORA).glob("failed-*")) == [apart.name]
