"""Online RL with a verifiable reward or a reward model: GRPO (Shao et al., 2024) through TRL's GRPOTrainer.

For each training prompt the model samples a group of answers; each answer's reward is 1 when the task's own
answer extraction reads the gold answer from it and 0 otherwise, and the policy moves toward the answers
that beat their group's mean. No value network: the "RLHF" contrast to DPO, slower (it generates during
training) and more sensitive to its settings. With `reward_model` (a sequence-classification model with one
output, e.g. one trained on preference pairs), that model's score of prompt + answer is the reward instead:
the case of tasks whose answers cannot be checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import require
from tunebench.models import resolve_model
from tunebench.objectives.base import OBJECTIVES, Objective
from tunebench.objectives.sft import WarmStartOptions, combine, phase, warm_start
from tunebench.objectives.trl_run import (
    config_kwargs,
    last_logged,
    run_trainer,
    scratch_dir,
    trainer_optimizers,
)
from tunebench.train.loop import total_steps

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod
    from tunebench.models.zoo import ResolvedModel
    from tunebench.tasks.base import Task
    from tunebench.train.budget import Budget
    from tunebench.train.loop import TrainStats

RL_METRICS = ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "kl")


@dataclass
class RlOptions(WarmStartOptions):
    generations: int = 4
    """Answers sampled per prompt (GRPO's group); the batch (batch_size × grad_accum) must be a multiple."""
    temperature: float = 1.0
    """Sampling temperature of those answers."""
    kl: float = 0.0
    """Weight of the KL penalty toward the starting model (TRL's GRPO β; 0: none, TRL's default)."""
    reward_model: str = ""
    """A reward model (a registered model, a local folder or a hub id: a sequence classifier whose single
    output scores prompt + answer); empty: the verifiable reward (1 when the answer is right)."""
    rl_lr: float | None = None
    """Learning rate of the RL steps (unset: the budget's lr). With sft_lr set and rl_lr unset, the budget's
    lr (and an `lr_grid` search) applies to the RL steps alone."""

    def check(self, where: str) -> None:
        require(
            self.generations >= 2, f"{where}.generations", "GRPO compares answers within a group: at least 2"
        )
        require(self.temperature > 0, f"{where}.temperature", "must be positive")
        require(self.kl >= 0, f"{where}.kl", "must be 0 or more")
        self.check_warm_start(where)
        require(self.rl_lr is None or self.rl_lr > 0, f"{where}.rl_lr", "must be positive")

    def check_budget(self, budget: Budget, where: str) -> None:
        per_step = budget.batch_size * budget.grad_accum
        require(
            per_step % self.generations == 0,
            f"{where}.generations",
            f"the batch (batch_size × grad_accum = {per_step}) must be a multiple of generations "
            f"({self.generations}): each step scores whole groups of answers",
        )


@OBJECTIVES.register("rl")
class Rl(Objective):
    name = "rl"
    summary = "online RL (GRPO via TRL): reward 1 when the answer is right, or a reward model's score"
    Options = RlOptions
    trains_in_loop = False  # TRL's trainer (its SFT warm start runs in tunebench's loop)

    def check(self, task: Task, model: ResolvedModel) -> None:
        super().check(task, model)
        if task.kind != "generation":
            raise UnsupportedError(f"rl rewards generated answers; {task.name} is a {task.kind} task")

    def fit(self, method: ModelMethod, ctx: Context) -> TrainStats:
        from datasets import Dataset  # lazy: slow import (dpo, rl only)
        from trl import (  # lazy: slow import (dpo, rl only)
            GRPOConfig,
            GRPOTrainer,
        )

        task = ctx.task
        rows = [{"prompt": method.render(task, e.input), "target": e.target} for e in ctx.splits.train]

        sft = None
        if self.options.sft_steps:
            sft = warm_start(
                method, ctx, [r["prompt"] for r in rows], [r["target"] for r in rows],
                self.options.sft_steps, self.options.sft_lr,
            )  # fmt: skip
        budget = (
            ctx.budget
            if self.options.rl_lr is None
            else dataclasses.replace(ctx.budget, lr=self.options.rl_lr)
        )
        per_step = budget.batch_size * budget.grad_accum
        # a step trains on batch_size answers, i.e. batch_size / generations prompts
        steps = total_steps(budget, len(rows) * self.options.generations)
        with scratch_dir(ctx) as tmp:
            args = GRPOConfig(
                **config_kwargs(budget, steps, ctx, tmp / "out"),
                num_generations=self.options.generations,
                max_completion_length=method.max_new_tokens(task),
                temperature=self.options.temperature,
                beta=self.options.kl,
                disable_dropout=True,
            )
            reward, reward_tokenizer = self._reward(task)
            trainer = GRPOTrainer(
                model=method.model,
                reward_funcs=reward,
                reward_processing_classes=reward_tokenizer,
                args=args,
                train_dataset=Dataset.from_list(rows),
                processing_class=method.tokenizer,
                optimizers=trainer_optimizers(method, budget),
            )
            stats = run_trainer(
                trainer, ctx, examples_per_step=per_step, steps_before=sft.steps if sft else 0
            )
            idle = _steps_without_signal(trainer)
            self.info.update(
                generations=self.options.generations,
                prompts_seen=stats.steps * per_step // self.options.generations,
                rl_metrics=last_logged(trainer, RL_METRICS),
                first_reward=_first_logged(trainer, "reward"),
                steps_without_signal=idle,
                reward=self.options.reward_model or "verifiable: the task reads the gold answer",
            )
            if stats.steps and idle >= stats.steps / 2:  # the run finished, but mostly did not learn
                self.info["warnings"] = [
                    f"in {idle} of {stats.steps} GRPO steps every group's answers got the same reward, so "
                    "those steps taught nothing (raise sft_steps, generations or temperature)"
                ]
            del trainer
        self.info["phases"] = {"sft": phase(sft) if sft else None, "rl": phase(stats)}
        return combine(sft, stats) if sft else stats

    def _reward(self, task: Task):
        """(reward function or model, its tokenizer or None) for GRPOTrainer."""
        if not self.options.reward_model:
            return answer_reward(task), None
        from transformers import (  # lazy: slow import
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        path = resolve_model(self.options.reward_model).path
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        if model.config.num_labels != 1:
            raise UnsupportedError(
                f"reward_model {self.options.reward_model}: a reward model gives one score, "
                f"this one has {model.config.num_labels} outputs"
            )
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:  # the reward model scores batches of different lengths
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        model.requires_grad_(False)
        return [model], [tokenizer]


def answer_reward(task: Task):
    """TRL reward function: 1.0 when the task reads the gold answer (column `target`) in a completion."""

    def correct(prompts: list[str], completions: list[str], target: list[str], **_: object) -> list[float]:
        return [float(task.answer(c) == task.answer(t)) for c, t in zip(completions, target, strict=True)]

    return correct


def _steps_without_signal(trainer) -> int:
    """RL steps in which every group's answers got the same reward: GRPO's advantages are all 0 there and
    the step teaches nothing (a loss of exactly 0 without a KL term)."""
    return sum(1 for entry in trainer.state.log_history if entry.get("frac_reward_zero_std") == 1.0)


def _first_logged(trainer, key: str) -> float | None:
    for entry in trainer.state.log_history:
        if key in entry:
            return float(entry[key])
    return None
