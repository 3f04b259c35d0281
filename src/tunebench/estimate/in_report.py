"""The estimator inside a comparison's report: estimate beside measurement, and the cost at scale.

The report knows nothing of the estimator; it takes extra columns (`report.data.Column`) and a sentence
for its recommendation. This module makes them:

- "est. peak": the memory model's estimate of each run as it ran here (same shapes, options, batch,
  measured tokens per example), to set beside the measured "memory" column. On a CPU the device is
  `devices.cpu_device()` (the process baseline as overhead); on a GPU, the allocator's counters,
  which see tensors only, so no overhead.
- "at 7B · A100-80GB" (with `--target-model 7B --target-device A100-80GB`): the estimated peak of each
  method, with its options and batch, at the target size, and whether it fits (with gradient
  checkpointing when it fits only so).
- `InReport.add_sentence`: what the recommended method (and the one training the most weights) would cost at
  that size, for the recommendation.
"""

from __future__ import annotations

from typing import Any

from tunebench.core.errors import TunebenchError
from tunebench.estimate.devices import Device, cpu_device, resolve_device
from tunebench.estimate.from_result import estimate_for_result, estimate_run
from tunebench.estimate.shapes import resolve_arch
from tunebench.methods import METHODS
from tunebench.report import fmt
from tunebench.report.data import Column, ReportData
from tunebench.report.table import Entry

MB = 2**20
CALIBRATION_COLUMN = "est. peak"


class InReport:
    """The estimator's columns for one report, and its sentence on scale.

    Built before the comparison runs, so that an unknown target size or device fails at once (with the
    close matches) rather than after an hour of training.
    """

    def __init__(self, target_model: str | None = None, target_device: str = "A100-80GB") -> None:
        self.target_model, self.target_device = target_model, target_device
        self.arch = resolve_arch(target_model, flag="--target-model") if target_model else None
        self.device = resolve_device(target_device, flag="--target-device") if target_model else None
        self._at_scale: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def scale_column(self) -> str | None:
        return f"at {self.arch.name} · {self.device.name}" if self.arch and self.device else None

    def columns(self) -> dict[str, Column]:
        """The calibration estimate always; the cost at scale when a target was given."""
        out: dict[str, Column] = {CALIBRATION_COLUMN: _calibration_cell}
        if self.scale_column:
            out[self.scale_column] = self._scale_cell
        return out

    def _scale_cell(self, entry: Entry, results: list[dict[str, Any]]) -> str | None:
        result = next((r for r in results if r.get("status") == "ok"), None)
        if result is None:
            return None
        assert self.target_model is not None  # the column exists only with a target
        est = estimate_for_result(result, self.target_model, self.target_device)
        if not est.get("available"):
            return None
        self._at_scale[(entry.model, entry.method)] = est
        return _fit_cell(est)

    def add_sentence(self, report: ReportData) -> None:
        """Tell, in the recommendation, what the recommended method (and full fine-tuning, when it was
        compared) would cost at the target size. Call after the report was built with `columns()`."""
        best = report.recommendation.best
        if best is None or not self.arch or not self.device:
            return
        # the best, the first method tied with it, and the one that trains the most weights (full
        # fine-tuning, when it was compared): the choices a reader weighs
        rec = report.recommendation
        trained = [e for e in report.entries if e.ok and e.trainable]
        costliest = [max(trained, key=lambda e: e.trainable or 0)] if trained else []
        shown = list({id(e): e for e in [best, *rec.runners_up[:1], *costliest]}.values())
        parts = []
        for e in shown:
            est = self._at_scale.get((e.model, e.method))
            if est is None:
                continue
            text = f"{e.method} would need about {_gib(est['peak_gib'])} at peak"
            if est["fits"]:
                text += " (fits)"
            elif est["fits_ckpt"]:
                text += f" ({_gib(est['peak_ckpt_gib'])} with gradient checkpointing, which fits)"
            else:
                text += f" (more than the {_gib(est['device_gib'])} of one device)"
            if est["trainable"]:
                text += f", training {fmt.share(est['trainable_pct'])} of {est['params'] / 1e9:.3g}B weights"
            parts.append(text)
        if parts:
            report.recommendation.at_scale = (
                f"At {self.arch.name} on {self.device.name} (estimated, same options and batch): "
                + "; ".join(parts)
                + "."
            )


# -- cells ----------------------------------------------------------------------------------------------


def _calibration_cell(entry: Entry, results: list[dict[str, Any]]) -> str | None:
    """The estimate of the first finished seed as it ran (seeds share shapes and options)."""
    result = next((r for r in results if r.get("status") == "ok" and r.get("train")), None)
    if result is None or result["method"] not in METHODS:
        return None
    try:
        est = estimate_run(result, _device_of(result))
    except (TunebenchError, KeyError, OSError):  # a run too old for the record's fields, a model gone
        return None
    return fmt.mem_mb(est.peak / MB)


def _device_of(result: dict[str, Any]) -> Device:
    train = result.get("train") or {}
    if train.get("peak_gpu_mb") is not None:
        # torch.cuda.max_memory_allocated: tensors only, no context; memory size irrelevant to the peak
        return Device("cuda (this run)", 1e6, None, None, overhead_gib=0.0)
    return cpu_device()


def _fit_cell(est: dict[str, Any]) -> str:
    if est["fits"]:
        return f"{_gib(est['peak_gib'])} ✓"
    if est["fits_ckpt"]:
        return f"{_gib(est['peak_ckpt_gib'])} ✓ ckpt"
    return f"{_gib(est['peak_gib'])} ✗"


def _gib(value: float) -> str:
    return f"{value:,.0f} GiB" if value >= 10 else f"{value:.1f} GiB"


__all__ = ["CALIBRATION_COLUMN", "InReport"]
