"""`tunebench estimate` as a library call: names and KEY=VALUE strings in, estimates out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tunebench.core.errors import SpecError, did_you_mean
from tunebench.estimate.costs import estimable_methods, method_cost, method_options
from tunebench.estimate.devices import Device, resolve_device
from tunebench.estimate.model import Estimate, Setting, estimate
from tunebench.estimate.shapes import resolve_arch
from tunebench.models.arch import Arch


def split_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if names == ["all"]:
        return estimable_methods()
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


def plan(
    model: str, methods: str, device: str, setting: Setting, opts: dict[str, Any], classes: int = 0
) -> Plan:
    """One estimate per method for `model` on `device`; `classes` > 0: a classification head over that many
    classes in place of the LM head (`head: classifier`, and the probe's head)."""
    if classes < 0 or classes == 1:
        raise SpecError(f"--classes {classes}: a classification head needs at least 2 classes (0: none)")
    arch = resolve_arch(model)
    if classes:
        arch = dataclasses.replace(arch, classes=classes)
    dev = resolve_device(device)
    setting.check()
    names = split_methods(methods)
    per_method = options_per_method(names, opts)
    return Plan(arch, dev, setting, [estimate(arch, m, dev, setting, per_method[m]) for m in names])
