"""Plan past this machine: what each method would cost at 7B, 70B or 175B, on the user's hardware.

`estimate(arch, method, device, setting)` gives peak training memory by component, trainable parameters,
artifact size, FLOPs per token, time for a number of tokens and whether it fits; the shapes come from a
config, a packaged model or a preset (`resolve_arch`), the device from a table or a custom spec
(`resolve_device`). `calibrate` checks the memory model against tunebench's own measured peaks, and
`estimate_for_result` adds a target-size estimate to a comparison's result record.
"""

from tunebench.estimate.costs import estimable_methods, method_cost, method_options
from tunebench.estimate.devices import DEVICES, Device, resolve_device
from tunebench.estimate.model import PRECISIONS, Estimate, Setting, estimate
from tunebench.estimate.shapes import PRESETS, resolve_arch
from tunebench.models.arch import Arch

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "PRESETS",
    "Arch",
    "Device",
    "Estimate",
    "Setting",
    "estimable_methods",
    "estimate",
    "method_cost",
    "method_options",
    "resolve_arch",
    "resolve_device",
]  # fmt: skip
