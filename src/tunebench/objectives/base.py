"""The objective contract: what a trainable method is trained *on* and *with what loss*.

A method (lora, full, …) decides which weights change; an objective decides the training signal. The default
objective is supervised fine-tuning on the task's gold targets (the method's own `fit`). The objectives here
replace it: distillation from a teacher (`distill:alpaca`, `distill:orca`), preference optimization (`dpo`)
and online RL with a verifiable reward (`rl`). A spec names the pair as `<method>+<objective>`
(compose.py); the objective's options sit beside the method's in the same entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from tunebench.core.errors import UnsupportedError
from tunebench.core.registry import Registry

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod
    from tunebench.models.zoo import ResolvedModel
    from tunebench.tasks.base import Task
    from tunebench.train.loop import TrainStats


class Objective(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type]
    """Dataclass of the objective's own options (merged with the method's in a spec entry)."""
    trains_in_loop: ClassVar[bool] = True
    """It trains through tunebench's own loop (`train`), which runs a method's training hook (AdaLoRA's
    rank allocation); False for an objective trained by TRL's trainer, which does not."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.info: dict[str, Any] = {"name": self.name}
        """What the objective reports in result.json under `objective` (data built, dropped, phases)."""

    def check(self, task: Task, model: ResolvedModel) -> None:
        """Raise UnsupportedError when the objective cannot run on this task and model."""
        if model.kind != "decoder":
            raise UnsupportedError(
                f"{self.name} trains a model to write its answers and needs a decoder; "
                f"{model.name} is an encoder"
            )

    def max_new_tokens(self, task: Task, default: int) -> int:
        """Generation length for the trained model (explanations need more than the bare answer)."""
        return default

    def final_answer(self, text: str) -> str:
        """The part of a generated text that is the answer (explanation-trained models write more)."""
        return text

    def state(self) -> dict[str, Any]:
        """What the trained model's answers depend on besides its weights, saved beside its artifact."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Put back what `state` returned (a reloaded artifact then answers as the trained method did)."""

    @abstractmethod
    def fit(self, method: ModelMethod, ctx: Context) -> TrainStats:
        """Train `method.model` (already prepared by the method) and return what training cost."""


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
