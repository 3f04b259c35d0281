"""Losses on the target tokens only.

The output projection of a 49k vocabulary costs about a fifth of a step when applied at every position;
only target positions carry loss, so the head is applied to those hidden states alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from tunebench.train.data import IGNORE, Batch

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _split_causal_lm(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module, float | None]:
    """(backbone, output head, logit soft-cap) of a causal LM, looking through a PEFT wrapper."""
    wrapper: Any = model  # PEFT's API (get_base_model), which torch.nn.Module does not declare
    lm: PreTrainedModel = wrapper.get_base_model() if hasattr(wrapper, "get_base_model") else wrapper
    backbone = getattr(lm, lm.base_model_prefix)
    return backbone, lm.get_output_embeddings(), getattr(lm.config, "final_logit_softcapping", None)


def target_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over target tokens, with the head applied at those positions only."""
    backbone, head, softcap = _split_causal_lm(model)
    hidden = backbone(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask
    ).last_hidden_state  # (B, T, H)
    labels = batch.labels[:, 1:]  # position t predicts token t+1
    keep = labels != IGNORE  # (B, T-1)
    logits = head(hidden[:, :-1][keep]).float()  # (N, V), N = target tokens in the batch
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, labels[keep])


def full_forward_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The plain way: the model's own forward with labels (for wrappers that must see the whole forward,
    such as prefix tuning, which injects key/value prefixes in the PEFT model's forward)."""
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss


def classification_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of a sequence-classification model's logits (B, C) against class indices (B,)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return F.cross_entropy(logits.float(), batch.labels)
