"""Architecture shapes: the handful of numbers that decide what a transformer costs to train.

A model's cost is a function of its shapes (width, depth, heads, feed-forward width, vocabulary), not of
its weights, so the estimator works from a shape record. Shapes come from any Hugging Face `config.json`
(a folder, the file itself, or a hub id when online), from the packaged models, or from named presets of
well-known sizes (Llama 2 7B/13B/70B, LLaMA-1 65B, GPT-3 175B) so that planning needs no download.

Parameter counts are exact for the architectures modelled (Llama-style gated MLPs, GPT-2/GPT-3 and BERT
plain MLPs, Gemma 3's extra norms); a test checks them against models built from the same configs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunebench.core.errors import SpecError, UnknownNameError, did_you_mean
from tunebench.core.paths import cache_dir
from tunebench.models import MODELS
from tunebench.models.arch import Arch
from tunebench.models.zoo import READY, resolve_model

#: model_type values whose MLP is gated (SwiGLU / GeGLU: gate, up and down projections).
GATED_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma",
        "gemma2",
        "gemma3_text",
        "phi3",
        "olmo",
        "olmo2",
        "granite",
    }
)


def _llama(
    name: str,
    d: int,
    layers: int,
    heads: int,
    ff: int,
    *,
    kv: int | None = None,
    vocab: int = 32000,
    tied: bool = False,
    source: str,
) -> Arch:
    return Arch(
        name=name,
        kind="decoder",
        hidden=d,
        layers=layers,
        heads=heads,
        kv_heads=kv or heads,
        head_dim=d // heads,
        intermediate=ff,
        vocab=vocab,
        gated_mlp=True,
        tied_embeddings=tied,
        source=source,
    )


#: Named sizes, from the papers' and model cards' configs.
PRESETS: dict[str, Arch] = {
    # Llama 2 (Touvron et al., 2023b), the "Llama family" sizes most users plan for.
    "7B": _llama("7B", 4096, 32, 32, 11008, source="Llama 2 7B (meta-llama/Llama-2-7b-hf config)"),
    "13B": _llama("13B", 5120, 40, 40, 13824, source="Llama 2 13B (meta-llama/Llama-2-13b-hf config)"),
    "70B": _llama("70B", 8192, 80, 64, 28672, kv=8, source="Llama 2 70B (meta-llama/Llama-2-70b-hf config)"),
    # Llama 3 8B: same width and depth as 7B, grouped-query attention and a 128k vocabulary.
    "8B": _llama(
        "8B", 4096, 32, 32, 14336, kv=8, vocab=128256, source="Llama 3 8B (meta-llama/Meta-Llama-3-8B config)"
    ),
    # LLaMA-1 (Touvron et al., 2023a), the model QLoRA (Dettmers et al., 2023) fine-tunes at 65B.
    "33B": _llama("33B", 6656, 60, 52, 17920, source="LLaMA-1 33B (Touvron et al., 2023, Table 2)"),
    "65B": _llama("65B", 8192, 80, 64, 22016, source="LLaMA-1 65B (Touvron et al., 2023, Table 2)"),
    # GPT-3 175B (Brown et al., 2020, Table 2.1): d=12288, 96 layers and heads, 4d MLP, 2048 positions,
    # GPT-2 style (LayerNorm, biases, learned positions, tied head), the model of the LoRA paper.
    "175B": Arch(
        name="175B",
        kind="decoder",
        hidden=12288,
        layers=96,
        heads=96,
        kv_heads=96,
        head_dim=128,
        intermediate=4 * 12288,
        vocab=50257,
        gated_mlp=False,
        positions=2048,
        attention_bias=True,
        mlp_bias=True,
        layer_norm=True,
        source="GPT-3 175B (Brown et al., 2020, Table 2.1)",
    ),
    # The packaged models, so planning does not need them prepared (shapes from their config.json).
    "smollm2-135m": _llama(
        "smollm2-135m", 576, 30, 9, 1536, kv=3, vocab=49152, tied=True, source="SmolLM2-135M-Instruct config"
    ),
    "gemma3-270m": Arch(
        name="gemma3-270m",
        kind="decoder",
        hidden=640,
        layers=18,
        heads=4,
        kv_heads=1,
        head_dim=256,
        intermediate=2048,
        vocab=262144,
        gated_mlp=True,
        norms_per_layer=4,
        qk_norm=True,
        source="Gemma 3 270M config (google/gemma-3-270m)",
    ),
    "minilm-l6": Arch(
        name="minilm-l6",
        kind="encoder",
        hidden=384,
        layers=6,
        heads=12,
        kv_heads=12,
        head_dim=32,
        intermediate=1536,
        vocab=30522,
        gated_mlp=False,
        positions=512,
        token_types=2,
        attention_bias=True,
        mlp_bias=True,
        layer_norm=True,
        pooler=True,
        source="all-MiniLM-L6-v2 config",
    ),
}
ALIASES = {
    "gpt3": "175B",
    "gpt-3": "175B",
    "llama-7b": "7B",
    "llama-13b": "13B",
    "llama-70b": "70B",
    "llama-65b": "65B",
    "llama-33b": "33B",
    "llama-30b": "33B",
    "llama3-8b": "8B",
}


def _get(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def from_config(cfg: dict[str, Any], name: str, source: str) -> Arch:
    """Shapes from a Hugging Face config dict (Llama-likes, Gemma, GPT-2, BERT and their relatives)."""
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers (Gemma 3 4B+) nest the LM
        cfg = {**cfg["text_config"], "architectures": cfg.get("architectures")}
    where = f"{source}"
    if _get(cfg, "num_local_experts", "num_experts", "n_routed_experts"):
        raise SpecError(f"{where}: mixture-of-experts models are not modelled by the estimator")
    model_type = str(cfg.get("model_type", ""))
    d = _get(cfg, "hidden_size", "n_embd", "d_model")
    layers = _get(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _get(cfg, "num_attention_heads", "n_head")
    vocab = _get(cfg, "vocab_size")
    for key, value in (
        ("hidden_size", d),
        ("num_hidden_layers", layers),
        ("num_attention_heads", heads),
        ("vocab_size", vocab),
    ):
        if not isinstance(value, int) or value < 1:
            raise SpecError(f"{where}: config has no usable {key!r} (got {value!r})")
    archs = " ".join(cfg.get("architectures") or [])
    encoder = model_type in {"bert", "roberta", "distilbert", "xlm-roberta", "electra", "deberta-v2"} or (
        archs and "CausalLM" not in archs and "LMHead" not in archs
    )
    gated = model_type in GATED_TYPES or (
        not encoder and _get(cfg, "hidden_act", "hidden_activation") == "silu"
    )
    plain = not gated
    gemma3 = model_type.startswith("gemma3")
    return Arch(
        name=name,
        kind="encoder" if encoder else "decoder",
        hidden=d,
        layers=layers,
        heads=heads,
        kv_heads=_get(cfg, "num_key_value_heads", default=heads),
        head_dim=_get(cfg, "head_dim", default=d // heads),
        intermediate=_get(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * d),
        vocab=vocab,
        gated_mlp=gated,
        tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        positions=_positions(cfg, model_type) if plain else 0,
        token_types=_get(cfg, "type_vocab_size", default=0) if encoder else 0,
        attention_bias=bool(cfg.get("attention_bias", plain)),
        qkv_bias=model_type == "qwen2",
        mlp_bias=bool(cfg.get("mlp_bias", plain)),
        layer_norm=plain,
        norms_per_layer=4 if gemma3 or model_type == "gemma2" else 2,
        qk_norm=gemma3 or model_type == "qwen3",
        pooler=model_type == "bert",
        source=source,
    )


def _positions(cfg: dict[str, Any], model_type: str) -> int:
    """Learned position embeddings; OPT keeps two extra rows (its positions start at 2)."""
    n = _get(cfg, "n_positions", "max_position_embeddings", default=0)
    return n + 2 if model_type == "opt" and n else n


def resolve_arch(spec: str, *, flag: str = "--model") -> Arch:
    """A preset size (7B, 65B, 175B …), a registered model, a folder or config.json, or a hub id."""
    key = ALIASES.get(spec.lower(), spec)
    upper = key.upper()
    if upper in PRESETS:
        return PRESETS[upper]
    path = Path(spec).expanduser()
    if path.is_file():
        return from_config(_read_json(path, flag), path.parent.name or path.stem, str(path))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise SpecError(f"{flag} {spec}: the folder has no config.json")
        return from_config(_read_json(path / "config.json", flag), path.name, str(path / "config.json"))
    registered = _registered(spec)
    if registered is not None:
        return registered
    if key in PRESETS:
        return PRESETS[key]
    if "/" in spec and not spec.startswith((".", "/")):
        return _from_hub(spec, flag)

    known = [*PRESETS, *(n for n in MODELS if n not in PRESETS)]
    raise UnknownNameError(
        f"{flag} {spec!r}: not a preset size, a registered model, a folder or a config file."
        f"{did_you_mean(spec, [*known, *ALIASES])} Presets and models: {', '.join(known)}; "
        "or give a Hugging Face folder, a config.json, or a hub id (org/name)"
    )


def _registered(name: str) -> Arch | None:
    """A registered model: its prepared config when prepared, else its preset, else prepare it (tiny ones)."""

    if name not in MODELS:
        return None
    folder = cache_dir() / "models" / name
    if (folder / READY).exists():
        return replace(from_config(_read_json(folder / "config.json", "--model"), name, name), source=name)
    if name in PRESETS:
        return PRESETS[name]
    resolved = resolve_model(name)
    return from_config(_read_json(Path(resolved.path) / "config.json", "--model"), name, name)


def _read_json(path: Path, flag: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SpecError(f"{flag} {path}: not a readable JSON config ({e})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{flag} {path}: expected a JSON object")
    return data


def _from_hub(name: str, flag: str) -> Arch:
    try:
        from transformers import AutoConfig  # lazy: slow import

        cfg = AutoConfig.from_pretrained(name).to_dict()
    except Exception as e:  # offline, gated or a typo: transformers raises several types
        raise UnknownNameError(
            f"{flag} {name!r}: the hub could not provide its config ({type(e).__name__}). Use a preset "
            f"({', '.join(PRESETS)}) or a local config.json"
        ) from None
    return from_config(cfg, name.split("/")[-1], name)
