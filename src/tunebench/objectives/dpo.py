"""Direct preference optimization (Rafailov et al., 2023) through TRL's DPOTrainer.

Pairs come from a file (`pairs:`) or are built from the task: chosen = the gold answer (or a teacher's),
rejected = one of the model's own sampled answers that is wrong. With `sft_steps`, the model is first
fine-tuned on the chosen answers with tunebench's own loop, then DPO starts from there (SFT → DPO).

The reference model, against which DPO measures how far the policy moved:
- `start` (default): the model as DPO begins (after the SFT steps, if any). With a PEFT method TRL keeps a
  copy of the adapter weights only (a "ref" adapter over the same base; no second model). With full
  fine-tuning the reference log-probabilities are computed once before training, so no second model is
  held either.
- `base`: the pretrained model. With a PEFT method the adapter is disabled for the reference pass; with full
  fine-tuning after SFT steps this needs a second copy of the model, loaded for the purpose.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.core import store
from tunebench.core.errors import SpecError, UnknownNameError, UnsupportedError
from tunebench.core.typed import require
from tunebench.models.load import load_causal_lm
from tunebench.objectives.base import OBJECTIVES, Objective
from tunebench.objectives.pairs import Pair, pairs_from_samples, read_pairs
from tunebench.objectives.sft import WarmStartOptions, combine, phase, warm_start
from tunebench.objectives.trl_run import (
    config_kwargs,
    last_logged,
    run_trainer,
    scratch_dir,
    trainer_optimizers,
)
from tunebench.teachers import TEACHERS, build_teacher
from tunebench.train.loop import total_steps

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod
    from tunebench.models.zoo import ResolvedModel
    from tunebench.tasks.base import Task
    from tunebench.train.loop import TrainStats

PAIRS_FILE = "dpo_pairs.jsonl"
#: TRL's last logged values kept in result.json: how often chosen beats rejected, and by how much.
DPO_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


@dataclass
class DpoOptions(WarmStartOptions):
    pairs: str = ""
    """A preference file (prompt/chosen/rejected JSON lines, or HH-RLHF transcripts); empty: built from the
    task's training split by sampling the model."""
    beta: float = 0.1
    """How strongly the policy is held to the reference (DPO's β): smaller lets it move further."""
    reference: str = "start"
    """start (the model as DPO begins, after any SFT steps) or base (the pretrained model)."""
    dpo_lr: float | None = None
    """Learning rate of the DPO steps (unset: the budget's lr); DPO usually wants a smaller one than SFT."""
    chosen: str = "gold"
    """For pairs built from the task: gold (the task's answer) or teacher (the `teacher`'s answer)."""
    teacher: str = "oracle"
    """The teacher that writes chosen answers when chosen=teacher."""
    samples: int = 4
    """Sampled answers per prompt when building pairs; the first wrong one becomes the rejected side."""
    temperature: float = 1.0
    """Sampling temperature for those answers."""
    max_pairs: int = 512
    """At most this many training prompts (or file pairs) are used, in order; 0: all."""

    def check(self, where: str) -> None:
        require(self.beta > 0, f"{where}.beta", f"must be positive, got {self.beta}")
        require(
            self.reference in ("start", "base"),
            f"{where}.reference",
            f"expected start or base, got {self.reference!r}",
        )
        self.check_warm_start(where)
        require(self.dpo_lr is None or self.dpo_lr > 0, f"{where}.dpo_lr", "must be positive")
        require(
            self.chosen in ("gold", "teacher"),
            f"{where}.chosen",
            f"expected gold or teacher, got {self.chosen!r}",
        )
        require(self.samples >= 1, f"{where}.samples", "must be at least 1")
        require(self.temperature > 0, f"{where}.temperature", "must be positive")
        require(self.max_pairs >= 0, f"{where}.max_pairs", "must be 0 (all) or more")
        if self.pairs:
            require(Path(self.pairs).exists(), f"{where}.pairs", f"no such file: {self.pairs}")
        if self.chosen == "teacher":
            try:
                TEACHERS.get(self.teacher)
            except UnknownNameError as e:
                raise SpecError(f"{where}.teacher: {e}") from None


