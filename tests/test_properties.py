"""Property-based tests (hypothesis): the spec parser and the data loaders, on generated input.

Valid specs survive a round trip through YAML; junk gives a SpecError (never another exception type); any
data file either loads or raises a DataError that names the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunebench.config import SPEC_KEYS, load_yaml, parse_spec
from tunebench.core.errors import DataError, SpecError
from tunebench.methods import METHODS
from tunebench.tasks import build_task

PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True)
model_names = st.lists(
    st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True), min_size=1, max_size=3, unique=True
)
positive = st.floats(min_value=1e-6, max_value=10.0, allow_nan=False, allow_infinity=False)
budgets = st.fixed_dictionaries(
    {},
    optional={
        "steps": st.integers(1, 10_000),
        "epochs": st.none() | st.floats(0.1, 50.0),
        "batch_size": st.integers(1, 512),
        "grad_accum": st.integers(1, 16),
        "max_length": st.integers(8, 4096),
        "lr": positive,
        "warmup": st.floats(0.0, 0.99),
        "weight_decay": st.floats(0.0, 1.0),
        "precision": st.sampled_from(["auto", "bf16", "fp32"]),
        "lr_grid": st.lists(positive, max_size=4, unique=True),
        "lr_search": st.sampled_from(["grid", "halving"]),
        "dev_every": st.integers(0, 100),
        "checkpoint_every": st.integers(0, 1000),
    },
)


@st.composite
def methods(draw):
    chosen = draw(st.lists(st.sampled_from(list(METHODS)), min_size=1, max_size=4, unique=True))
    out = []
    for name in chosen:
        overrides = draw(st.fixed_dictionaries({}, optional={"steps": st.integers(1, 500), "lr": positive}))
        out.append({"name": name, **overrides} if overrides else name)
    return out


valid_specs = st.fixed_dictionaries(
    {"models": model_names, "methods": methods()},
    optional={
        "name": names,
        "task": st.sampled_from(["arithmetic", {"name": "arithmetic", "digits": 4, "op": "mul"}]),
        "seeds": st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True),
        "budget": budgets,
        "out": names,
    },
)


@PROFILE
@given(valid_specs)
def test_valid_specs_round_trip_through_yaml(data):
    spec = parse_spec(data)
    again = parse_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict(), sort_keys=False)))
    assert again.to_dict() == spec.to_dict()
    assert [m.budget for m in again.methods] == [m.budget for m in spec.methods]
    assert again.seeds == spec.seeds and again.models == spec.models


junk_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
budget_junk = st.dictionaries(
    st.sampled_from(["steps", "lr", "warmup", "lr_grid", "epochs", "stepz"]), junk_values
)


@PROFILE
@given(
    st.dictionaries(
        st.sampled_from([*SPEC_KEYS, "budgt", "model"]) | st.text(max_size=6), junk_values | budget_junk
    )
)
def test_junk_specs_give_a_spec_error_and_nothing_else(data):
    with contextlib.suppress(SpecError):  # any other exception fails the test
        parse_spec(data)


@PROFILE
@given(valid_specs, st.sampled_from(["models", "methods", "seeds", "budget", "task", "name"]), junk_values)
def test_one_junk_value_in_a_valid_spec_gives_a_spec_error_or_parses(data, key, value):
    with contextlib.suppress(SpecError):
        parse_spec({**data, key: value})


@PROFILE
@given(st.text(max_size=200))
def test_any_yaml_text_loads_or_gives_a_spec_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "exp.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            parse_spec(load_yaml(path), str(path))
        except SpecError as e:
            assert str(path) in str(e) or ": " in str(e)


# --- data loaders ---------------------------------------------------------------------------------------

cells = st.text(max_size=20) | st.integers().map(str) | st.sampled_from(['"', ",", "\t", "\n", "\u2028", "é"])
json_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=15)
    | st.lists(st.integers(), max_size=2)
)


def _load(path: Path) -> None:
    try:
        task = build_task("file", {"path": str(path), "input": "text", "target": "label"})
    except DataError as e:
        assert str(e).startswith(str(path)), str(e)
        return
    splits = task.splits()
    assert splits.train and splits.dev and splits.test


@PROFILE
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["text", "label", "other"]), json_values, max_size=3)
        | json_values
        | st.text(max_size=30),
        max_size=25,
    )
)
def test_any_jsonl_loads_or_names_the_file(rows):
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        _load(path)


@PROFILE
@given(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=25), st.sampled_from([",", "\t"]))
def test_any_csv_loads_or_names_the_file(rows, delimiter):
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows([["text", "label"], *rows])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("data.csv" if delimiter == "," else "data.tsv")
        path.write_text(buf.getvalue(), encoding="utf-8")
        _load(path)


@PROFILE
@given(st.binary(max_size=300), st.sampled_from(["data.jsonl", "data.csv", "data.tsv"]))
def test_any_bytes_load_or_name_the_file(raw, name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(raw)
        _load(path)
