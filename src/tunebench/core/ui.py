"""Terminal output: one rich Console for the whole program, and quiet stand-ins for tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

# Progress goes to stderr so that `tunebench ... > file` captures only results.
console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("TUNEBENCH_NO_PROGRESS") is None


@contextmanager
def stage(message: str) -> Iterator[None]:
    """A spinner with elapsed time for a step that has no natural progress count."""
    if interactive():
        with console.status(message):
            yield
    else:
        console.print(f"[dim]…[/dim] {message}")
        yield
