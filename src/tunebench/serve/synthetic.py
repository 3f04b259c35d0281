"""Random LoRA adapters with fixed seeds, for tests and the serving benchmark.

A freshly initialised LoRA has B = 0 and changes nothing; these draw B at random too, so that each
adapter visibly changes the model's answers and a request routed to the wrong adapter is caught.
Saved with PEFT's `save_pretrained`, exactly as a LoRA run exports its artifact.
"""

from __future__ import annotations

from pathlib import Path

import torch


def random_lora(
    base_path: str | Path,
    out: Path,
    *,
    seed: int,
    r: int = 8,
    scale: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    use_dora: bool = False,
) -> Path:
    """Write a LoRA adapter for the model at `base_path` into `out`, with A and B ~ N(0, scale²)."""
    from peft import (  # lazy: slow import
        LoraConfig,
        get_peft_model,
    )
    from transformers import AutoModelForCausalLM  # lazy: slow import

    model = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=target_modules, use_dora=use_dora, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(str(out))
    return out
