"""Loading a resolved model and its tokenizer for a run."""

from __future__ import annotations

import torch

from tunebench.models.zoo import ResolvedModel


def load_tokenizer(model: ResolvedModel):
    from transformers import AutoTokenizer  # lazy: slow import

    tokenizer = AutoTokenizer.from_pretrained(model.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders often ship without one; padding is masked anyway
    return tokenizer


def load_causal_lm(model: ResolvedModel, device: torch.device, **kwargs) -> torch.nn.Module:
    """The causal LM in fp32 on `device`; `kwargs` go to from_pretrained (a quantization config, say)."""
    from transformers import AutoModelForCausalLM  # lazy: slow import

    kwargs.setdefault("dtype", torch.float32)
    lm: torch.nn.Module = AutoModelForCausalLM.from_pretrained(model.path, **kwargs)
    if "quantization_config" not in kwargs:  # quantized weights are placed by bitsandbytes itself
        lm = lm.to(device)
    return lm.eval()
