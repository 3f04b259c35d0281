"""Tokenized training examples and deterministic, dynamically padded batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

IGNORE = -100  # label value that cross-entropy skips: prompt tokens and padding


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    n_prompt: int
    """Leading tokens that belong to the prompt (no loss on them)."""
    label: int | None = None
    """Class index, for a classification head (the whole sequence is then input)."""
    hidden: torch.Tensor | None = None
    """The example's hidden states where the first trained block reads them (T × d), computed once when
    the blocks below are frozen (train/frozen.py); None: the whole model runs."""


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE outside the targets; or (B,) class indices for a classifier
    hidden: torch.Tensor | None = None  # (B, T, d): cached states of the frozen lower blocks, zero on padding

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> Batch:
        hidden = self.hidden.to(device) if self.hidden is not None else None
        return Batch(
            self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device), hidden
        )


def encode(tokenizer, prompts: list[str], targets: list[str], max_length: int) -> tuple[list[Encoded], int]:
    """Prompt and target tokenized apart, as at inference, so the boundary tokens match what generation sees.

    Returns the examples and how many were truncated (the prompt loses tokens from its left end).
    """
    prompt_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    target_ids = tokenizer([" " + t for t in targets], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out, truncated = [], 0
    for p, t in zip(prompt_ids, target_ids, strict=True):
        t = t + eos
        if len(p) + len(t) > max_length:
            truncated += 1
            keep = max(1, max_length - len(t))
            p = p[-keep:]
            t = t[: max_length - len(p)]
        out.append(Encoded(ids=p + t, n_prompt=len(p)))
    return out, truncated


def encode_labelled(
    tokenizer, inputs: list[str], labels: list[int], max_length: int
) -> tuple[list[Encoded], int]:
    """Inputs for a classification head: the text (truncated to max_length) and its class index."""
    ids = tokenizer(inputs, add_special_tokens=True)["input_ids"]
    truncated = sum(len(x) > max_length for x in ids)
    return [
        Encoded(ids=x[:max_length], n_prompt=0, label=y) for x, y in zip(ids, labels, strict=True)
    ], truncated


def collate(examples: list[Encoded], pad_id: int) -> Batch:
    """Right-pad to the longest example in the batch (dynamic padding)."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.ids)
        ids[row, :n] = torch.tensor(e.ids)
        mask[row, :n] = 1
        labels[row, e.n_prompt : n] = ids[row, e.n_prompt : n]
    if examples[0].label is not None:
        labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    hidden = None
    first = examples[0].hidden
    if first is not None:
        hidden = torch.zeros((len(examples), width, first.shape[-1]), dtype=first.dtype)
        for row, e in enumerate(examples):
            assert e.hidden is not None  # cached for every example or for none
            hidden[row, : len(e.ids)] = e.hidden
    return Batch(ids, mask, labels, hidden)


def epoch_order(
    examples: list[Encoded], batch_size: int, seed: int, epoch: int, by_length: bool
) -> list[int]:
    """The examples' order in one epoch, a pure function of (seed, epoch): a permutation, or with `by_length`
    batches of similar length in random order.

    Length-grouped: transformers' `get_length_grouped_indices` (what Trainer's length-grouped sampler uses)
    cuts the permutation into mega-batches of up to 50 batches and sorts each by length; the batches are
    then shuffled, the one holding the epoch's longest example kept first so that the peak memory shows at
    the first step. Trainer keeps each mega-batch's batches in sorted order instead, so a short budget (40
    steps of 3-digit addition sit inside one mega-batch) trains longest to shortest, and the last steps see
    only the shortest answers. Measured with bench/train_vs_reference.py (lora, 40 steps, seed 0): the
    sorted order ended at a training loss of 1.41 and 2.0% exact match; shuffled batches at 0.53 and 10.5%;
    random batches at 0.49 and 13.0% (other seeds of random batches: 20.5%, 16.5%).

    Why group: with dynamic padding a batch is as wide as its longest example. BANKING77's questions run
    from 5 to 64 tokens (16 on average), so a random batch of 32 computes about 3 tokens per useful one;
    grouped, about 1 (bench/encoder_throughput.py).
    """
    rng = np.random.default_rng([seed, epoch])
    if not by_length:
        return rng.permutation(len(examples)).tolist()
    from transformers.trainer_pt_utils import get_length_grouped_indices  # imported late: heavy

    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    lengths = [len(e.ids) for e in examples]
    grouped = [int(i) for i in get_length_grouped_indices(lengths, batch_size, generator=generator)]
    batches = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]
    full, tail = (batches[:-1], batches[-1:]) if len(batches[-1]) < batch_size else (batches, [])
    later = [full[i] for i in 1 + rng.permutation(len(full) - 1)] if full else []
    # the first batch holds the longest example (get_length_grouped_indices puts it there); the partial
    # tail stays last, where the stream drops it
    return [i for batch in full[:1] + later + tail for i in batch]


def batch_stream(
    examples: list[Encoded],
    batch_size: int,
    seed: int,
    pad_id: int,
    start: int = 0,
    group_by_length: bool = False,
) -> Iterator[Batch]:
    """Endless batches; each epoch is a fresh order drawn from (seed, epoch) (`epoch_order`), so the stream
    is reproducible and a resumed run draws the batches it would have.

    `start` skips that many batches without building them: where a resumed run picks the stream up.
    """
    n = len(examples)
    firsts = range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size)  # batch starts in an epoch
    epoch, skip = divmod(start, len(firsts))
    while True:
        order = epoch_order(examples, batch_size, seed, epoch, group_by_length)
        for first in firsts[skip:]:
            yield collate([examples[i] for i in order[first : first + batch_size]], pad_id)
        epoch, skip = epoch + 1, 0
