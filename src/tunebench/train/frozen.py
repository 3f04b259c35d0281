"""Frozen lower blocks, computed once.

When every parameter a run trains sits at or above transformer block L (partial fine-tuning of the last k
blocks; an adapter on the top layers only), the states entering block L are a fixed function of each
training example: the same at every step, epoch, seed and learning-rate candidate. So they are computed once,
in eval mode, kept on disk under the tunebench cache, and every training step runs only block L and above:
the blocks below are swapped for a pass-through, and block L reads the cached states instead of its input.
The model's own forward still runs around them (embeddings, attention masks, position embeddings), so this
works for any architecture whose blocks take the hidden states as their first argument.

The one difference from running the frozen blocks: they run without dropout (eval mode), where the uncached
path applies the model's dropout in them too. `Budget.cache_frozen: false` keeps the uncached path.
Prediction and dev evaluation always run the whole model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tunebench.core.paths import cache_dir
from tunebench.train.data import Batch, Encoded, collate
from tunebench.train.device import autocast
from tunebench.train.loop import LossFn


class _Reached(Exception):
    """Raised by the hook on block L to end a forward pass once its input is known."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def _block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@dataclass
class FrozenPrefix:
    """The first trained block and how the blocks below answer, found on one example."""

    layer: int
    """Block L: the lowest block with a trained parameter; blocks 0 … L-1 are cached."""
    tuple_out: bool
    """The blocks return a tuple (hidden states first) rather than a tensor."""


