"""Errors a user can act on. Each names the file, line, field or flag at fault and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TunebenchError(Exception):
    """Base class: the CLI prints these as one clear message, without a traceback."""


class SpecError(TunebenchError):
    """The experiment spec (YAML or flags) is invalid. Nothing is written for such a spec."""


class DataError(TunebenchError):
    """A data file cannot be used as a task."""


class UnknownNameError(SpecError):
    """A model, task or method name is not registered (a spec error: the name came from the spec)."""


class StoreError(TunebenchError):
    """The run store cannot be written (permissions, a full disk); finished runs and checkpoints are kept."""


class UnsupportedError(TunebenchError):
    """A method cannot run on this task or model; the message says why."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choices, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
