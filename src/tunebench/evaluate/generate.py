"""Batched greedy generation: left padding, a shared-prefix key/value cache, stop at the answer's end.

Few-shot prompts share a long prefix (the instruction and the shots) and differ only in the question.
That prefix is run through the model once; each batch starts from a copy of its key/value cache and
only the questions are computed. Questions of unequal length are padded between the prefix and the
question, with the padding masked out, so positions stay those of the unpadded prompt.
Prompts are sorted by length so that batches pad little; outputs come back in the caller's order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from tunebench.train.device import autocast

#: A common prefix shorter than this is not worth caching.
MIN_SHARED_PREFIX = 16


def shared_prefix_length(sequences: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving every sequence at least one token of its own."""
    if not sequences:
        return 0
    first, n = sequences[0], min(len(s) for s in sequences) - 1
    for s in sequences[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return max(0, n)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    bf16: bool,
    stop: str | None = None,
    add_special_tokens: bool = True,
    reuse_prefix: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    model.eval()
    ids = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
    n_prefix = shared_prefix_length(ids) if reuse_prefix else 0
    prefix_cache = None
    if n_prefix >= MIN_SHARED_PREFIX:
        with autocast(device, bf16):
            prefix_cache = model(input_ids=torch.tensor([ids[0][:n_prefix]], device=device), use_cache=True)
        prefix_cache = prefix_cache.past_key_values
    else:
        n_prefix = 0
    prefix = ids[0][:n_prefix] if ids else []
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
    outputs: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    extra = {"stop_strings": [stop], "tokenizer": tokenizer} if stop else {}
    lm: Any = model  # a transformers model or a PEFT wrapper: generate is theirs, not torch.nn.Module's
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        suffixes = [ids[i][n_prefix:] for i in idx]
        width = max(len(s) for s in suffixes)
        input_ids = torch.tensor([prefix + [pad] * (width - len(s)) + s for s in suffixes], device=device)
        mask = torch.tensor(
            [[1] * n_prefix + [0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device
        )
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(idx))
        with autocast(device, bf16):
            out = lm.generate(
                input_ids=input_ids,
                attention_mask=mask,
                past_key_values=cache,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
                **extra,
            )
        new = out[:, input_ids.shape[1] :]  # (B, generated tokens)
        for row, i in enumerate(idx):
            text = tokenizer.decode(new[row], skip_special_tokens=True)
            outputs[i] = text.split(stop)[0] if stop else text
        if on_batch is not None:
            on_batch(len(idx))
    return outputs
