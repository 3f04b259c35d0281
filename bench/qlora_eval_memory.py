"""Where QLoRA's 7 GB evaluation peak on a CPU comes from: peak RSS while generating 200 answers greedily
(8 new tokens, left-padded batches) with SmolLM2-135M + LoRA r=16, by variant.

    python bench/qlora_eval_memory.py VARIANT BATCH
    VARIANT: q    QLoRA as tunebench loads it (NF4 base, bf16 compute and unquantized parts)
             q32  the same with fp32 compute and unquantized parts
             b16  no quantization, the whole model in bf16
             lora no quantization, fp32 (tunebench's LoRA on this CPU)

Run one variant per process (the peak is the process's). Needs the packaged smollm2-135m prepared
(`tunebench prepare smollm2-135m`).
"""

from __future__ import annotations

import sys
import threading
import time

import psutil
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from tunebench.models import resolve_model


def load(variant: str, path: str):
    if variant in ("q", "q32"):
        dtype = torch.bfloat16 if variant == "q" else torch.float32
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=["lm_head"],
        )
        return AutoModelForCausalLM.from_pretrained(
            path, quantization_config=quant, device_map={"": "cpu"}, dtype=dtype
        )
    dtype = torch.bfloat16 if variant == "b16" else torch.float32
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def main() -> None:
    variant, batch = sys.argv[1], int(sys.argv[2])
    path = resolve_model("smollm2-135m").path
    proc = psutil.Process()
    peak, done = [0.0], threading.Event()

    def sample() -> None:  # RSS every 10 ms: the peak of the generation alone, loading excluded below
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
            time.sleep(0.01)

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(load(variant, path), lora).eval()
    loaded = proc.memory_info().rss / 2**20
    sampler = threading.Thread(target=sample)
    sampler.start()
    prompts = [f"{100 + i} + {300 + 2 * i} =" for i in range(200)]
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(prompts), batch):
            enc = tok(prompts[first : first + batch], return_tensors="pt", padding=True)
            model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    print(f"{variant} batch {batch}: loaded {loaded:.0f} MB, peak {peak[0]:.0f} MB, {seconds:.1f} s")


if __name__ == "__main__":
    main()
