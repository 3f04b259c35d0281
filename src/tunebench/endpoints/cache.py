"""A disk cache of endpoint responses, keyed by a hash of (base URL, model, request), so a rerun is free.

One small JSON file per response under `<root>/<2 hex>/<hash>.json`, written to a temporary file in the
same folder and renamed into place: a killed run never leaves a half-written entry, and concurrent
writers of the same entry (the same request twice) both leave a whole one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tunebench.core.paths import cache_dir


def default_root() -> Path:
    """$TUNEBENCH_CACHE/teachers, else ~/.cache/tunebench/teachers."""
    return cache_dir() / "teachers"


def request_key(base_url: str, model: str, request: dict[str, Any]) -> str:
    payload = json.dumps(
        {"base_url": base_url.rstrip("/"), "model": model, "request": request}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or unreadable: asked again, and rewritten whole

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(value, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
