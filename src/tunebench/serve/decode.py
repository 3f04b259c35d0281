"""One batch of generation: rows with their own sampling settings, stop strings and limits, streamed.

transformers' `generate` runs the model (so PEFT's generate can add prefix or prompt tokens, and
`adapter_names` reaches every LoRA layer), while tunebench picks every token itself: a logits processor
samples each row with its own temperature, top-p and seed and hands back a one-hot score, so greedy
decoding inside `generate` takes exactly the chosen token. The same processor streams each row's new
text as soon as its token is chosen; a stopping criterion ends a row at its own end-of-sequence, stop
string or token limit while the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch

from tunebench.train.device import autocast


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    """0 picks the most likely token (greedy)."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


#: Called with (row index in its request, new text, finish reason or None).
Emit = Callable[[int, str, str | None], None]


@dataclass
class Row:
    """One sequence: its prompt, its sampling, its adapter, and the text it has produced so far."""

    prompt_ids: list[int]
    sampling: Sampling
    adapter: str | None
    index: int
    emit: Emit
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None
    """None while generating; then 'stop', 'length' or 'cancelled'."""
    cancelled: bool = False
    _sent: int = 0
    _generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.sampling.seed is not None:
            self._generator = torch.Generator().manual_seed(self.sampling.seed)

    def push(self, token: int, tokenizer, eos: set[int]) -> None:
        """Take the next token: stream the text it completes, or end the row."""
        if self.cancelled:
            self.finish = "cancelled"
            return
        self.tokens.append(token)
        if token in eos:
            self._end("stop", self._text(tokenizer, drop_last=True))
            return
        text = self._text(tokenizer)
        cut = find_stop(text, self.sampling.stop, self._sent)
        if cut is not None:
            self._end("stop", text[:cut])
        elif len(self.tokens) >= self.sampling.max_tokens:
            self._end("length", text)
        else:
            safe = len(text) - held_back(text, self.sampling.stop)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                safe = min(safe, len(text) - 1)
            if safe > self._sent:
                self.emit(self.index, text[self._sent : safe], None)
                self._sent = safe

    def _text(self, tokenizer, drop_last: bool = False) -> str:
        ids = self.tokens[:-1] if drop_last else self.tokens
        return tokenizer.decode(ids, skip_special_tokens=True)

    def _end(self, reason: str, text: str) -> None:
        self.finish = reason
        self.emit(self.index, text[self._sent :], reason)
        self._sent = len(text)


def find_stop(text: str, stops: tuple[str, ...], sent: int) -> int | None:
    """Where the first stop string starts, looking only where a new one can be."""
    start = max(0, sent - max((len(s) for s in stops), default=0))
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of `text` that may be the start of a stop string, so not sent yet."""
    for k in range(min(len(text), max((len(s) for s in stops), default=1) - 1), 0, -1):
        if any(s.startswith(text[-k:]) for s in stops):
            return k
    return 0


def pick_tokens(scores: torch.Tensor, rows: list[Row]) -> list[int]:
    """The next token of every row. scores: (B, V) logits."""
    greedy = scores.argmax(dim=-1).tolist()
    out = []
    for i, row in enumerate(rows):
        s = row.sampling
        if row.finish is not None or s.temperature <= 0:
            out.append(greedy[i])
            continue
        probs = torch.softmax(scores[i].float().cpu() / s.temperature, dim=-1)  # (V,)
        if s.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            beyond = sorted_p.cumsum(0) - sorted_p > s.top_p  # keep the smallest set reaching top_p
            sorted_p[beyond] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        out.append(int(torch.multinomial(probs, 1, generator=row._generator)))
    return out


class _Chooser:
    """A logits processor: picks each row's token, streams it, and makes generate take exactly it."""

    def __init__(self, rows: list[Row], tokenizer, eos: set[int]) -> None:
        self.rows, self.tokenizer, self.eos = rows, tokenizer, eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = pick_tokens(scores, self.rows)
        for row, token in zip(self.rows, chosen):
            if row.finish is None:
                row.push(token, self.tokenizer, self.eos)
        onehot = torch.full_like(scores, -math.inf)
        onehot[torch.arange(len(chosen)), torch.tensor(chosen, device=scores.device)] = 0.0
        return onehot


class _Until:
    """A stopping criterion: a row is done once it has finished (or its client has gone)."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        for row in self.rows:
            if row.cancelled and row.finish is None:
                row.finish = "cancelled"
        return torch.tensor([row.finish is not None for row in self.rows], device=input_ids.device)


def eos_ids(model: torch.nn.Module, tokenizer) -> set[int]:
    """Every token that ends an answer: the tokenizer's and the model's generation config's."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids |= set(configured) if isinstance(configured, list) else {configured}
    return ids


@torch.inference_mode()
def run_batch(
    model: torch.nn.Module,
    tokenizer,
    rows: list[Row],
    extra: dict,
    *,
    device: torch.device,
    bf16: bool,
) -> None:
    """Generate every row to its end; `extra` carries the per-row adapter choice (`adapter_names`)."""
    from transformers import (  # lazy: slow import
        LogitsProcessorList,
        StoppingCriteriaList,
    )

    pad = tokenizer.pad_token_id
    width = max(len(r.prompt_ids) for r in rows)
    input_ids = torch.tensor(
        [[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=device
    )
    mask = torch.tensor(
        [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows], device=device
    )
    eos = eos_ids(model, tokenizer)
    # transformers' and PEFT's causal LMs define generate; nn.Module types attributes as Tensor | Module
    generate = cast("Callable[..., torch.Tensor]", model.generate)
    with autocast(device, bf16):
        generate(
            input_ids=input_ids,  # (B, T), left-padded
            attention_mask=mask,
            max_new_tokens=max(r.sampling.max_tokens for r in rows),
            do_sample=False,
            num_beams=1,
            repetition_penalty=1.0,
            logits_processor=LogitsProcessorList([_Chooser(rows, tokenizer, eos)]),
            stopping_criteria=StoppingCriteriaList([_Until(rows)]),
            pad_token_id=pad,
            eos_token_id=sorted(eos) or None,
            **extra,
        )
    for row in rows:  # generate stopped at max_new_tokens without a last look
        if row.finish is None:
            row._end("length", row._text(tokenizer))
