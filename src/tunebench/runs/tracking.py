"""Experiment trackers: where each finished run is also logged (`--tracker none|mlflow`).

A tracker sees a run when it is over: its result record and its run folder, whose log.jsonl holds the
loss of every training step and the dev scores, each with its time. So the runner needs no tracker code,
a run on a Ray worker is logged by the driver like a local one, and a run that died is logged too (as
failed). Each record is logged once: a later `compare` that reuses a finished run does not log it again,
and one that finds a run finished without a tracker logs it then.

MLflow: one MLflow experiment per tunebench experiment, one MLflow run per run folder, with
  params     the run's config, flattened (budget.lr, task.digits, method.r, …)
  metrics    train/loss and dev/score per step (with the times they were measured), then the final
             figures: test/<metric>, test/ci95_low|high, train/seconds, train/tokens_per_s, params/trainable,
             eval/ms_per_example, latency/ms_per_example, drift/nll_increase, wall_seconds, …
  tags       tunebench.status, tunebench.error, tunebench.config_hash, tunebench.record_id
  artifact   result.json (the record)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from tunebench.core import store
from tunebench.core.errors import SpecError, TunebenchError, did_you_mean
from tunebench.core.ui import console

TRACKERS = ("none", "mlflow")


class Tracker(Protocol):
    def log_run(self, record: dict[str, Any], folder: Path) -> None: ...


def make_tracker(name: str, uri: str | None, exp_dir: Path, experiment: str) -> Tracker | None:
    """The tracker `--tracker` names (None for none); `uri` defaults to a file store `<out>/mlruns`."""
    if name == "none":
        if uri:
            raise SpecError("--tracking-uri is given but --tracker is none; add --tracker mlflow")
        return None
    if name != "mlflow":
        raise SpecError(
            f"--tracker {name!r}: unknown tracker.{did_you_mean(name, TRACKERS)} Known: none, mlflow"
        )
    return MlflowTracker(uri or (exp_dir.parent / "mlruns").resolve().as_uri(), experiment)


def require_mlflow():
    try:
        import mlflow  # noqa: F401 (lazy: optional extra (mlflow-skinny))
        from mlflow.tracking import MlflowClient  # lazy: optional extra (mlflow-skinny)
    except ImportError:
        raise TunebenchError(
            "--tracker mlflow needs MLflow, which is not installed: pip install 'tunebench[mlflow]'"
        ) from None
    return MlflowClient


class MlflowTracker:
    def __init__(self, uri: str, experiment: str) -> None:
        client_cls = require_mlflow()
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 keeps the file store in maintenance mode and refuses it unless told; it is the one
            # backend that needs no server and no database driver, so the default store opts in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = uri
        try:
            self.client = client_cls(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        except Exception as e:  # checked before the first run, so that a bad URI costs nothing
            raise TunebenchError(
                f"--tracking-uri {uri}: MLflow cannot use it ({type(e).__name__}: {e})"
            ) from None

    def log_run(self, record: dict[str, Any], folder: Path) -> None:
        """Log one finished (or failed) run, unless this very record was logged before."""
        record_id = _record_id(record)
        try:
            if self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`tunebench.record_id` = '{record_id}'"
            ):
                return
            self._log(record, folder, record_id)
        except Exception as e:  # the run itself is safe in the run store; say so and go on
            console.print(f"  [yellow]MLflow ({self.uri}) did not take {folder.name}:[/yellow] {e}")

    def _log(self, record: dict[str, Any], folder: Path, record_id: str) -> None:
        from mlflow.entities import Metric, Param, RunTag  # lazy: optional extra (mlflow-skinny)

        steps, dev = _curves(folder / store.LOG)
        end_ms = (
            int(1000 * (folder / store.RESULT).stat().st_mtime) if (folder / store.RESULT).exists() else None
        )
        end_ms = end_ms or int(1000 * time.time())
        start_ms = end_ms - int(1000 * (record.get("wall_seconds") or 0))
        run = self.client.create_run(
            self.experiment_id,
            run_name=folder.name,
            start_time=start_ms,
            tags={
                "tunebench.record_id": record_id,
                "tunebench.status": record["status"],
                "tunebench.config_hash": str(record.get("config_hash")),
                "tunebench.error": str(record.get("error") or "")[:5000],
                "tunebench.run_folder": str(folder),
            },
        )
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(record.get("config") or {}).items()]
        metrics = [Metric("train/loss", loss, ms, step) for step, loss, ms in steps]
        metrics += [Metric("dev/score", score, ms, step) for step, score, ms in dev]
        metrics += [Metric(k, v, end_ms, 0) for k, v in final_metrics(record).items()]
        for i in range(0, len(params), 100):  # MLflow's limits per batch: 100 params, 1000 metrics
            self.client.log_batch(run_id, params=params[i : i + 100])
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
        self.client.log_batch(run_id, tags=[RunTag("tunebench.experiment", str(record.get("experiment")))])
        self.client.log_dict(run_id, record, "result.json")
        status = "FINISHED" if record["status"] == "ok" else "FAILED"
        self.client.set_terminated(run_id, status=status, end_time=end_ms)


def _record_id(record: dict[str, Any]) -> str:
    """Names one execution of a run: its config, when its environment was read, how long it took."""
    key = [record.get("config_hash"), (record.get("env") or {}).get("time"), record.get("wall_seconds")]
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:16]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"budget": {"lr": 0.001}} → {"budget.lr": "0.001"}; lists as JSON; values cut to MLflow's 6000."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, list | tuple | type(None) | bool) else str(value)
            out[name] = text[:6000]
    return out


#: Final figures taken from the record: (section, key) → MLflow metric name.
_FINAL = {
    ("train", "seconds"): "train/seconds",
    ("train", "steps"): "train/steps",
    ("train", "tokens"): "train/tokens",
    ("train", "tokens_per_s"): "train/tokens_per_s",
    ("train", "final_loss"): "train/final_loss",
    ("train", "peak_rss_mb"): "train/peak_rss_mb",
    ("train", "peak_gpu_mb"): "train/peak_gpu_mb",
    ("params", "trainable"): "params/trainable",
    ("params", "total"): "params/total",
    ("params", "trainable_pct"): "params/trainable_pct",
    ("eval", "ms_per_example"): "eval/ms_per_example",
    ("eval", "peak_rss_mb"): "eval/peak_rss_mb",
    ("latency", "ms_per_example"): "latency/ms_per_example",
    ("latency", "merged_ms_per_example"): "latency/merged_ms_per_example",
    ("drift", "nll_increase"): "drift/nll_increase",
    ("artifact", "bytes"): "artifact/bytes",
}


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    out = {f"test/{k}": float(v) for k, v in (record.get("metrics") or {}).items() if _number(v)}
    if record.get("ci95"):
        out["test/ci95_low"], out["test/ci95_high"] = map(float, record["ci95"])
    for (section, key), name in _FINAL.items():
        value = (record.get(section) or {}).get(key)
        if _number(value):
            out[name] = float(value)
    if _number(record.get("wall_seconds")):
        out["wall_seconds"] = float(record["wall_seconds"])
    return out


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _curves(log: Path) -> tuple[list[tuple[int, float, int]], list[tuple[int, float, int]]]:
    """(step, train loss, ms) and (step, dev score, ms) from a run's log.jsonl; the last value of a step
    wins (a resumed run logs the steps after its checkpoint again)."""
    losses: dict[int, tuple[float, int]] = {}
    dev: dict[int, float] = {}
    if not log.exists():
        return [], []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: the record is what counts
        if not isinstance(event, dict):
            continue
        if event.get("event") == "train_step" and _number(event.get("loss")):
            losses[int(event["step"])] = (float(event["loss"]), int(1000 * event.get("time", time.time())))
        elif event.get("event") == "dev_eval" and _number(event.get("score")):
            dev[int(event["step"])] = float(event["score"])
    now = int(1000 * time.time())
    steps = [(s, loss, ms) for s, (loss, ms) in sorted(losses.items())]
    curve = [(s, score, losses.get(s, (0.0, now))[1]) for s, score in sorted(dev.items())]
    return steps, curve
