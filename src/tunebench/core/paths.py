"""Where tunebench keeps what it computes once and reuses: prepared models, features, drift references,
endpoint responses."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of tunebench's caches: $TUNEBENCH_CACHE, else ~/.cache/tunebench."""
    root = os.environ.get("TUNEBENCH_CACHE") or Path.home() / ".cache" / "tunebench"
    return Path(root)
