"""A model's identity by content: a hash of its folder's files (weights, config, tokenizer).

Part of a run's identity (runs/grid.py): the same weights under another name or path are the same model,
and weights changed in place are another one. Hashing a 500 MB folder takes about a second, so the digest
is kept beside the files (`.tunebench-fingerprint.json`) with each file's size and modification time, and
recomputed only when one of them changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.models.zoo import ResolvedModel

if TYPE_CHECKING:
    import torch

FINGERPRINT = ".tunebench-fingerprint.json"
_CHUNK = 1 << 20
#: folder → (its files' sizes and times, digest), for this process.
_KNOWN: dict[str, tuple[dict[str, list[int]], str]] = {}


def fingerprint(model: ResolvedModel) -> str:
    """sha256 (first 16 hex digits) of the model folder's files; for a hub id or an endpoint, its name
    (their content is not here to hash: the id is the identity)."""
    folder = Path(model.path)
    if model.kind == "endpoint" or not folder.is_dir():
        return f"{model.kind}:{model.path}"
    return _folder_digest(str(folder.resolve()))


def loaded_weights_key(model: ResolvedModel, module: torch.nn.Module) -> list[Any]:
    """What changes the hidden states of a loaded model besides its inputs, for keying caches of them (the
    probe's pooled features, the frozen blocks' outputs): the folder, its weights file's modification
    time, the parameters' dtypes and the quantization config. Cheaper than `fingerprint` (no hashing),
    which is enough for a cache on this machine."""
    weights = Path(model.path) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.exists() else 0
    quantization = getattr(getattr(module, "config", None), "quantization_config", None)
    if quantization is not None and not isinstance(quantization, dict):
        quantization = quantization.to_dict()
    dtypes = sorted({str(p.dtype) for p in module.parameters()})
    return [model.path, stamp, dtypes, quantization]


def _folder_digest(path: str) -> str:
    folder = Path(path)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    stats = {str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    known = _KNOWN.get(path)  # a grid asks for every cell: read the kept digest once per process
    if known is not None and known[0] == stats:
        return known[1]
    kept = _read(folder / FINGERPRINT)
    if kept.get("files") == stats and kept.get("digest"):
        _KNOWN[path] = (stats, str(kept["digest"]))
        return str(kept["digest"])
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(folder)).encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    value = digest.hexdigest()[:16]
    _KNOWN[path] = (stats, value)
    with contextlib.suppress(OSError):  # a read-only model folder is fine: recomputed next time
        (folder / FINGERPRINT).write_text(json.dumps({"files": stats, "digest": value}))
    return value


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
