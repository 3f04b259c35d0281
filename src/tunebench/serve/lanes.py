"""Lanes: the models a server holds, and which requests may share a batch on each.

One batch runs on one lane. The shared lane is the base model with every adapter PEFT can mix in one
batch (LoRA and its relatives, through `adapter_names`); its rows may each name a different adapter, or
none for the base model itself. Everything else gets a lane of its own, served in its own batches:
a whole model (full fine-tuning), an adapter that prepends virtual tokens (prefix or prompt tuning run
through PEFT's generate), an adapter PEFT refuses to mix (DoRA, for one), or one adapter merged into the
base. Whether an adapter mixes is asked of PEFT when it is loaded — a one-token forward with
`adapter_names` — so no code here knows a method's or adapter type's name.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunebench.serve.artifacts import Artifact, ArtifactError
from tunebench.serve.mixlora import StackedLora, is_plain

if TYPE_CHECKING:
    from peft import PeftModel

log = logging.getLogger("tunebench.serve")

#: PEFT's name for "no adapter" in a mixed batch.
BASE = "__base__"


@dataclass
class Loader:
    """Loads models and tokenizers the same way everywhere: safetensors only, remote code only if asked."""

    device: torch.device
    trust_remote_code: bool = False

    def model(self, path: str | Path) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM  # lazy: slow import

        dtype = (
            torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        )
        try:
            # as a Module: functools.wraps on PreTrainedModel.to hides its signature from type checkers
            model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=dtype, use_safetensors=True, trust_remote_code=self.trust_remote_code
            )
        except (OSError, ValueError) as e:
            raise ArtifactError(
                f"{path}: cannot load a causal language model from safetensors ({e})"
            ) from None
        return model.to(self.device).eval()

    def tokenizer(self, path: str | Path):
        from transformers import AutoTokenizer  # lazy: slow import

        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=self.trust_remote_code)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # padding is masked; decoders often ship without one
        tokenizer.padding_side = "left"
        return tokenizer


class NotMixable(Exception):
    """An adapter that cannot share the shared lane's batches; the message says why."""


class Lane:
    """A model, its tokenizer, and how to run a batch of rows (each row names its adapter or None)."""

    name: str
    model: torch.nn.Module | None
    """None once the lane is closed."""
    mixes = False

    def __init__(self, name: str, model: torch.nn.Module, tokenizer) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        """Encodes requests, on the HTTP side's thread."""
        self.detokenizer = copy.deepcopy(tokenizer)
        """Decodes tokens on the engine's thread: a Rust tokenizer shared by two threads can fail with
        'Already borrowed', so each side has its own."""

    @property
    def context(self) -> int | None:
        """The model's context length in tokens, when its config says."""
        return getattr(getattr(self.model, "config", None), "max_position_embeddings", None)

    def batch_key(self, adapter: str | None, mixed: bool) -> Hashable:
        """Rows with equal keys may run in one batch."""
        return (self.name,)

    @contextlib.contextmanager
    def activate(
        self, adapters: list[str | None], mixed: bool
    ) -> Iterator[tuple[torch.nn.Module, dict[str, Any]]]:
        """The module to call `generate` on and the extra arguments that pick each row's adapter."""
        assert self.model is not None, "the lane is closed"
        yield self.model, {}

    def close(self) -> None:
        """Let go of the weights."""
        self.model = None


