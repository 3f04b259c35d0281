"""The training loop on a tiny model: target-only loss is the model's own loss, and training learns."""

from __future__ import annotations

import itertools

import pytest
import torch

from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.train.budget import Budget
from tunebench.train.data import IGNORE, Encoded, batch_stream, collate, encode, epoch_order
from tunebench.train.loop import TrainingError, train
from tunebench.train.loss import full_forward_loss, target_loss


def _batch(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    examples, truncated = encode(tok, ["12 + 3 =", "7 + 70 ="], ["15", "77"], max_length=64)
    assert truncated == 0
    return tok, collate(examples, tok.pad_token_id)


def test_labels_cover_only_the_target(tiny_llama):
    tok, batch = _batch(tiny_llama)
    for row in range(2):
        labelled = batch.labels[row][batch.labels[row] != IGNORE].tolist()
        # " 15" or " 77" and the end-of-sequence token, nothing from the prompt or the padding
        assert tok.decode(labelled[:-1]).strip() in {"15", "77"}
        assert labelled[-1] == tok.eos_token_id


def test_target_loss_equals_the_models_own_loss(tiny_llama):
    """Applying the head at target positions only must not change the loss."""
    _, batch = _batch(tiny_llama)
    model = load_causal_lm(tiny_llama, torch.device("cpu"))
    with torch.no_grad():
        fast = target_loss(model, batch)
        plain = full_forward_loss(model, batch)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_truncation_keeps_the_target_and_is_counted(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    examples, truncated = encode(tok, ["1 + 1 = " * 20], ["2"], max_length=10)
    assert truncated == 1
    assert len(examples[0].ids) == 10
    assert examples[0].ids[-1] == tok.eos_token_id


def test_full_training_lowers_the_loss(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, torch.device("cpu"))
    examples, _ = encode(tok, [f"{a} + {a} =" for a in range(16)], [str(2 * a) for a in range(16)], 64)
    budget = Budget(steps=30, batch_size=8, lr=3e-3, warmup=0.0)
    stats = train(
        model,
        target_loss,
        examples,
        budget,
        seed=0,
        pad_id=tok.pad_token_id,
        device=torch.device("cpu"),
        bf16=False,
    )
    assert stats.steps == 30
    assert stats.examples == 30 * 8
    assert stats.tokens > stats.target_tokens > 0
    assert stats.max_width == max(len(e.ids) for e in examples)  # 30 batches of 8 drew every example
    assert sum(stats.losses[-5:]) / 5 < 0.7 * sum(stats.losses[:5]) / 5


def test_same_seed_same_losses(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    examples, _ = encode(tok, [f"{a} + 1 =" for a in range(12)], [str(a + 1) for a in range(12)], 64)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = load_causal_lm(tiny_llama, torch.device("cpu"))
        budget = Budget(steps=5, batch_size=4, lr=1e-3)
        runs.append(
            train(
                model,
                target_loss,
                examples,
                budget,
                seed=3,
                pad_id=tok.pad_token_id,
                device=torch.device("cpu"),
                bf16=False,
            ).losses
        )
    assert runs[0] == runs[1]


def test_a_nan_loss_stops_training_with_the_step(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, torch.device("cpu"))
    examples, _ = encode(tok, ["1 + 1 ="] * 4, ["2"] * 4, 64)

    def nan_after_two(model, batch, calls=[0]):  # noqa: B006 - a call counter
        calls[0] += 1
        loss = target_loss(model, batch)
        return loss * float("nan") if calls[0] > 2 else loss

    with pytest.raises(TrainingError, match="step 3"):
        train(
            model,
            nan_after_two,
            examples,
            Budget(steps=5, batch_size=2),
            seed=0,
            pad_id=tok.pad_token_id,
            device=torch.device("cpu"),
            bf16=False,
        )


def _varied(n: int = 400, seed: int = 0) -> list[Encoded]:
    """Examples of 5 to 64 tokens, like BANKING77's questions."""
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 65, (n,), generator=rng).tolist()
    return [Encoded(ids=[1] * k, n_prompt=0, label=i % 3) for i, k in enumerate(lengths)]


def test_length_grouped_batches_pad_little_in_random_order():
    examples, bs = _varied(), 16
    random_order = epoch_order(examples, bs, seed=0, epoch=0, by_length=False)
    grouped = epoch_order(examples, bs, seed=0, epoch=0, by_length=True)
    assert sorted(grouped) == list(range(len(examples)))  # every example once
    assert grouped == epoch_order(
        examples, bs, seed=0, epoch=0, by_length=True
    )  # a function of (seed, epoch)
    assert grouped != epoch_order(examples, bs, seed=0, epoch=1, by_length=True)

    def padded(order: list[int]) -> float:
        batches = [order[i : i + bs] for i in range(0, len(order) - bs + 1, bs)]
        width = sum(bs * max(len(examples[i].ids) for i in b) for b in batches)
        return width / sum(len(examples[i].ids) for b in batches for i in b)

    assert padded(random_order) > 1.5 and padded(grouped) < 1.25  # mega-batches of 6 batches here
    longest = max(range(len(examples)), key=lambda i: len(examples[i].ids))
    assert len(examples[longest].ids) == max(len(examples[i].ids) for i in grouped[:bs])  # peak at step 1
    widths = [
        max(len(examples[i].ids) for i in grouped[k : k + bs]) for k in range(bs, len(grouped) - bs, bs)
    ]
    # batches in random order, not longest to shortest within each mega-batch as Trainer leaves them
    assert widths != sorted(widths, reverse=True)
    falls = sum(a > b for a, b in itertools.pairwise(widths))
    assert 0.25 < falls / (len(widths) - 1) < 0.75


def test_a_resumed_length_grouped_stream_draws_what_it_would_have():
    examples = _varied(100)
    whole = batch_stream(examples, 8, seed=3, pad_id=0, group_by_length=True)
    drawn = [next(whole) for _ in range(30)]  # more than two epochs (12 batches each)
    resumed = batch_stream(examples, 8, seed=3, pad_id=0, start=17, group_by_length=True)
    for expected in drawn[17:]:
        got = next(resumed)
        assert torch.equal(got.input_ids, expected.input_ids) and torch.equal(got.labels, expected.labels)
