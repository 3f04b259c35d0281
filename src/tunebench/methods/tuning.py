"""ModelMethod: the shared machinery of every method that runs a language model, trained or not.

A subclass says what it trains (`adapt`), how a question is put (`render`), and what it saves (`export` /
`load_artifact`); choosing the head, loading, freezing, the training loop and prediction are here, once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import require
from tunebench.methods.base import Context, Method, TrainingObjective, count_parameters
from tunebench.methods.heads import ClassifierHead, GenerativeHead, Head
from tunebench.models.blocks import transformer_blocks
from tunebench.models.fingerprint import loaded_weights_key
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Task
from tunebench.train.data import Encoded
from tunebench.train.device import autocast
from tunebench.train.frozen import CachedPrefix, train_from_cache
from tunebench.train.loop import LossFn, OptimizerFactory, TrainHook, TrainStats, train

TRAINED = "trained.safetensors"
#: A new classification head's default learning rate is never below this (see ModelOptions.head_lr).
HEAD_MIN_LR = 1e-2


@dataclass
class ModelOptions:
    head: str = "auto"
    """How the model answers: generate (text after the prompt) or classifier (a label head); auto picks
    classifier for encoders and generate for decoders."""
    head_lr: float | None = None
    """Peak learning rate of a new classification head (its Linear layer), on the same warm-up and cosine
    schedule as the rest; unset: max(lr, 1e-2), SetFit's head rate (Tunstall et al., 2022, "Efficient
    Few-Shot Learning Without Prompts": head 1e-2, sentence-transformer body 2e-5). A freshly initialised
    head needs far more than a pretrained trunk's rate. (A check after the choice, on 2,000 BANKING77
    examples, 2 epochs: full fine-tuning of all-MiniLM-L6-v2 at 5e-5 reached 65% / 81% / 86% with the
    head at 1e-3 / 3e-3 / 1e-2.) A method whose own rate is higher (prompt tuning) keeps it for the head."""
    lp_ft: bool = False
    """LP-FT (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
    Out-of-Distribution", ICLR): before training, fit the probe (logistic regression on the frozen pooled
    features of the training split, C=1) and start the classification head from its solution, so that the
    first gradients do not come from a random head. Classification heads only."""

    def check(self, where: str) -> None:
        require(
            self.head in ("auto", "generate", "classifier"),
            f"{where}.head",
            f"expected auto, generate or classifier, got {self.head!r}",
        )
        require(
            self.head_lr is None or (math.isfinite(self.head_lr) and self.head_lr > 0),
            f"{where}.head_lr",
            f"must be a positive learning rate, got {self.head_lr}",
        )


class ModelMethod(Method):
    Options: ClassVar[type] = ModelOptions
    #: Only answers by generating text (prompting): refuses encoders and classifier heads.
    generative_only: ClassVar[bool] = False
    #: The method changes the forward pass itself (virtual tokens), so the loss needs the whole forward.
    full_forward: ClassVar[bool] = False
    #: Generation may start from a shared-prefix key/value cache (not when the method injects its own).
    shares_kv_cache: ClassVar[bool] = True
    #: Stop string for generation besides end-of-sequence (None: only EOS ends an answer).
    stop: str | None = None
    #: Rendered prompts already carry their special tokens (chat templates do).
    prompt_has_specials: bool = False

    # Set by `prepare`.
    head: Head
    tokenizer: Any
    head_modules: list[str]
    model: Any
    """The model as loaded and adapted: a transformers model or tunebench's SequenceClassifier, or a PEFT
    wrapper around either; used through their common API (save_pretrained, generate, merge_and_unload...),
    which torch.nn.Module does not declare."""
    head_info: dict[str, Any] | None

    def __init__(self, options: Any = None, objective: TrainingObjective | None = None) -> None:
        super().__init__(options)
        self.objective = objective

    # -- choosing how the model answers -------------------------------------------------------------

    def choose_head(self, task: Task, model: ResolvedModel) -> Head:
        wanted = "generate" if self.generative_only else getattr(self.options, "head", "auto")
        if wanted == "auto":
            wanted = "classifier" if model.kind == "encoder" else "generate"
        if wanted == "generate" and model.kind != "decoder":
            raise UnsupportedError(
                f"{self.name} generates text and needs a decoder; {model.name} is an encoder, "
                "which answers through a classification head"
            )
        if wanted == "classifier":
            if task.kind != "classification":
                raise UnsupportedError(
                    f"a classification head needs a classification task; {task.name} is a "
                    f"{task.kind} task"
                    + (f" and {model.name} is an encoder" if model.kind == "encoder" else "")
                )
            return ClassifierHead()
        if getattr(self.options, "lp_ft", False):
            raise UnsupportedError(
                f"{self.name}.lp_ft starts a classification head from a probe, but {self.name} answers by "
                f"generating text on {model.name} (head: generate); set head: classifier for a "
                "classification task, or drop lp_ft"
            )
        return GenerativeHead()

    def check(self, task: Task, model: ResolvedModel) -> None:
        head = self.choose_head(task, model)
        if self.objective is not None:
            self.objective.check(task, model)
            if not isinstance(head, GenerativeHead):
                raise UnsupportedError(
                    f"{self.name}+{self.objective.name} trains the model to write its answers; a "
                    "classification head (head: classifier) has no text to train"
                )

    # -- the run ---------------------------------------------------------------------------------------

    def prepare(self, ctx: Context) -> None:
        self.head = self.choose_head(ctx.task, ctx.model)
        torch.manual_seed(ctx.seed)  # a new head's and an adapter's initialisation are part of the run's seed
        model, self.tokenizer, self.head_modules = self.head.load(ctx, **self.load_kwargs(ctx))
        for p in model.parameters():
            p.requires_grad_(False)
        if self.trains:
            for name in self.head_modules:
                model.get_submodule(name).requires_grad_(True)
        self.model = self.adapt(model, ctx)
        self.head_info = self._head_info()

    def _head_info(self) -> dict[str, Any] | None:
        """What result.json records about a new classification head (None for a generating model)."""
        pooling = getattr(self.head, "pooling", None)
        if pooling is None:
            return None
        return {"pooling": pooling.mode, "pooling_source": pooling.source, "init": "random", "lr": None}

    def load_kwargs(self, ctx: Context) -> dict[str, Any]:
        """Extra arguments for loading the base model (a quantization config, for QLoRA)."""
        return {}

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        """Make the parts this method trains trainable (or wrap the model); the default trains nothing."""
        return model

    def render(self, task: Task, text: str) -> str:
        """The exact text given to a generating model before its answer."""
        return task.prompt(text)

    def max_new_tokens(self, task: Task) -> int:
        if self.objective is not None:  # explanation-trained models write more than the bare answer
            return self.objective.max_new_tokens(task, task.max_new_tokens)
        return task.max_new_tokens

    def fit(self, ctx: Context) -> TrainStats | None:
        if not self.trains:
            return None
        if self.objective is not None:  # trained on the objective's signal, not on the gold targets
            self.train_stats = self.objective.fit(self, ctx)
            return self.train_stats
        probe_seconds = 0.0
        if getattr(self.options, "lp_ft", False):
            # choose_head refuses lp_ft without a classification head, which has head_info
            assert isinstance(self.head, ClassifierHead) and self.head_info is not None
            self.head_info.update(self.head.init_from_probe(self, ctx))
            probe_seconds = self.head_info["probe_seconds"]
        examples, self.truncated = self.head.encode(self, ctx)
        loss_fn = self.head.loss_fn(self)
        cached = self.frozen_prefix(ctx, examples, loss_fn) if ctx.budget.cache_frozen else None
        if cached is not None:
            examples, loss_fn, prefix = cached
            probe_seconds += prefix.seconds  # computing the frozen blocks once is part of training
        self.train_stats = train(
            self.model,
            loss_fn,
            examples,
            ctx.budget,
            seed=ctx.seed,
            pad_id=self.tokenizer.pad_token_id,
            device=ctx.device,
            bf16=ctx.bf16,
            on_step=ctx.on_train_step,
            checkpoint=ctx.checkpoint,
            param_groups=self.param_groups(ctx),
            optimizer_factory=self.optimizer_factory(),
            hook=self.train_hook(),
        )
        self.train_stats.seconds += probe_seconds  # LP-FT's probe is part of what the method costs
        if cached is not None:
            self.train_stats.frozen_cache = prefix.record()
        return self.train_stats

    def frozen_prefix(
        self, ctx: Context, examples: list[Encoded], loss_fn: LossFn
    ) -> tuple[list[Encoded], LossFn, CachedPrefix] | None:
        """The training examples with the inputs of the first trained block computed once, and a loss that
        replays them (train/frozen.py); None where something below that block trains."""
        key = loaded_weights_key(ctx.model, self.model)
        try:
            blocks = transformer_blocks(self.model)
        except UnsupportedError:
            return None  # an architecture without a recognisable block stack trains uncached
        return train_from_cache(
            self.model,
            blocks,
            loss_fn,
            examples,
            key=key,
            name=ctx.model.name,
            pad_id=self.tokenizer.pad_token_id,
            device=ctx.device,
            bf16=ctx.bf16,
            batch_size=ctx.budget.eval_batch_size,
        )

    def train_hook(self) -> TrainHook | None:
        """What this method adds to every training step of tunebench's loop (AdaLoRA's rank allocation and
        regulariser); None: nothing. An objective that trains through another loop (TRL's) cannot run it,
        so a method that has one refuses such objectives in `check`."""
        return None

    def optimizer_factory(self) -> OptimizerFactory | None:
        """The optimizer this method trains with when it is not the loop's fused AdamW (GaLore's projected
        Adam); it receives the trainable parameters or `param_groups`, and the filled budget."""
        return None

    def param_groups(self, ctx: Context) -> list[dict[str, Any]] | None:
        """AdamW groups: a new head's parameters at `head_lr`, the rest at the budget's lr (None: no new
        head, one group). Names match through PEFT's wrappers (`...classifier.modules_to_save...`)."""
        if not self.head_modules:
            return None
        lr = ctx.budget.filled().lr
        # filled() sets lr; head modules come with a classification head, which has head_info
        assert lr is not None and self.head_info is not None
        head_lr = self.options.head_lr if getattr(self.options, "head_lr", None) else max(lr, HEAD_MIN_LR)
        head: list[torch.nn.Parameter] = []
        rest: list[torch.nn.Parameter] = []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (head if any(f".{m}." in f".{name}" for m in self.head_modules) else rest).append(p)
        self.head_info["lr"] = head_lr
        groups = [{"params": rest, "lr": lr}] if rest else []
        return [*groups, {"params": head, "lr": head_lr}]

    def predict(self, ctx: Context, inputs: list[str]) -> list[str]:
        outputs = self.head.predict(self, ctx, inputs)
        if self.objective is not None:  # the answer part of an explanation
            return [self.objective.final_answer(text) for text in outputs]
        return outputs

    def param_counts(self) -> tuple[int, int | None]:
        return count_parameters(self.model)

    def trainable_state(self) -> dict[str, torch.Tensor] | None:
        # Only the trained tensors: megabytes for an adapter, the whole model for full fine-tuning.
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            params = dict(self.model.named_parameters())
            for name, tensor in state.items():
                params[name].copy_(tensor)

    @torch.no_grad()
    def text_nll(self, texts: list[str], ctx: Context) -> float | None:
        if not isinstance(self.head, GenerativeHead):
            return None
        self.model.eval()
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "right"
        try:
            enc = self.tokenizer(texts, return_tensors="pt", padding=True).to(ctx.device)
        finally:
            self.tokenizer.padding_side = side
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        with autocast(ctx.device, ctx.bf16):
            return float(self.model(**enc, labels=labels).loss)

    # -- artifacts: by default the trained tensors, by name ---------------------------------------------

    def export(self, folder: Path) -> None:
        tensors = {
            n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad
        }
        save_file(tensors, str(folder / TRAINED))
        (folder / "method.json").write_text(
            json.dumps({"method": self.name, "head": self.head.name}, indent=2)
        )

    def load_artifact(self, folder: Path) -> None:
        tensors = load_file(str(folder / TRAINED))
        expected = {n for n, p in self.model.named_parameters() if p.requires_grad}
        if set(tensors) != expected:
            raise UnsupportedError(
                f"{folder / TRAINED} does not match {self.name}'s trained parameters "
                f"({len(set(tensors) ^ expected)} names differ)"
            )
        self.model.load_state_dict(tensors, strict=False)
