"""Batched greedy generation with left padding.

Prompts are sorted by length so that each batch pads little, generation stops at the end-of-sequence
token (or a stop string such as a newline for plain few-shot prompts), and outputs come back in the
caller's order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tunebench.train.device import autocast


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
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    model.eval()
    tokenizer.padding_side = "left"  # generated tokens must follow the prompt directly
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    eos = tokenizer.eos_token_id
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [prompts[i] for i in idx],
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special_tokens,
        ).to(device)
        extra = {"stop_strings": [stop], "tokenizer": tokenizer} if stop else {}
        with autocast(device, bf16):
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
                **extra,
            )
        new = out[:, enc["input_ids"].shape[1] :]  # (B, new tokens)
        for row, i in enumerate(idx):
            text = tokenizer.decode(new[row], skip_special_tokens=True)
            outputs[i] = text.split(stop)[0] if stop else text
        if on_batch is not None:
            on_batch(len(idx))
    return outputs
