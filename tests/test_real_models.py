"""A few checks on the real packaged models (slow: they load a 135M-parameter model)."""

from __future__ import annotations

import json

import pytest

from tunebench.cli.main import main

pytestmark = pytest.mark.slow


def test_smollm2_lora_run_end_to_end(tmp_path):
    """Prepared once into the cache, loaded, trained a few steps, evaluated, exported as a PEFT adapter."""
    code = main(
        [
            "compare",
            "--model",
            "smollm2-135m",
            "--methods",
            "zero-shot,lora",
            "--steps",
            "3",
            "--task-opt",
            "train_size=48",
            "--task-opt",
            "dev_size=4",
            "--task-opt",
            "test_size=8",
            "--budget",
            "batch_size=8",
            "--out",
            str(tmp_path),
            "--name",
            "real",
        ]
    )
    assert code == 0
    run = tmp_path / "real" / "smollm2-135m--lora--s0"
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "ok"
    # LoRA r=16 on every linear layer of SmolLM2-135M: 30 blocks × 16 × Σ(d_in + d_out) over q,k,v,o,gate,up,down
    per_block = 16 * ((576 + 576) + (576 + 192) * 2 + (576 + 576) + (576 + 1536) * 2 + (1536 + 576))
    assert result["params"]["trainable"] == 30 * per_block
    assert result["params"]["total"] == 134_515_008 + 30 * per_block
    assert (run / "artifact" / "adapter_model.safetensors").stat().st_size > 1_000_000
    zero = json.loads((tmp_path / "real" / "smollm2-135m--zero-shot--s0" / "result.json").read_text())
    assert zero["params"] == {"trainable": 0, "total": 134_515_008, "trainable_pct": 0.0}
