"""How a model's hidden states become one vector per text, decided in one place for the probe and every
classification head, so that a probe and a fine-tuned head read the same representation.

The rule (`model_pooling`):

1. a sentence-transformers model says how it was trained to be read: its Pooling module's config
   (`modules.json` → `1_Pooling/config.json`): cls, mean, max, last token, mean / sqrt(length) or
   position-weighted mean. all-MiniLM-L6-v2 says mean.
2. otherwise an encoder is read by the mean over its tokens: a BERT's raw [CLS] state is trained only for
   next-sentence prediction (through the tanh pooler layer, which tunebench drops), and the mean of the
   token states is the better sentence feature (Reimers & Gurevych, 2019, Sentence-BERT, Table 1 and §6).
3. otherwise a decoder is read at its last non-padding token, the only one that has seen the whole input
   (what transformers' `*ForSequenceClassification` does for Llama, Gemma, Qwen...).

Features of a frozen trunk are cached on disk (per model, weights, pooling, length, precision and texts),
shared by the probe and by LP-FT's probe before fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from tunebench.core.paths import cache_dir
from tunebench.models.fingerprint import loaded_weights_key
from tunebench.models.zoo import ResolvedModel
from tunebench.train.data import collate, encode_labelled
from tunebench.train.device import autocast

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tunebench.methods.base import Context

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

POOLINGS = ("cls", "mean", "max", "last", "mean_sqrt_len", "weighted_mean")
#: sentence-transformers' Pooling config keys, in the order it concatenates them when several are set.
ST_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weighted_mean",
    "pooling_mode_lasttoken": "last",
}

#: (B, T) token ids and attention mask → (B, H) pooled vectors.
Embed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Pooling:
    mode: str
    """One of POOLINGS."""
    source: str
    """Why this mode: the config file that says so, or the default rule that chose it."""


def model_pooling(model: ResolvedModel) -> Pooling:
    """The model's own pooling (see the module docstring for the rule)."""
    config = _sentence_transformers_pooling(model.path)
    if config is not None:
        path, data = config
        modes = [mode for key, mode in ST_MODES.items() if data.get(key)]
        if modes:
            # Several modes are concatenated by sentence-transformers; one vector is read here, the first.
            extra = f" (of {', '.join(modes)})" if len(modes) > 1 else ""
            return Pooling(modes[0], f"sentence-transformers {path}{extra}")
    if model.kind == "decoder":
        return Pooling("last", "default for decoders: the last non-padding token")
    return Pooling("mean", "default for encoders without a sentence-transformers config: the token mean")


def _sentence_transformers_pooling(path: str) -> tuple[str, dict[str, Any]] | None:
    """(file, config) of a local sentence-transformers folder's Pooling module, or None."""
    folder = Path(path)
    if not folder.is_dir():
        return None  # a hub id: transformers fetched only the model's own files
    try:
        modules = json.loads((folder / "modules.json").read_text())
        where = next(m["path"] for m in modules if m.get("type", "").endswith(".Pooling"))
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        where = "1_Pooling"  # the folder sentence-transformers writes, found without modules.json too
    file = folder / where / "config.json"
    try:
        return f"{where}/config.json", json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, H) hidden states and the (B, T') attention mask → (B, H).

    Prefix tuning passes a mask that also covers its T' - T key/value prefixes, which have no hidden state:
    the mask's last T columns are the hidden states'. Prompt tuning's virtual tokens are real positions.
    """
    mask = mask[:, -hidden.shape[1] :]
    if mode == "cls":
        return hidden[:, 0]
    positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device)  # (T,)
    if mode == "last":
        last = (mask * positions).argmax(1)  # the last real token, on whichever side the padding is
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values
    if mode == "weighted_mean":
        m = m * positions.to(hidden.dtype)[None, :, None]  # later tokens weigh more (SGPT)
    total, count = (hidden * m).sum(1), m.sum(1).clamp(min=1)
    return total / (count.sqrt() if mode == "mean_sqrt_len" else count)


def trunk_pooled(
    trunk: torch.nn.Module, mode: str, input_ids=None, attention_mask=None, **trunk_kwargs: Any
) -> torch.Tensor:
    """(B, H): the trunk's last hidden states pooled by `mode`; what the probe fits on and what a
    classification head reads (`trunk_kwargs`: a PEFT wrapper's inputs_embeds or past_key_values)."""
    given = {k: v for k, v in trunk_kwargs.items() if v is not None}
    hidden = trunk(input_ids=input_ids, attention_mask=attention_mask, **given).last_hidden_state
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    return pool(hidden, attention_mask, mode)


def load_trunk(model: ResolvedModel, device: torch.device, **kwargs: Any) -> PreTrainedModel:
    """The model without any output head (transformers' AutoModel), fp32 unless `kwargs` say otherwise.

    BERT's pooler is dropped (`drop_pooler`).
    """
    from transformers import AutoModel  # lazy: slow import

    kwargs.setdefault("dtype", torch.float32)
    trunk = drop_pooler(AutoModel.from_pretrained(model.path, **kwargs))
    if "quantization_config" not in kwargs:  # quantized weights are placed by bitsandbytes itself
        trunk = trunk.to(device)
    return trunk.eval()


def drop_pooler(trunk: ModuleT) -> ModuleT:
    """The trunk without BERT's pooler (tanh of a dense layer over [CLS], trained for next-sentence
    prediction): every reader here pools the hidden states itself, and an unused layer would count as
    trained parameters. Models without one are returned as they are."""
    if isinstance(getattr(trunk, "pooler", None), torch.nn.Module):
        # BertModel.forward skips a pooler that is None; torch's stubs leave out the None that
        # Module.__setattr__ accepts for a registered submodule
        trunk.pooler = None  # type: ignore[assignment]
    return trunk


def pooled_features(
    embed: Embed, tokenizer, texts: list[str], ctx: Context, cache: Path | None
) -> np.ndarray:
    """(N, H) float32 features of `texts`, computed in length-sorted batches, or read from `cache`."""
    if cache is not None and cache.exists():
        return np.load(cache)
    encoded, _ = encode_labelled(tokenizer, texts, [0] * len(texts), ctx.budget.max_length)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
    rows: list[np.ndarray] = [np.empty(0)] * len(texts)
    with torch.no_grad():
        for start in range(0, len(order), ctx.budget.eval_batch_size):
            idx = order[start : start + ctx.budget.eval_batch_size]
            batch = collate([encoded[i] for i in idx], tokenizer.pad_token_id).to(ctx.device)
            with autocast(ctx.device, ctx.bf16):
                pooled = embed(batch.input_ids, batch.attention_mask)  # (B, H)
            for i, row in zip(idx, pooled.float().cpu().numpy(), strict=True):
                rows[i] = row
    out = np.stack(rows).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache)  # atomic: a concurrent reader never sees half a file
    return out


def feature_cache(
    model: ResolvedModel, trunk: torch.nn.Module, mode: str, ctx: Context, texts: list[str]
) -> Path:
    """Where the features of `texts` through this trunk and pooling are cached: the key holds everything
    that changes them (weights, pooling, length, bf16, the trunk's dtypes and quantization)."""
    path, stamp, dtypes, quantization = loaded_weights_key(model, trunk)
    key = [path, stamp, mode, ctx.budget.max_length, ctx.bf16, dtypes, quantization]  # as before: same files
    h = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    for t in texts:
        h.update(t.encode() + b"\0")
    return cache_dir() / "features" / f"{model.name}-{h.hexdigest()[:20]}.npy"
