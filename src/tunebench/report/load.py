"""Read a runs folder: every `result.json` under it, with its predictions and training log.

This is the only part of the report that touches files. It refuses what would make a misleading report,
with a message naming the file: a folder with no results, a damaged `result.json`, results from
different tasks (different data), or two results for the same model, method and seed.
Failed runs are kept: the report shows them with their reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebench.core import store
from tunebench.core.errors import TunebenchError


class ReportError(TunebenchError):
    """The runs folder cannot be reported on; the message names the file and what is wrong."""


@dataclass
class RunData:
    """One run as the report sees it: the result record and what the run folder adds to it."""

    result: dict[str, Any]
    path: str = "<memory>"
    """The result file, for messages."""
    predictions: list[dict[str, Any]] | None = None
    """Rows of predictions.jsonl (input, target, prediction, answer, correct), None when absent."""
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) from log.jsonl."""

    @property
    def ok(self) -> bool:
        return self.result.get("status") == "ok"

    @property
    def correct(self) -> list[bool] | None:
        return None if self.predictions is None else [bool(r.get("correct")) for r in self.predictions]


#: Keys a finished run must carry for the report to use it.
_OK_KEYS = ("model", "method", "seed", "task", "primary_metric", "metrics", "params")


def load_runs(root: str | Path) -> list[RunData]:
    root = Path(root)
    if not root.is_dir():
        raise ReportError(
            f"{root}: no such folder (give the folder `tunebench compare` wrote, e.g. runs/default)"
        )
    paths = sorted(root.rglob(store.RESULT))
    if not paths:
        raise ReportError(
            f"{root}: no results here (expected <model>--<method>--s<seed>/{store.RESULT}; "
            "run `tunebench compare` first)"
        )
    runs = [_load_one(p) for p in paths]
    _check_one_task(runs)
    _check_no_duplicates(runs)
    return runs


def load_results(paths: list[Path]) -> list[RunData]:
    """The runs whose result files are `paths` (what one `compare` produced), with the same checks."""
    runs = [_load_one(Path(p)) for p in paths]
    if not runs:
        raise ReportError("no results to report on")
    _check_one_task(runs)
    _check_no_duplicates(runs)
    return runs


def _load_one(path: Path) -> RunData:
    result = store.read_result(path)  # names the file when it is damaged
    for key in ("model", "method", "seed", "task"):
        if key not in result:
            raise ReportError(f"{path}: not a tunebench result (no {key!r})")
    if result["status"] == "ok":
        missing = [k for k in _OK_KEYS if result.get(k) is None]
        if missing or result["primary_metric"] not in result["metrics"]:
            raise ReportError(
                f"{path}: status is ok but {', '.join(missing) or 'the primary metric'} is missing"
            )
    folder = path.parent
    return RunData(
        result=result,
        path=str(path),
        predictions=_read_jsonl(folder / store.PREDICTIONS) if result["status"] == "ok" else None,
        losses=_read_losses(folder / store.LOG),
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ReportError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return rows


def _read_losses(path: Path) -> list[tuple[int, float]]:
    """Training losses from the log; a damaged line (a run killed mid-write) ends the curve there."""
    if not path.exists():
        return []
    losses = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                break
            if event.get("event") == "train_step":
                losses.append((int(event["step"]), float(event["loss"])))
    return losses


def task_key(result: dict[str, Any]) -> tuple[str, str | None]:
    """A task is its name and its data: two arithmetic tasks with other digits are different tasks."""
    config = result.get("config") or {}
    return result["task"], (config.get("task") or {}).get("data_fingerprint")


def _check_one_task(runs: list[RunData]) -> None:
    first: dict[tuple, RunData] = {}
    for run in runs:
        first.setdefault(task_key(run.result), run)
    if len(first) > 1:
        lines = [f"  {r.path}: task {k[0]} (data {k[1] or 'unknown'})" for k, r in first.items()]
        raise ReportError(
            "these results are from different tasks, and a leaderboard compares one task; report one "
            "experiment folder at a time:\n" + "\n".join(lines)
        )


def _check_no_duplicates(runs: list[RunData]) -> None:
    seen: dict[tuple, str] = {}
    for run in runs:
        r = run.result
        size = (r.get("data_size") or {}).get("tag")  # a training-set size: one result per size
        key = (r["model"], r["method"], r["seed"], size)
        if key in seen:
            where = f" · {size}" if size else ""
            raise ReportError(
                f"two results for {r['model']} · {r['method']}{where} · seed {r['seed']}: {seen[key]} and {run.path}; "
                "report one experiment folder at a time"
            )
        seen[key] = run.path