class SharedLane(Lane):
    """The base model plus every adapter that PEFT can mix in one batch."""

    mixes = True

    def __init__(self, name: str, model: torch.nn.Module, tokenizer) -> None:
        super().__init__(name, model, tokenizer)
        self.peft: PeftModel | None = None  # a PeftModel around `model` once the first adapter is loaded
        self.adapters: set[str] = set()
        self.stacked: StackedLora | None = None
        self._numbers = itertools.count()

    def batch_key(self, adapter: str | None, mixed: bool) -> Hashable:
        # In per-adapter mode a batch holds one adapter; the base model counts as one more.
        return (self.name,) if mixed else (self.name, adapter)

    def add(self, artifact: Artifact) -> str:
        """Load `artifact` beside the others and return its adapter name inside this lane, or raise
        NotMixable saying why it cannot share batches. Served names never reach PEFT (a name such as
        'lora' or 'prefix' collides with PEFT's own parameter prefixes), so adapters are numbered."""
        if artifact.kind != "peft" or artifact.prompt_learning:
            raise NotMixable(f"a {artifact.summary} is not an adapter PEFT can mix with others")
        if artifact.rewrites_base:
            raise NotMixable(
                f"PEFT applies its {artifact.rewrites_base} init to the base weights again when it loads it, "
                "which would change the base that the other adapters share"
            )
        from peft import PeftModel  # lazy: slow import

        name = f"adapter{next(self._numbers)}"
        fresh = self.peft is None
        try:
            if self.peft is None:  # fresh
                assert self.model is not None, "the lane is closed"
                self.peft = PeftModel.from_pretrained(self.model, str(artifact.path), adapter_name=name)
            else:
                self.peft.load_adapter(str(artifact.path), adapter_name=name)
        except (ValueError, TypeError, KeyError, RuntimeError) as e:  # another adapter type, bad shapes
            if fresh and self.peft is not None:
                self._unwrap()
            raise NotMixable(f"PEFT cannot hold it beside the loaded adapters ({e})") from None
        self.peft.eval()  # mixed batches need eval mode
        try:
            self._probe(name)
        except NotMixable:
            self.remove(name)
            raise
        self.adapters.add(name)
        self._restack()
        return name

    def _probe(self, name: str) -> None:
        """Ask PEFT whether this adapter runs in a mixed batch: one token, two rows, two adapters."""
        assert self.model is not None and self.peft is not None  # called on a loaded adapter
        device = next(self.model.parameters()).device
        ids = torch.full((2, 1), self.tokenizer.pad_token_id or 0, device=device)
        try:
            with torch.inference_mode():
                self.peft(input_ids=ids, adapter_names=[name, BASE])
        except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
            _drop_adapter_name_hooks(self.peft)
            raise NotMixable(f"PEFT refuses it in a mixed batch ({e})") from None

    def remove(self, name: str) -> None:
        self.adapters.discard(name)
        if self.peft is None:
            return
        if not self.adapters:
            self._unwrap()  # the last adapter: give back the plain base model
        else:
            self.peft.delete_adapter(name)
            self._restack()

    def _unwrap(self) -> None:
        assert self.peft is not None
        self.model = self.peft.unload()  # removes the adapter layers without merging them
        self.peft = None
        self.stacked = None
        self.model.eval()

    def _restack(self) -> None:
        if self.stacked is None:
            self.stacked = StackedLora(self.peft)
        self.stacked.update({a for a in self.adapters if is_plain(self.peft, a)})

    @contextlib.contextmanager
    def activate(
        self, adapters: list[str | None], mixed: bool
    ) -> Iterator[tuple[torch.nn.Module, dict[str, Any]]]:
        if self.peft is None:
            assert self.model is not None, "the lane is closed"
            yield self.model, {}
        elif mixed and self.stacked is not None and self.stacked.covers(adapters):
            with self.stacked.active(adapters):  # plain LoRA: two products per layer for any mix
                yield self.peft, {}
        elif mixed:
            yield self.peft, {"adapter_names": [a or BASE for a in adapters]}  # PEFT's own mixed batch
        elif adapters[0] is None:
            with self.peft.disable_adapter():
                yield self.peft, {}
        else:
            self.peft.set_adapter(adapters[0])  # the classic swap: one active adapter per batch
            self.peft.eval()
            yield self.peft, {}


def _drop_adapter_name_hooks(model: torch.nn.Module) -> None:
    """Remove the hooks PEFT registers to pass `adapter_names` to each layer. PEFT 0.21 removes them after
    a forward that returns, not after one that raises (its context manager has no `finally`), and a hook
    left behind would hand a stale `adapter_names` to every later forward."""
    for module in model.modules():
        for key, hook in list(module._forward_pre_hooks.items()):
            if getattr(getattr(hook, "func", None), "__name__", "") == "_adapter_names_pre_forward_hook":
                del module._forward_pre_hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)


def own_lane(name: str, artifact: Artifact, base_path: str, loader: Loader, merge: bool = False) -> Lane:
    """A lane that serves one artifact alone: a whole model, or an adapter on its own copy of the base."""
    if artifact.kind == "weights":
        model = loader.model(artifact.path)
        has_tokenizer = any((artifact.path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
        return Lane(name, model, loader.tokenizer(artifact.path if has_tokenizer else base_path))
    if artifact.kind == "tensors":  # partial, bitfit: their trained weights over a copy of the base
        model = loader.model(base_path)
        put_trained(model, artifact.path)
        return Lane(name, model, loader.tokenizer(base_path))
    if artifact.kind != "peft":
        raise ArtifactError(
            f"{artifact.path}: a {artifact.summary} is served on the shared lane, not its own"
        )
    from peft import PeftModel  # lazy: slow import

    base = loader.model(base_path)
    model = PeftModel.from_pretrained(base, str(artifact.path))  # PEFT's "default" name, never the served one
    if merge:
        try:
            model = model.merge_and_unload()  # W + ΔW in place: no adapter arithmetic left per token
        except (AttributeError, ValueError, NotImplementedError) as e:
            raise ArtifactError(
                f"{artifact.path}: a {artifact.summary} cannot be merged into the base ({e})"
            ) from None
    return Lane(name, model.eval(), loader.tokenizer(base_path))


def put_trained(model: torch.nn.Module, folder: Path) -> None:
    """Overwrite the base's weights with a run's trained tensors (methods/tuning.py `export`). Tensors the
    plain model has no place for (a bottleneck adapter's modules, a classification head) are refused."""
    from safetensors.torch import load_file

    from tunebench.methods.tuning import TRAINED

    tensors = load_file(str(folder / TRAINED))
    own = dict(model.named_parameters())
    foreign = sorted(k for k in tensors if k not in own)
    if foreign:
        raise ArtifactError(
            f"{folder / TRAINED}: {len(foreign)} trained tensor(s) have no place in the base model (e.g. "
            f"{foreign[0]}): modules the method added to it, which a served base does not have"
        )
    with torch.no_grad():
        for key, value in tensors.items():
            own[key].copy_(value.to(own[key].dtype))