def find_frozen_prefix(
    model: torch.nn.Module, blocks: torch.nn.ModuleList, loss_fn: LossFn, probe: Batch
) -> FrozenPrefix | None:
    """Where training may start from cached states, or None: when block 0 trains, when no block does, or
    when a trained parameter runs before the first trained block (a trained input embedding, tied to a
    trained output head; a soft prompt), since its gradient must then flow through the frozen blocks.

    Found by running `loss_fn` on `probe` (one example) with hooks: the order in which modules that hold
    trained parameters run, against block L's turn."""
    trained = [any(p.requires_grad for p in b.parameters()) for b in blocks]
    if True not in trained or trained[0]:
        return None
    layer = trained.index(True)
    in_upper = {id(m) for b in blocks[layer:] for m in b.modules()}
    holders = [
        m
        for m in model.modules()
        if id(m) not in in_upper and any(p.requires_grad for p in m.parameters(recurse=False))
    ]
    order: list[str] = []
    out_kind: list[bool] = []
    handles = [m.register_forward_pre_hook(lambda *_: order.append("trained")) for m in holders]
    handles.append(
        blocks[0].register_forward_hook(lambda _m, _a, out: out_kind.append(isinstance(out, tuple)))
    )

    def reach(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        order.append("block")
        raise _Reached(_block_input(args, kwargs))

    handles.append(blocks[layer].register_forward_pre_hook(reach, with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            loss_fn(model, probe)
    except _Reached:
        pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not order or order[0] != "block" or not out_kind:
        return None
    return FrozenPrefix(layer, out_kind[0])


@torch.no_grad()
def block_inputs(
    model: torch.nn.Module,
    blocks: torch.nn.ModuleList,
    prefix: FrozenPrefix,
    loss_fn: LossFn,
    examples: list[Encoded],
    *,
    pad_id: int,
    device: torch.device,
    bf16: bool,
    batch_size: int,
) -> list[torch.Tensor]:
    """Each example's states entering block L (T × d, on the CPU), computed in eval mode in batches of
    similar length; the forward stops at block L, so the blocks above cost nothing here."""

    def grab(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        raise _Reached(_block_input(args, kwargs))

    handle = blocks[prefix.layer].register_forward_pre_hook(grab, with_kwargs=True)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    out: list[torch.Tensor | None] = [None] * len(examples)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate([examples[i] for i in idx], pad_id).to(device)
            try:
                with autocast(device, bf16):
                    loss_fn(model, batch)
                raise RuntimeError(f"block {prefix.layer} did not run in the forward pass")
            except _Reached as reached:
                hidden = reached.hidden.detach().cpu()
            for row, i in enumerate(idx):
                out[i] = hidden[row, : len(examples[i].ids)].clone()
    finally:
        handle.remove()
        model.train(was_training)
    assert all(h is not None for h in out)
    return [h for h in out if h is not None]


class _PassThrough(torch.nn.Module):
    """Stands in for a frozen block while its output is replayed from the cache."""

    def __init__(self, tuple_out: bool) -> None:
        super().__init__()
        self.tuple_out = tuple_out

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return (hidden_states,) if self.tuple_out else hidden_states


@contextmanager
def replayed(blocks: torch.nn.ModuleList, prefix: FrozenPrefix, hidden: torch.Tensor) -> Iterator[None]:
    """Within the block, blocks 0 … L-1 pass their input through and block L reads `hidden` (B × T × d)."""
    originals = [blocks[i] for i in range(prefix.layer)]

    def feed(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    for i in range(prefix.layer):
        blocks[i] = _PassThrough(prefix.tuple_out)
    handle = blocks[prefix.layer].register_forward_pre_hook(feed, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        for i, block in enumerate(originals):
            blocks[i] = block


@dataclass
class CachedPrefix:
    """What training from cached states changed, for the run's record."""

    layer: int
    """Blocks below this one were computed once and replayed (the first trained block)."""
    seconds: float
    """Time spent computing (or loading) the cached states."""
    from_disk: bool
    """The states were computed by an earlier run and read from the cache."""

    def record(self) -> dict[str, Any]:
        return {"cached_blocks": self.layer, "seconds": round(self.seconds, 3), "from_disk": self.from_disk}


def train_from_cache(
    model: torch.nn.Module,
    blocks: torch.nn.ModuleList,
    loss_fn: LossFn,
    examples: list[Encoded],
    *,
    key: list[Any],
    name: str,
    pad_id: int,
    device: torch.device,
    bf16: bool,
    batch_size: int,
) -> tuple[list[Encoded], LossFn, CachedPrefix] | None:
    """The examples with their cached block-L inputs and a loss that replays them, or None when the run
    cannot start from cached states (see `find_frozen_prefix`).

    `key` holds what changes the states besides the examples' tokens (the weights, their dtypes and
    quantization, bf16); the file is `<cache>/hidden/<name>-<hash>.safetensors`."""
    if not examples:
        return None
    prefix = find_frozen_prefix(model, blocks, loss_fn, collate(examples[:1], pad_id).to(device))
    if prefix is None:
        return None
    start = time.perf_counter()
    h = hashlib.sha256(json.dumps([*key, prefix.layer, bf16], sort_keys=True, default=str).encode())
    for e in examples:
        h.update(json.dumps(e.ids).encode() + b"\0")
    path = cache_dir() / "hidden" / f"{name}-{h.hexdigest()[:20]}.safetensors"
    from_disk = path.exists()
    if from_disk:
        stored = load_file(str(path))
        lengths = stored["lengths"].tolist()
        hidden = list(torch.split(stored["hidden"], lengths))
    else:
        hidden = block_inputs(
            model, blocks, prefix, loss_fn, examples,
            pad_id=pad_id, device=device, bf16=bf16, batch_size=batch_size,
        )  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        lengths = [len(t) for t in hidden]
        save_file({"hidden": torch.cat(hidden), "lengths": torch.tensor(lengths)}, str(partial))
        partial.replace(path)  # never a half-written cache file under the final name
    cached = [replace(e, hidden=t) for e, t in zip(examples, hidden, strict=True)]

    def replaying_loss(m: torch.nn.Module, batch: Batch) -> torch.Tensor:
        assert batch.hidden is not None  # every example carries its states
        with replayed(blocks, prefix, batch.hidden):
            return loss_fn(m, batch)

    return cached, replaying_loss, CachedPrefix(prefix.layer, time.perf_counter() - start, from_disk)
