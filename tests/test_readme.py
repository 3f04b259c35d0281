"""The README's methods table is checked against the registry: every registered method is in it, with its
access level and its own options, so the table cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from tunebench.core.typed import field_names
from tunebench.methods import METHODS
from tunebench.methods.tuning import ModelOptions

README = Path(__file__).resolve().parents[1] / "README.md"
#: Options every method that runs a model takes; the README says so once, under the table.
SHARED = set(field_names(ModelOptions))


def methods_table() -> list[list[str]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| method | updates | access | options (besides budget overrides) |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_readme_methods_table_matches_the_registry():
    rows = methods_table()
    listed: dict[str, list[str]] = {}
    for names_cell, _updates, access, options_cell in rows:
        names = re.findall(r"`([^`]+)`", names_cell)
        same_as = re.fullmatch(r"as `([^`]+)`", options_cell)
        options = set(listed[same_as.group(1)]) if same_as else set(re.findall(r"`([^`]+)`", options_cell))
        for name in names:
            assert name in METHODS, f"README lists {name!r}, which is not a registered method"
            assert METHODS.get(name).access == access, f"{name}: README says {access!r}"
            listed[name] = sorted(options)
        own = set().union(*(set(field_names(METHODS.get(n).Options)) - SHARED for n in names))
        assert options == own, f"README row {names}: options {sorted(options)}, the code has {sorted(own)}"
    # tunebench's own methods (other tests register stand-ins such as a crashing worker)
    missing = sorted(
        n for n, cls in METHODS.items() if cls.__module__.startswith("tunebench.") and n not in listed
    )
    assert not missing, f"registered methods missing from the README's table: {missing}"
