"""The run store: `<out>/<experiment>/<model>--<method>--s<seed>/`, one folder per run.

Files are written to a temporary name and renamed into place, so a reader never sees a half-written
`result.json`; the result is written last, and its presence with status "ok" and the same config hash
is what marks a run as finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from tunebench.errors import TunebenchError

RESULT = "result.json"
CONFIG = "config.json"
PREDICTIONS = "predictions.jsonl"
LOG = "log.jsonl"
ARTIFACT = "artifact"


def run_name(model: str, method: str, seed: int) -> str:
    return f"{model}--{method}--s{seed}"


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: Any) -> None:
    _write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_result(path: Path) -> dict[str, Any]:
    """A result record, or a clear error naming the file when it is damaged or not tunebench's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TunebenchError(f"{path}: not a readable result file ({e})") from None
    if not isinstance(data, dict) or "schema" not in data or "status" not in data:
        raise TunebenchError(f"{path}: not a tunebench result (no 'schema' and 'status' keys)")
    return data


def is_finished(folder: Path, digest: str) -> bool:
    path = folder / RESULT
    if not path.exists():
        return False
    try:
        result = read_result(path)
    except TunebenchError:
        return False  # damaged: redo the run
    return result.get("status") == "ok" and result.get("config_hash") == digest


def reset_run(folder: Path) -> None:
    """Clear what an earlier attempt left, before a run starts again."""
    for name in (RESULT, PREDICTIONS, LOG):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / ARTIFACT, ignore_errors=True)


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
