"""`tunebench estimate` as a library call: names and KEY=VALUE strings in, estimates out."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from tunebench.errors import SpecError, did_you_mean
from tunebench.estimate.costs import METHOD_COSTS, method_cost, method_options
from tunebench.estimate.devices import Device, resolve_device
from tunebench.estimate.model import Estimate, Setting, estimate
from tunebench.estimate.shapes import Arch, resolve_arch

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str, flag: str) -> float:
    """'1e9', '2B', '500M', '10k' → a number of tokens."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
    if not match:
        raise SpecError(f"{flag} {text!r}: expected a number such as 1e9, 2B or 500M")
    return float(match.group(1)) * _SUFFIX[match.group(2).lower()]


def split_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if names == ["all"]:
        return list(METHOD_COSTS)
    if not names:
        raise SpecError("--method: name at least one method (or all)")
    for name in names:
        method_cost(name)  # unknown names fail here with the close matches
    return names


def options_per_method(methods: list[str], values: dict[str, Any]) -> dict[str, Any]:
    """Give each method the --opt keys its options have; a key no listed method knows is an error."""
    fields = {m: {f.name for f in dataclasses.fields(method_cost(m).Options)} for m in methods}
    known = sorted(set().union(*fields.values()))
    for key in values:
        if key not in known:
            raise SpecError(
                f"--opt {key}: no option of that name for {', '.join(methods)}.{did_you_mean(key, known)} "
                f"Options: {', '.join(known) or '(none)'}"
            )
    return {m: method_options(m, {k: v for k, v in values.items() if k in fields[m]}) for m in methods}


@dataclass
class Plan:
    arch: Arch
    device: Device
    setting: Setting
    estimates: list[Estimate]


def plan(model: str, methods: str, device: str, setting: Setting, opts: dict[str, Any]) -> Plan:
    """One estimate per method for `model` on `device`."""
    arch = resolve_arch(model)
    dev = resolve_device(device)
    setting.check()
    names = split_methods(methods)
    per_method = options_per_method(names, opts)
    return Plan(arch, dev, setting, [estimate(arch, m, dev, setting, per_method[m]) for m in names])
