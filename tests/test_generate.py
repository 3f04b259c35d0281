"""Batched generation: the shared-prefix cache changes speed, never predictions."""

from __future__ import annotations

import torch

from tunebench.evaluate.generate import generate, shared_prefix_length
from tunebench.models.load import load_causal_lm, load_tokenizer


def test_shared_prefix_length_leaves_each_sequence_a_token():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[7], [7, 8]]) == 0
    assert shared_prefix_length([]) == 0


def test_prefix_cache_gives_the_same_predictions(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, torch.device("cpu"))
    shots = "".join(f"{a} + {a} = {2 * a}\n" for a in range(10, 20))
    # Questions of different token lengths, so some rows are padded between prefix and question.
    prompts = [f"{shots}{q} + 1 =" for q in (3, 45, 678, 9012, 5, 66, 777, 12345)]
    kwargs = dict(max_new_tokens=6, batch_size=3, device=torch.device("cpu"), bf16=False)
    plain = generate(model, tok, prompts, reuse_prefix=False, **kwargs)
    cached = generate(model, tok, prompts, reuse_prefix=True, **kwargs)
    assert cached == plain
    assert len(tok(prompts[0])["input_ids"]) > 16  # long enough that the cache is really used


def test_outputs_come_back_in_order_and_stop_at_the_stop_string(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, torch.device("cpu"))
    prompts = ["1 + 1 =", "a much longer prompt than the first one =", "2 ="]
    kwargs = dict(max_new_tokens=8, device=torch.device("cpu"), bf16=False)
    one_by_one = [generate(model, tok, [p], batch_size=1, **kwargs)[0] for p in prompts]
    batched = generate(model, tok, prompts, batch_size=3, **kwargs)
    assert batched == one_by_one
    for text in generate(model, tok, prompts, batch_size=3, stop="\n", **kwargs):
        assert "\n" not in text
