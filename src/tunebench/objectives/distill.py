"""Distillation: train on what a teacher wrote instead of the task's gold targets.

`distill:alpaca` trains on the teacher's final answers (Alpaca: a strong model's answers as targets);
`distill:orca` on its step-by-step explanation ending with the answer (Orca: explanation traces). The
generated training set is written to `<run>/teacher_data.jsonl`, every row with whether it was kept and
why not; outputs the teacher got wrong are kept (that is what distilling a teacher means) but counted.
Outputs without a readable answer (or, for orca, without an explanation) are never trained on.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunebench.core import store
from tunebench.core.errors import SpecError, UnknownNameError
from tunebench.core.typed import build, require
from tunebench.objectives.base import OBJECTIVES, Objective
from tunebench.objectives.sft import supervised
from tunebench.teachers import TEACHERS, build_teacher

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod
    from tunebench.tasks.base import Task
    from tunebench.teachers.base import TeacherOutput
    from tunebench.train.loop import TrainStats

TEACHER_DATA = "teacher_data.jsonl"
#: Written before the answer when an explanation does not itself end with an answer the task can read.
FINAL = "Final answer:"


@dataclass
class DistillOptions:
    teacher: str = "oracle"
    """Who writes the targets: oracle (the task itself), local or openai (see `tunebench teachers`)."""
    teacher_options: dict[str, Any] = field(default_factory=dict)
    """The teacher's own options (a local model's name, an endpoint's URL, …)."""
    answer_tokens: int = 0
    """Generation length of the trained model; 0: long enough for the longest training target."""

    def check(self, where: str) -> None:
        try:
            cls = TEACHERS.get(self.teacher)
        except UnknownNameError as e:
            raise SpecError(f"{where}.teacher: {e}") from None
        build(cls.Options, self.teacher_options, f"{where}.teacher_options")
        require(self.answer_tokens >= 0, f"{where}.answer_tokens", "must be 0 (automatic) or more")


class Distill(Objective):
    Options = DistillOptions
    explain: bool = False

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.longest_target = 0

    def fit(self, method: ModelMethod, ctx: Context) -> TrainStats:
        teacher = build_teacher(self.options.teacher, self.options.teacher_options, "teacher_options")
        examples = ctx.splits.train
        start = time.perf_counter()
        outputs = teacher.teach(ctx.task, [e.input for e in examples], explain=self.explain)
        teach_seconds = time.perf_counter() - start
        if len(outputs) != len(examples):
            raise RuntimeError(
                f"teacher {teacher.name} returned {len(outputs)} outputs for {len(examples)} inputs"
            )
        rows: list[dict[str, Any]] = []
        prompts: list[str] = []
        targets: list[str] = []
        for ex, out in zip(examples, outputs, strict=True):
            target, reason = self.target(ctx.task, out)
            gold = ctx.task.answer(ex.target)
            rows.append({
                "input": ex.input, "gold": ex.target, "teacher_text": out.text, "answer": out.answer,
                "explanation": out.explanation, "target": target, "kept": target is not None,
                "dropped_because": reason,
                "teacher_correct": bool(out.answer and ctx.task.answer(out.answer) == gold),
            })  # fmt: skip
            if target is not None:
                prompts.append(method.render(ctx.task, ex.input))
                targets.append(target)
        if ctx.folder is not None:
            store.write_jsonl_atomic(ctx.folder / TEACHER_DATA, rows)
        kept = [r for r in rows if r["kept"]]
        self.info.update(
            teacher=teacher.name,
            teacher_seconds=teach_seconds,
            examples=len(rows),
            kept=len(kept),
            dropped=len(rows) - len(kept),
            dropped_reasons=dict(Counter(r["dropped_because"] for r in rows if not r["kept"])),
            teacher_accuracy=sum(r["teacher_correct"] for r in rows) / max(1, len(rows)),
            data_file=TEACHER_DATA if ctx.folder is not None else None,
        )
        if not kept:
            reasons = ", ".join(f"{n} {why}" for why, n in self.info["dropped_reasons"].items())
            raise RuntimeError(f"the teacher gave no usable training example ({reasons}); see {TEACHER_DATA}")
        tok = method.tokenizer
        self.longest_target = max(len(ids) for ids in tok([" " + t for t in targets])["input_ids"])
        stats, truncated = supervised(method, ctx, prompts, targets, ctx.budget)
        method.truncated = truncated
        return stats

    def target(self, task: Task, out: TeacherOutput) -> tuple[str | None, str | None]:
        """(training target, None) or (None, why the output cannot be trained on)."""
        if not out.answer or not out.answer.strip():
            return None, "no readable answer"
        return out.answer.strip(), None

    def state(self) -> dict[str, Any]:
        return {"longest_target": self.longest_target}  # sets the generation length (max_new_tokens)

    def load_state(self, state: dict[str, Any]) -> None:
        self.longest_target = int(state.get("longest_target", 0))

    def max_new_tokens(self, task: Task, default: int) -> int:
        if self.options.answer_tokens:
            return self.options.answer_tokens
        return max(default, self.longest_target + 8)  # +8: room for the end token and a little drift


@OBJECTIVES.register("distill:alpaca")
class DistillAlpaca(Distill):
    name = "distill:alpaca"
    summary = "train on a teacher's final answers (Alpaca)"
    explain = False


@OBJECTIVES.register("distill:orca")
class DistillOrca(Distill):
    name = "distill:orca"
    summary = (
        "train on a teacher's step-by-step explanations ending with the answer (Orca); scored on the answer"
    )
    explain = True

    def target(self, task: Task, out: TeacherOutput) -> tuple[str | None, str | None]:
        if not out.answer or not out.answer.strip():
            return None, "no readable answer"
        explanation = (out.explanation or "").strip()
        if not explanation:
            return None, "no explanation"
        if task.answer(explanation) == task.answer(out.answer):
            return explanation, None  # the trace ends with its answer, as the oracle's do
        return f"{explanation}\n{FINAL} {out.answer.strip()}", None

    def final_answer(self, text: str) -> str:
        _, marker, tail = text.rpartition(FINAL)
        return tail.strip() if marker else text
