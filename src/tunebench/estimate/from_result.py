"""Estimates derived from a run's result record (runs/record.py, schema 1): pure functions of the dict.

Two uses. The report asks `estimate_for_result(result, "7B", "A100-80GB")` to say what each method of a
comparison would cost at the size the user plans for. Calibration asks `estimate_run(result, device)`
for the estimate of the run as it ran here (same model, method options, batch, measured sequence
length, precision) to set beside the measured peak.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tunebench.core.errors import TunebenchError
from tunebench.core.typed import build
from tunebench.estimate.costs import method_cost
from tunebench.estimate.devices import Device, resolve_device
from tunebench.estimate.model import GIB, Estimate, Setting, estimate
from tunebench.estimate.shapes import resolve_arch
from tunebench.methods import METHODS
from tunebench.models.arch import Arch


def cost_options(method: str, recorded: dict[str, Any]) -> Any:
    """The method's options as the run recorded them (a key no longer among them is dropped)."""
    cost = method_cost(method)
    wanted = {f.name for f in dataclasses.fields(cost.Options)}
    return build(
        cost.Options, {k: v for k, v in recorded.items() if k in wanted}, f"recorded options of {method}"
    )


def run_setting(
    result: dict[str, Any], *, precision: str | None = None, tokens: float | None = None
) -> Setting:
    """The run's own setting: micro-batch, sequence length, the precision it trained in, and the loss
    positions (tunebench's target-only loss computes logits at the target tokens alone).

    The sequence length is the widest micro-batch the run padded to, where it was recorded: the peak
    comes with that batch, and with examples of uneven length (intents of 5 to 60 tokens) it is several
    times the mean. Runs that did not record it (TRL's, older results) use the mean tokens per example."""
    budget = result["config"]["budget"]
    train = result.get("train") or {}
    examples = train.get("examples") or 0
    seq = round(train["tokens"] / examples) if examples else budget.get("max_length", 256)
    seq = train.get("max_width") or seq
    targets = max(1, round(train["target_tokens"] / examples)) if examples else None
    if _full_forward(result["method"]):
        targets = None  # the method's loss runs the model's own forward: logits at every position
    if precision is None:
        precision = "mixed" if train.get("bf16") else "fp32"
    return Setting(
        seq_len=max(1, seq),
        # methods that do not train record only their inference budget: their batch is the evaluation's
        batch=budget.get("batch_size") or budget.get("eval_batch_size") or 8,
        grad_accum=budget.get("grad_accum", 1),
        precision=precision,
        tokens=tokens or float(train.get("tokens") or 1e6),
        logit_positions=targets,
    )


def run_arch(result: dict[str, Any]) -> Arch:
    """The run's model shapes: its folder's config.json when it is still there, else its name; with a
    classification head (`head: classifier`) in place of the LM head, over the task's labels."""
    path = result["config"].get("model_path")
    if path and (Path(path) / "config.json").exists():
        arch = dataclasses.replace(resolve_arch(path), name=result["model"])
    else:
        arch = resolve_arch(result["model"])
    if (result["config"].get("method") or {}).get("head") == "classifier":
        labels = (result.get("task_info") or {}).get("labels") or []
        arch = dataclasses.replace(arch, classes=max(2, len(labels)))
    return arch


def estimate_run(result: dict[str, Any], device: Device) -> Estimate:
    """The estimate of a run as it ran (for calibration against its measured peak)."""
    options = cost_options(result["method"], _recorded_options(result))
    return estimate(run_arch(result), result["method"], device, run_setting(result), options)


def estimate_for_result(result: dict[str, Any], target_model: str, target_device: str) -> dict[str, Any]:
    """What this run's method, with its options, batch and sequence length, would cost at `target_model`
    on `target_device` in mixed precision, for as many training tokens as the run processed.

    Returns a plain dict (for the report): target_model, target_device, method, available; when available,
    params, trainable, trainable_pct, peak_gib, peak_ckpt_gib, fits, fits_ckpt, device_gib, artifact_mb,
    flops_per_token, tokens, hours, hours_ckpt (None for a method that does not train), memory_gib
    (component → GiB). A method without a cost model, or whose options are impossible at the target size,
    gives available False and the reason; an unknown target size or device raises with the close matches.
    """
    arch = resolve_arch(target_model, flag="--target-model")
    device = resolve_device(target_device, flag="--target-device")
    out: dict[str, Any] = {
        "target_model": arch.name,
        "target_device": device.name,
        "method": result["method"],
    }
    if (
        result["method"] not in METHODS
    ):  # `lora+dpo`: an objective's phases (a reference model …) are not modelled
        return {**out, "available": False, "reason": f"no cost model for {result['method']!r}"}
    try:
        options = cost_options(result["method"], _recorded_options(result))
        setting = run_setting(result, precision="mixed")
        setting.logit_positions = None  # at scale, assume the usual loss over every position
        e = estimate(arch, result["method"], device, setting, options)
    except TunebenchError as err:  # the run's options are impossible at this size (rank above the width …)
        return {**out, "available": False, "reason": str(err)}

    trained = e.trains and e.seconds is not None  # no training, no training time
    return {**out, "available": True, "params": e.params, "trainable": e.trainable,
            "trainable_pct": 100.0 * e.trainable / e.params, "peak_gib": e.peak / GIB,
            "peak_ckpt_gib": e.peak_ckpt / GIB, "fits": e.fits, "fits_ckpt": e.fits_ckpt,
            "device_gib": device.memory_gib, "artifact_mb": e.artifact_bytes / 1e6,
            "flops_per_token": e.flops_per_token, "tokens": setting.tokens if trained else None,
            "hours": e.seconds / 3600 if trained and e.seconds is not None else None,
            "hours_ckpt": e.seconds_ckpt / 3600 if trained and e.seconds_ckpt is not None else None,
            "memory_gib": {k: v / GIB for k, v in e.memory.items()}}  # fmt: skip


def _recorded_options(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result["config"]["method"].items() if k != "name"}


def _full_forward(method: str) -> bool:
    """Whether the registered method declares that its loss needs the model's whole forward pass."""

    return method in METHODS and bool(getattr(METHODS.get(method), "full_forward", False))
