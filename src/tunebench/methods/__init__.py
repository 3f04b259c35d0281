"""Every method in one registry. Each module registers its method in one line (`@METHODS.register`).

To add a method: write a module here that subclasses `Method` (or `DecoderMethod`), register it, and
import it below. The conformance suite in tests/ picks it up without edits.
"""

from tunebench.methods import full, lora, prompting  # noqa: F401  (registration)
from tunebench.methods.base import METHODS, Context, Method, NoOptions

__all__ = ["METHODS", "Context", "Method", "NoOptions"]
