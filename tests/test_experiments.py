"""Every shipped experiment spec parses and validates as it is (a spec that drifted from the code fails here,
not on a user's machine an hour into a run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebench.config import default_spec_path, load_yaml, parse_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = [*sorted((ROOT / "experiments").glob("*.yaml")), default_spec_path()]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_shipped_spec_validates(path):
    spec = parse_spec(load_yaml(path), source=str(path))
    assert spec.methods and spec.models
    for method in spec.methods:  # every training method ends with a concrete recipe
        if method.budget.lr is not None:
            assert method.budget.lr > 0 and method.budget.warmup is not None


def test_there_are_shipped_specs():
    assert len(SPECS) >= 5
