"""Every method in one registry. Each module registers its methods in one line (`@METHODS.register`).

To add a method: write a module here that subclasses `Method` (or `ModelMethod` for one that runs a
language model), register it, and import it below. `tunebench methods`, the spec validation and the
conformance suite in tests/ pick it up without edits.
"""

from tunebench.methods import (  # noqa: F401  (registration)
    adapter,
    bitfit,
    full,
    galore,
    logprob,
    orthogonal,
    peft_methods,
    probe,
    prompting,
)
from tunebench.methods.base import METHODS, Context, Method, NoOptions

__all__ = ["METHODS", "Context", "Method", "NoOptions"]
