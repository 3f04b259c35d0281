"""Shared fixtures. Tests use tiny random models built locally (no network); real models are marked slow."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_llama():
    from tunebench.models import resolve_model

    return resolve_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_bert():
    from tunebench.models import resolve_model

    return resolve_model("tiny-bert")
