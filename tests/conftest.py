"""Shared fixtures. Tests use tiny random models built locally (no network); real models are marked slow."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs in the test process: the default executor starts a process per run (seconds of imports each),
# which tests/test_process_executor.py covers on its own.
os.environ.setdefault("TUNEBENCH_EXECUTOR", "local")


@pytest.fixture(scope="session")
def tiny_llama():
    from tunebench.models import resolve_model

    return resolve_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_bert():
    from tunebench.models import resolve_model

    return resolve_model("tiny-bert")
