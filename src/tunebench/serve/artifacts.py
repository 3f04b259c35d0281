"""What a folder holds and whether it can be served: read from the files, never from a method's name.

Three kinds of artifact are servable:

- a PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`): LoRA and its relatives, prefix
  and prompt tuning, IA3, ...; whether it can share a batch with other adapters is found out when it is
  loaded (see lanes.py), not assumed from its type;
- a whole model (`config.json` + `*.safetensors`): full fine-tuning, or any merged model;
- a prompt (`prompt.json`): zero- and few-shot prompting, the base model with an instruction and shots.

Only safetensors are loaded: a folder with pickled weights (`*.bin`, `*.pt`) alone is refused, because
unpickling runs code. A run store is scanned for finished runs; every run that is not served is listed
with the reason, so that a user never wonders where a run went.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunebench.core.errors import TunebenchError
from tunebench.core.store import ARTIFACT, RESULT, read_result
from tunebench.methods.peft_methods import loftq_unavailable
from tunebench.methods.tuning import TRAINED

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: peft: a PEFT adapter folder; weights: a whole model; prompt: a prompting run's instruction and shots;
#: tensors: the trained tensors of a method that trains some of the base's own weights (partial, bitfit),
#: put over a copy of the base.
Kind = Literal["peft", "weights", "prompt", "tensors"]
#: PEFT's `init_lora_weights` values (prefixes) that rewrite the base weights as the adapter is loaded.
BASE_REWRITING_INITS = ("pissa", "olora", "loftq", "corda")


class ArtifactError(TunebenchError):
    """A folder cannot be served; the message says what it holds and what was expected."""


@dataclass(frozen=True)
class Artifact:
    kind: Kind
    path: Path
    summary: str
    """In words, for /v1/models and the start-up log: 'LORA adapter', 'safetensors model', ..."""
    prompt_learning: bool = False
    """A PEFT adapter that prepends virtual tokens (prefix, prompt, p-tuning): it runs through PEFT's own
    generate and never shares a batch with another adapter."""
    trained_on: str | None = None
    """The model the run trained on (from result.json), when known."""
    rewrites_base: str | None = None
    """A LoRA init that PEFT applies to the base weights again when it loads the adapter (PiSSA, OLoRA,
    LoftQ, CorDA saved without conversion): the adapter fits that rewritten base only, so it never joins
    the shared base and gets a copy of its own."""
    run: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The run's result record, when the artifact came from a run folder."""


def check_name(name: str) -> str | None:
    """Why `name` cannot name a served model, or None. Names double as folder names under --adapter-dir,
    so they are one path component: letters, digits, '.', '_' and '-', at most 128 characters."""
    if not NAME.match(name) or ".." in name:
        return (
            f"bad name {name!r}: use letters, digits, '.', '_' and '-' (at most 128), not starting with '.'"
        )
    return None


def inspect(path: Path) -> Artifact:
    """The servable artifact in `path`, or ArtifactError saying why there is none."""
    if not path.is_dir():
        raise ArtifactError(f"{path}: not a folder")
    run = _run_record(path)
    trained_on = run.get("model") if run else None
    if (path / "classifier.json").exists() or (run and (run.get("head") or {}).get("pooling")):
        raise ArtifactError(
            f"{path}: a classification model (it answers with a label from a classifier head); tunebench "
            "serve answers chat and completion requests with generated text, so it serves generating "
            "models only"
        )
    if (path / "adapter_config.json").exists():
        return _peft(path, run, trained_on)
    if (path / "prompt.json").exists():
        return Artifact("prompt", path, _prompt_summary(path), trained_on=trained_on, run=run or {})
    if (path / TRAINED).exists():
        return Artifact("tensors", path, _tensors_summary(path), trained_on=trained_on, run=run or {})
    if (path / "config.json").exists():
        _require_safetensors(path, ["model.safetensors", "model.safetensors.index.json"], "model")
        return Artifact("weights", path, "safetensors model", trained_on=trained_on, run=run or {})
    raise ArtifactError(
        f"{path}: nothing servable (expected adapter_config.json, prompt.json, {TRAINED} or config.json + "
        "safetensors)"
    )


