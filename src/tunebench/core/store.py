"""The run store: `<out>/<experiment>/<model>--<method>--s<seed>/`, one folder per run.

Files are written to a temporary name and renamed into place, so a reader never sees a half-written
`result.json`; the result is written last, and its presence with status "ok" and the same config hash
is what marks a run as finished. While a run trains, `checkpoint/` holds its resume state (removed when
the run finishes). What a failed attempt left (log, predictions, a partial artifact) is moved into
`failed-<UTC time>/` beside the failed `result.json`, so that the next attempt starts clean and the
evidence stays. A write that fails (no permission, a full disk) is a StoreError naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from tunebench.core.errors import StoreError, TunebenchError

RESULT = "result.json"
CONFIG = "config.json"
PREDICTIONS = "predictions.jsonl"
LOG = "log.jsonl"
ARTIFACT = "artifact"
PARTIAL_ARTIFACT = f".{ARTIFACT}.partial"
CHECKPOINT = "checkpoint"
FAILED = "failed-"
#: Result schema versions this tunebench reads (runs/record.py writes the newest).
SCHEMAS = (1,)


def run_name(model: str, method: str, seed: int, size: str | None = None) -> str:
    """The run's folder name; `size` is its training-set size's tag (n100, 10-per-class) when the
    experiment varies it. A composed method's ':' (`lora+distill:orca`) becomes '-': ':' is not allowed
    in Windows file names and reads as a path list separator elsewhere."""
    return f"{model}--{safe_name(method)}--{f'{size}--' if size else ''}s{seed}"


def record_run_name(record: dict[str, Any]) -> str:
    """The folder name of the run a result record belongs to."""
    size = (record.get("data_size") or {}).get("tag")
    return run_name(record["model"], record["method"], record["seed"], size)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "-", name)


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: Any) -> None:
    _write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, text)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {e.strerror or e}{write_hint(e)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_hint(e: OSError) -> str:
    """What the user can do about a failed write."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            "; the disk is full: free some space and run the same command again (finished runs are kept "
            "and an interrupted one resumes from its checkpoint)"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return "; choose a writable folder with --out"
    return ""


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, StoreError) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))


def check_writable(folder: Path) -> None:
    """Fail early, without creating anything, when `folder` cannot be created or written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(
            f"cannot write to the output folder {folder}: {existing} is a file; choose another --out"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot write to the output folder {folder}: {existing} is not writable; choose another --out"
        )


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create {folder}: {e.strerror or e}{write_hint(e)}") from None


def read_result(path: Path) -> dict[str, Any]:
    """A result record, or a clear error naming the file when it is damaged or not tunebench's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TunebenchError(
            f"{path}: not a readable result file ({e}); delete it, or run the same `tunebench compare` "
            "again, which redoes that run"
        ) from None
    if not isinstance(data, dict) or "schema" not in data or "status" not in data:
        raise TunebenchError(f"{path}: not a tunebench result (no 'schema' and 'status' keys); move it away")
    if data["schema"] not in SCHEMAS:
        raise TunebenchError(
            f"{path}: result schema {data['schema']!r}, but this tunebench reads schema "
            f"{', '.join(map(str, SCHEMAS))} (written by another version?)"
        )
    if data["status"] not in ("ok", "failed"):
        raise TunebenchError(f"{path}: status {data['status']!r}, expected 'ok' or 'failed'")
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


def find_finished(roots: list[Path], name: str, digest: str, exclude: Path) -> Path | None:
    """A run folder named `name` that finished with identity `digest` in an experiment under one of `roots`
    (a runs folder, a shared run cache), other than `exclude`; None when there is none."""
    for root in roots:
        for folder in sorted(root.glob(f"*/{name}")):
            if folder.resolve() != exclude.resolve() and is_finished(folder, digest):
                return folder
    return None


def copy_run(source: Path, folder: Path) -> None:
    """A finished run's files into `folder` (its artifact hard-linked where the file system allows, else
    copied); the caller writes result.json last."""
    make_folder(folder)
    reset_run(folder)
    for name in (PREDICTIONS, LOG):
        if (source / name).exists():
            shutil.copy2(source / name, folder / name)
    partial = folder / PARTIAL_ARTIFACT
    shutil.rmtree(partial, ignore_errors=True)
    if (source / ARTIFACT).is_dir():
        shutil.copytree(source / ARTIFACT, partial, copy_function=_link_or_copy)
        shutil.rmtree(folder / ARTIFACT, ignore_errors=True)
        partial.rename(folder / ARTIFACT)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # no second copy of a full model's weights
    except OSError:
        shutil.copy2(src, dst)


def reset_run(folder: Path) -> None:
    """Clear what an earlier attempt left, before a run starts again from the beginning."""
    for name in (RESULT, PREDICTIONS, LOG):
        (folder / name).unlink(missing_ok=True)
    for name in (ARTIFACT, PARTIAL_ARTIFACT):
        shutil.rmtree(folder / name, ignore_errors=True)


def reset_for_resume(folder: Path, step: int) -> None:
    """Before resuming from the checkpoint at `step`: clear the outputs, and cut the log back to that step
    (the steps logged after it were lost with the process and will be done again)."""
    for name in (RESULT, PREDICTIONS):
        (folder / name).unlink(missing_ok=True)
    for name in (ARTIFACT, PARTIAL_ARTIFACT):
        shutil.rmtree(folder / name, ignore_errors=True)
    log = folder / LOG
    if not log.exists():
        return
    kept = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            break  # the line a kill cut in half, and anything after it
        if not isinstance(event, dict) or int(event.get("step") or 0) <= step:
            kept.append(line + "\n")
    kept.append(json.dumps({"event": "resume", "step": step, "time": time.time()}) + "\n")
    _write_atomic(log, "".join(kept))


def keep_apart(folder: Path) -> str | None:
    """Move what a failed attempt left into `failed-<UTC time>/`; its name, or None when nothing was left."""
    present = [n for n in (LOG, PREDICTIONS, ARTIFACT, PARTIAL_ARTIFACT) if (folder / n).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest, n = folder / f"{FAILED}{stamp}", 1
    while dest.exists():  # two failures within a second
        n += 1
        dest = folder / f"{FAILED}{stamp}-{n}"
    dest.mkdir()
    for name in present:
        os.replace(folder / name, dest / name.lstrip("."))
    return dest.name


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
