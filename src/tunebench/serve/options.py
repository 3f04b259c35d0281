"""What `tunebench serve` is told: where it listens, what it serves, and the limits that keep it safe.

Every limit has a default that a laptop survives; a request over a limit gets a 4xx that names the field
and the limit, never a stack trace or an out-of-memory kill.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from tunebench.core.errors import SpecError
from tunebench.serve.artifacts import check_name

#: How batches are formed. "mixed": requests for different LoRA-family adapters share one batch (PEFT's
#: `adapter_names`); "per-adapter": one adapter per batch, switching the active adapter between batches
#: (the classic swap, kept as the baseline the benchmark measures against).
BATCHING_MODES = ("mixed", "per-adapter")


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    """Largest request body accepted; larger ones get 413."""
    max_tokens: int = 512
    """Largest `max_tokens` a request may ask for; more gets 400."""
    max_prompt_tokens: int = 4096
    """Longest prompt (after the chat template), in tokens; longer gets 400."""
    max_concurrent: int = 64
    """Requests queued or generating at once; one more gets 429 (the client may retry)."""
    max_batch_size: int = 32
    """Sequences in one forward batch."""
    batch_wait_ms: float = 10.0
    """How long the scheduler waits for more requests to join a batch once one has arrived."""
    max_prompts: int = 16
    """Prompts in one /v1/completions request (its `prompt` may be a list)."""

    def check(self) -> None:
        for name in ("max_body_bytes", "max_tokens", "max_prompt_tokens", "max_concurrent", "max_batch_size"):
            if getattr(self, name) < 1:
                raise SpecError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise SpecError(f"--batch-wait-ms: must not be negative, got {self.batch_wait_ms}")
        if self.max_prompts < 1:
            raise SpecError(f"--max-prompts: must be at least 1, got {self.max_prompts}")


LIMIT_HELP = {
    "max_body_bytes": "largest request body; larger gets 413",
    "max_tokens": "largest max_tokens a request may ask for; more gets 400",
    "max_prompt_tokens": "longest prompt in tokens; longer gets 400",
    "max_concurrent": "requests queued or generating at once; one more gets 429",
    "max_batch_size": "sequences in one batch",
    "batch_wait_ms": "how long a batch waits for more requests to join",
    "max_prompts": "prompts in one /v1/completions request",
}


@dataclass
class ServeOptions:
    model: str
    """The base model: a packaged name, a local Hugging Face folder or a hub id."""
    adapters: dict[str, Path] = field(default_factory=dict)
    """Served name → artifact folder (PEFT adapter, safetensors model, or prompt.json)."""
    runs: list[Path] = field(default_factory=list)
    """Run stores whose finished runs are served under their run names."""
    adapter_dir: Path | None = None
    """The only folder the admin endpoint may load new adapters from (by name, never by path)."""
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    """When set, every endpoint but /health requires `Authorization: Bearer <key>`."""
    merged: str | None = None
    """Serve this one adapter merged into the base weights (lowest latency; nothing else is served)."""
    batching: str = "mixed"
    trust_remote_code: bool = False
    """Let transformers run code shipped with the model; off unless asked for."""
    device: str | None = None
    """cpu, cuda, ... (default: CUDA when present)."""
    precision: str = "auto"
    """auto (bf16 autocast where the CPU or GPU runs it fast), bf16, or fp32 (exact: a merged adapter then
    answers as the unmerged one does, which bf16's rounding does not promise)."""
    limits: Limits = field(default_factory=Limits)

    def check(self) -> None:
        self.limits.check()
        if self.batching not in BATCHING_MODES:
            raise SpecError(f"--batching: expected one of {', '.join(BATCHING_MODES)}, got {self.batching!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise SpecError(f"--precision: expected auto, bf16 or fp32, got {self.precision!r}")
        if not 0 <= self.port <= 65535:
            raise SpecError(f"--port: expected 0..65535, got {self.port}")
        if self.api_key is not None and not self.api_key.strip():
            raise SpecError("--api-key: must not be empty")
        if self.adapter_dir is not None and not self.adapter_dir.is_dir():
            raise SpecError(f"--adapter-dir {self.adapter_dir}: not a folder")
        for run_dir in self.runs:
            if not run_dir.is_dir():
                raise SpecError(f"--runs {run_dir}: not a folder")
        if self.merged is not None and self.merged not in self.adapters:
            raise SpecError(
                f"--merged {self.merged!r}: name one of the --adapter names "
                f"({', '.join(self.adapters) or 'none given'})"
            )


def parse_adapter_flags(pairs: list[str]) -> dict[str, Path]:
    """`NAME=PATH` flags → {name: path}, refusing duplicates, bad names and missing folders."""

    adapters: dict[str, Path] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SpecError(f"--adapter {pair!r}: expected NAME=PATH")
        name, path = (s.strip() for s in pair.split("=", 1))
        problem = check_name(name)
        if problem:
            raise SpecError(f"--adapter {pair!r}: {problem}")
        if name in adapters:
            raise SpecError(f"--adapter {pair!r}: the name {name!r} is given twice")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise SpecError(f"--adapter {pair!r}: {folder} is not a folder")
        adapters[name] = folder
    return adapters


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_flags(parser) -> None:
    """The `tunebench serve` flags (kept here, beside the options they fill)."""

    p = parser
    p.add_argument("--model", required=True, help="base model: a packaged name, a local folder or a hub id")
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="serve the artifact in PATH (PEFT adapter, safetensors model or prompt.json) as NAME",
    )
    p.add_argument(
        "--runs",
        action="append",
        default=[],
        metavar="RUNS_DIR",
        help="serve every finished run under RUNS_DIR by its run name (skipped ones are logged)",
    )
    p.add_argument(
        "--adapter-dir", metavar="DIR", help="the folder POST /admin/adapters may load from, by folder name"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        default=os.environ.get("TUNEBENCH_API_KEY"),
        help="require 'Authorization: Bearer KEY' on every endpoint but /health "
        "(default: $TUNEBENCH_API_KEY)",
    )
    p.add_argument(
        "--merged",
        metavar="NAME",
        help="serve only the --adapter NAME, merged into the base weights (lowest latency)",
    )
    p.add_argument(
        "--batching",
        choices=BATCHING_MODES,
        default="mixed",
        help="mixed: adapters share batches (default); per-adapter: one adapter per batch",
    )
    p.add_argument(
        "--trust-remote-code", action="store_true", help="let transformers run the model's own code"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 where the CPU or GPU runs it fast), bf16, or fp32 (exact; default auto)",
    )
    g = p.add_argument_group("limits")
    for f in Limits.__dataclass_fields__.values():
        g.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=f.default,
            help=f"{LIMIT_HELP[f.name]} (default {f.default})",
        )


def from_flags(args) -> ServeOptions:
    """ServeOptions from parsed `tunebench serve` flags, checked."""
    limits = Limits(**{name: getattr(args, name) for name in Limits.__dataclass_fields__})
    options = ServeOptions(
        model=args.model,
        adapters=parse_adapter_flags(args.adapter),
        runs=[Path(r).expanduser() for r in args.runs],
        adapter_dir=Path(args.adapter_dir).expanduser() if args.adapter_dir else None,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        merged=args.merged,
        batching=args.batching,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
        precision=args.precision,
        limits=limits,
    )
    options.check()
    return options