def _peft(path: Path, run: dict[str, Any] | None, trained_on: str | None) -> Artifact:
    from peft import PeftConfig  # lazy: slow import

    _require_safetensors(path, ["adapter_model.safetensors"], "adapter")
    try:
        config = PeftConfig.from_pretrained(str(path))
    except Exception as e:  # a damaged or foreign adapter_config.json; PEFT raises several types
        raise ArtifactError(f"{path}/adapter_config.json: not a PEFT adapter config ({e})") from None
    peft_type = str(getattr(config.peft_type, "value", config.peft_type))
    init = getattr(config, "init_lora_weights", None)
    rewrites = isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS)
    if init == "loftq" and (reason := loftq_unavailable()):
        raise ArtifactError(
            f"{path}: a LoftQ adapter fits the quantized base that PEFT rebuilds from the base as it loads "
            f"it, and LoftQ {reason}"
        )
    return Artifact(
        "peft",
        path,
        f"{peft_type} adapter",
        prompt_learning=bool(getattr(config, "is_prompt_learning", False)),
        trained_on=trained_on,
        run=run or {},
        rewrites_base=init if rewrites else None,
    )


def _tensors_summary(path: Path) -> str:
    try:
        method = json.loads((path / "method.json").read_text()).get("method", "?")
    except (OSError, ValueError):
        method = "?"
    return f"{method} trained tensors over the base"


def _require_safetensors(path: Path, names: list[str], what: str) -> None:
    if any((path / n).exists() for n in names):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl"})
    hint = f"; found only pickled weights ({', '.join(pickled)}), which are not loaded" if pickled else ""
    raise ArtifactError(f"{path}: no {' or '.join(names)}: only safetensors {what} weights are loaded{hint}")


def _prompt_summary(path: Path) -> str:
    data = read_prompt(path)
    return f"prompt ({data['format']}, {len(data['shots'])} shots)"


def read_prompt(path: Path) -> dict[str, Any]:
    """prompt.json, checked: {"format": "chat"|"plain", "shots": [{"input", "target"}, ...], "instruction"}.
    ("instruction" and "rendered" came later: older artifacts lack them.)"""
    file = path / "prompt.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{file}: not readable JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") not in ("chat", "plain"):
        raise ArtifactError(f"{file}: 'format' must be 'chat' or 'plain'")
    shots = data.get("shots", [])
    if not isinstance(shots, list) or not all(
        isinstance(s, dict) and isinstance(s.get("input"), str) and isinstance(s.get("target"), str)
        for s in shots
    ):
        raise ArtifactError(f"{file}: 'shots' must be a list of {{'input': str, 'target': str}}")
    instruction = data.get("instruction", "")
    if not isinstance(instruction, str):
        raise ArtifactError(f"{file}: 'instruction' must be a string")
    return {"format": data["format"], "shots": shots, "instruction": instruction}


def _run_record(artifact: Path) -> dict[str, Any] | None:
    """The result.json of the run that wrote `artifact` (its parent folder), when there is one."""

    result = artifact.parent / RESULT
    if not result.exists():
        return None
    try:
        return read_result(result)
    except TunebenchError:
        return None


@dataclass
class Discovery:
    found: dict[str, Artifact] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(run folder, why it is not served)."""


def discover_runs(root: Path) -> Discovery:
    """Finished runs under `root` (a run store or one experiment in it), named by their run folder."""

    out = Discovery()
    results = sorted({*root.glob(f"*/{RESULT}"), *root.glob(f"*/*/{RESULT}")})
    for result_file in results:
        folder = result_file.parent
        try:
            record = read_result(result_file)
        except TunebenchError as e:
            out.skipped.append((str(folder), str(e)))
            continue
        if record.get("status") != "ok":
            out.skipped.append((str(folder), f"the run did not finish (status {record.get('status')!r})"))
            continue
        name = folder.name
        if check_name(name):
            out.skipped.append((str(folder), check_name(name) or ""))
            continue
        if name in out.found:
            out.skipped.append(
                (
                    str(folder),
                    f"the name {name!r} is taken by {out.found[name].path.parent}; "
                    f"serve it with --adapter OTHER_NAME={folder / ARTIFACT}",
                )
            )
            continue
        try:
            out.found[name] = inspect(folder / ARTIFACT)
        except ArtifactError as e:
            out.skipped.append((str(folder), str(e)))
    if not results:
        out.skipped.append(
            (str(root), "no result.json found (expected <runs>/<experiment>/<run>/result.json)")
        )
    return out