@OBJECTIVES.register("dpo")
class Dpo(Objective):
    name = "dpo"
    summary = (
        "direct preference optimization (TRL) on chosen/rejected pairs: a file, or gold against the "
        "model's own wrong samples"
    )
    Options = DpoOptions
    trains_in_loop = False  # TRL's trainer (its SFT warm start runs in tunebench's loop)

    def check(self, task: Task, model: ResolvedModel) -> None:
        super().check(task, model)
        if not self.options.pairs and task.kind != "generation":
            raise UnsupportedError(
                f"dpo builds pairs from generated answers; {task.name} is a {task.kind} task"
            )

    def fit(self, method: ModelMethod, ctx: Context) -> TrainStats:
        o = self.options
        file_pairs = read_pairs(o.pairs) if o.pairs else None
        if file_pairs is not None and o.max_pairs:
            file_pairs = file_pairs[: o.max_pairs]
        sft = None
        if o.sft_steps:
            sft = self._sft(method, ctx, file_pairs)
        pairs = file_pairs if file_pairs is not None else self._task_pairs(method, ctx)
        if ctx.folder is not None:
            store.write_jsonl_atomic(ctx.folder / PAIRS_FILE, [p.as_row() for p in pairs])
        self.info.update(
            pairs=len(pairs), pairs_source=o.pairs or "task", pairs_file=PAIRS_FILE if ctx.folder else None
        )
        if not pairs:
            raise RuntimeError(
                "no preference pair could be built: the model answered every training prompt right in all "
                f"{o.samples} samples (see objective.pair_building in result.json); raise samples or "
                "temperature"
            )
        dpo = self._dpo(method, ctx, pairs, steps_before=sft.steps if sft else 0)
        self.info["phases"] = {"sft": phase(sft) if sft else None, "dpo": phase(dpo)}
        return combine(sft, dpo) if sft else dpo

    # -- phases ---------------------------------------------------------------------------------------------

    def _sft(self, method: ModelMethod, ctx: Context, file_pairs: list[Pair] | None) -> TrainStats:
        if file_pairs is not None:
            prompts, targets = [p.prompt for p in file_pairs], [p.chosen.strip() for p in file_pairs]
        else:
            examples = ctx.splits.train
            prompts = [method.render(ctx.task, e.input) for e in examples]
            targets = self._chosen(ctx, examples)
        return warm_start(method, ctx, prompts, targets, self.options.sft_steps, self.options.sft_lr)

    def _chosen(self, ctx: Context, examples: list) -> list[str]:
        if self.options.chosen == "gold":
            return [e.target for e in examples]

        outputs = build_teacher(self.options.teacher).teach(
            ctx.task, [e.input for e in examples], explain=False
        )
        # an unreadable teacher answer falls back to gold, counted
        self.info["teacher_unreadable"] = sum(o.answer is None for o in outputs)
        return [o.answer if o.answer else e.target for o, e in zip(outputs, examples, strict=True)]

    def _task_pairs(self, method: ModelMethod, ctx: Context) -> list[Pair]:
        examples = ctx.splits.train[: self.options.max_pairs or None]
        start = time.perf_counter()
        pairs, info = pairs_from_samples(
            method, ctx, examples, self._chosen(ctx, examples),
            samples=self.options.samples, temperature=self.options.temperature,
        )  # fmt: skip
        # sampling the model is DPO's cost too, outside both training phases' time
        self.info["pair_building"] = {**info, "seconds": time.perf_counter() - start}
        return pairs

    def _dpo(self, method: ModelMethod, ctx: Context, pairs: list[Pair], steps_before: int) -> TrainStats:
        from datasets import (  # lazy: slow import (dpo, rl only)
            Dataset,
            load_from_disk,
        )
        from peft import PeftModel  # lazy: slow import
        from trl import (  # lazy: slow import (dpo, rl only)
            DPOConfig,
            DPOTrainer,
        )

        model = method.model
        is_peft = isinstance(model, PeftModel)
        full_base_ref = not is_peft and self.options.reference == "base" and bool(self.options.sft_steps)
        budget = (
            ctx.budget
            if self.options.dpo_lr is None
            else dataclasses.replace(ctx.budget, lr=self.options.dpo_lr)
        )
        steps = total_steps(budget, len(pairs))
        with scratch_dir(ctx) as tmp:
            # A dataset on disk inside the run folder: TRL's caches (reference log-probs) land beside it.
            Dataset.from_list([p.as_row() for p in pairs]).save_to_disk(str(tmp / "pairs"))
            dataset = load_from_disk(str(tmp / "pairs"))
            args = DPOConfig(
                **config_kwargs(budget, steps, ctx, tmp / "out"),
                beta=self.options.beta,
                max_length=ctx.budget.max_length,
                precompute_ref_log_probs=not is_peft and not full_base_ref,
                include_num_input_tokens_seen="non_padding",
                disable_dropout=True,
            )
            ref_model = _load_base(method, ctx) if full_base_ref else None
            trainer = DPOTrainer(
                model=model,
                ref_model=ref_model,
                args=args,
                train_dataset=dataset,
                processing_class=method.tokenizer,
                optimizers=trainer_optimizers(method, budget),
            )
            if is_peft and self.options.reference == "base" and "ref" in model.peft_config:
                model.delete_adapter("ref")  # reference pass with the adapter disabled: the pretrained base
            self.info["reference"] = _describe_reference(trainer, model, is_peft, full_base_ref)
            self.info["second_model"] = trainer.ref_model is not None
            stats = run_trainer(
                trainer,
                ctx,
                examples_per_step=ctx.budget.batch_size * ctx.budget.grad_accum,
                steps_before=steps_before,
            )
            self.info["dpo_metrics"] = last_logged(trainer, DPO_METRICS)
            if is_peft and "ref" in model.peft_config:
                model.delete_adapter("ref")  # the artifact is the trained adapter only
                model.set_adapter("default")
            del trainer, ref_model
        return stats


def _load_base(method: ModelMethod, ctx: Context) -> Any:
    return load_causal_lm(ctx.model, ctx.device).eval()


def _describe_reference(trainer: Any, model: Any, is_peft: bool, loaded: bool) -> str:
    if is_peft:
        if "ref" in model.peft_config:
            return (
                "adapter copy at the start of DPO (TRL 'ref' adapter over the shared base; no second model)"
            )
        return "base model: adapter disabled for the reference pass (no second model)"
    if loaded:
        return "base model: a second copy loaded for the reference"
    return "model at the start of DPO: reference log-probs precomputed before training (no second model)"
