"""Preference pairs: read from a file, or built from a task with gold answers by sampling the model.

A file is JSON lines (or one JSON list) of {"prompt", "chosen", "rejected"} records. HH-RLHF's records, two
full transcripts {"chosen", "rejected"} without a prompt, are accepted too: the prompt is their shared
beginning up to and including the last "Assistant:" turn marker both contain, and each side keeps its own
reply. Every record is checked (fields present, texts non-empty, chosen ≠ rejected) and a bad one is
reported by file and line.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunebench.core.errors import DataError

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod
    from tunebench.tasks.base import Example

#: Where an HH-RLHF transcript's assistant turn begins; the prompt ends right after the last shared one.
ASSISTANT = "\n\nAssistant:"


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str

    def as_row(self) -> dict[str, str]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


def read_pairs(path: str | Path) -> list[Pair]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such preference file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({e})") from None
    records = _records(path, text)
    if not records:
        raise DataError(f"{path}: no preference pairs in the file")
    pairs, errors = [], []
    for line, record in records:
        try:
            pairs.append(_pair(path, line, record))
        except DataError as e:
            errors.append(str(e))
    if errors:  # every bad line at once, so that one pass fixes the file
        more = f"\n(and {len(errors) - 5} more)" if len(errors) > 5 else ""
        head = f"{len(errors)} of {len(records)} records cannot be used:\n" if len(errors) > 1 else ""
        raise DataError(head + "\n".join(errors[:5]) + more)
    return pairs


def _records(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line number, parsed record); a JSON list counts its items as lines 1, 2, …"""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        return [(i + 1, item) for i, item in enumerate(items)]
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
    return out


def _pair(path: Path, line: int, record: Any) -> Pair:
    where = f"{path}:{line}"
    if not isinstance(record, dict):
        raise DataError(
            f"{where}: expected an object with prompt, chosen and rejected, got {type(record).__name__}"
        )
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if missing:
        has = ", ".join(sorted(map(str, record))) or "no fields"
        raise DataError(
            f"{where}: missing field {missing[0]!r} (a pair needs prompt, chosen and rejected, or HH-RLHF's "
            f"chosen and rejected transcripts; this record has {has})"
        )
    for key in ("prompt", "chosen", "rejected"):
        if key in record and not isinstance(record[key], str):
            raise DataError(f"{where}: field {key!r} must be text, got {type(record[key]).__name__}")
    if "prompt" in record:
        prompt, chosen, rejected = record["prompt"], record["chosen"], record["rejected"]
    else:
        prompt, chosen, rejected = split_transcripts(record["chosen"], record["rejected"], where)
    for key, value in (("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            raise DataError(f"{where}: field {key!r} is empty; a pair needs two non-empty answers")
    if chosen.strip() == rejected.strip():
        raise DataError(f"{where}: chosen and rejected are identical, so the pair prefers nothing")
    return Pair(prompt, chosen, rejected)


def split_transcripts(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """HH-RLHF: (shared prompt up to the last common 'Assistant:' marker, chosen reply, rejected reply)."""
    common = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        common += 1
    cut = chosen.rfind(ASSISTANT, 0, common)  # the whole marker inside the shared part
    if cut < 0:
        raise DataError(
            f"{where}: no 'prompt' field, and the chosen and rejected transcripts share no beginning that "
            "ends "
            f"with an {ASSISTANT.strip()!r} turn (HH-RLHF format); add a prompt field"
        )
    end = cut + len(ASSISTANT)
    return chosen[:end], chosen[end:], rejected[end:]


# -- pairs built from a task -------------------------------------------------------------------------------


@torch.no_grad()
def sample(
    method: ModelMethod, ctx: Context, prompts: list[str], *, n: int, temperature: float, max_new_tokens: int
) -> list[list[str]]:
    """`n` sampled completions per prompt from the method's model, in prompt order (seeded by the run)."""
    model, tok = method.model, method.tokenizer
    model.eval()
    torch.manual_seed(ctx.seed)
    out: list[list[str]] = []
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = max(1, ctx.budget.eval_batch_size // n)
        for start in range(0, len(prompts), batch):
            enc = tok(prompts[start : start + batch], return_tensors="pt", padding=True).to(ctx.device)
            gen = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                num_return_sequences=n,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out.extend(texts[i : i + n] for i in range(0, len(texts), n))
    finally:
        tok.padding_side = side
    return out


def pairs_from_samples(
    method: ModelMethod,
    ctx: Context,
    examples: list[Example],
    chosen: list[str],
    *,
    samples: int,
    temperature: float,
) -> tuple[list[Pair], dict[str, Any]]:
    """chosen = the given answer (gold or teacher); rejected = the model's first sampled answer that is wrong.

    Returns the pairs and what happened to each prompt (a pair, or why none: every sample was right, or
    every wrong sample was empty).
    """
    task = ctx.task
    prompts = [method.render(task, e.input) for e in examples]
    completions = sample(
        method, ctx, prompts, n=samples, temperature=temperature, max_new_tokens=method.max_new_tokens(task)
    )
    pairs: list[Pair] = []
    outcome: Counter[str] = Counter()
    for prompt, example, good, drawn in zip(prompts, examples, chosen, completions, strict=True):
        gold = task.answer(example.target)
        wrong = [c.strip() for c in drawn if task.answer(c) != gold]
        wrong = [c for c in wrong if c and c != good.strip()]
        if not wrong:
            outcome[
                "every sample right"
                if all(task.answer(c) == gold for c in drawn)
                else "no usable wrong sample"
            ] += 1
            continue
        pairs.append(Pair(prompt, " " + good.strip(), " " + wrong[0]))
        outcome["pair"] += 1
    accuracy = sum(
        task.answer(c) == task.answer(e.target) for e, cs in zip(examples, completions) for c in cs
    )
    info = {
        "prompts": len(examples),
        "samples_per_prompt": samples,
        "sample_accuracy": accuracy / max(1, samples * len(examples)),
        "outcomes": dict(outcome),
    }
    return pairs, info
