"""Training objectives that combine with any trainable method: `lora+distill:orca`, `full+dpo`, `lora+rl`.

See base.py for the contract and compose.py for how a method and an objective become one method.
"""

from tunebench.objectives import distill, dpo, rl  # noqa: F401  (registration)
from tunebench.objectives.base import OBJECTIVES, Objective
from tunebench.objectives.compose import (
    build_method,
    method_class,
    objective_class,
    option_groups,
    split_name,
)

__all__ = [
    "OBJECTIVES",
    "Objective",
    "build_method",
    "method_class",
    "objective_class",
    "option_groups",
    "split_name",
]
