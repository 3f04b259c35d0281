"""Serving many adapters on one base model: mixed batches against one adapter per batch (swapping).

    flock /tmp/tunebench-cpu.lock python bench/serve_bench.py [--model smollm2-135m] [--clients 16]
        [--seconds 90] [--max-tokens 32]

Makes 4 LoRA adapters (r=16 on every linear layer, random but fixed weights) for the model, then starts
`tunebench serve` twice on a free loopback port — `--batching mixed` and `--batching per-adapter` — and
drives each with the same closed loop: `--clients` concurrent clients, client i always asking adapter i % 4,
each sending its next request when the last one is answered, for `--seconds` (and at most
`--max-requests` requests per client), after one untimed warm-up round. Both runs use the official `openai` client, greedy decoding and
the same prompts. Prints, per mode: requests, errors, generated tokens, tokens/s, p50/p99 latency and the
mean rows per batch; then the ratio of the two throughputs, measured in the same run. Before that, in
this process, the time of one decode step for 1, 4 and 16 rows: base model, one adapter, four adapters
mixed by PEFT's `adapter_names`, and four mixed by the stacked path the server uses (serve/mixlora.py).
Last, single-request latency of one adapter on the shared lane against the same adapter `--merged`.

All traffic goes to 127.0.0.1; every loop is bounded in count and time; the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ADAPTERS = 4
PROMPTS = [
    "The three primary colors are",
    "Write one sentence about the sea:",
    "A good name for a cat is",
    "The capital of France is",
    "Here is a short poem about autumn:",
    "To boil an egg, first",
    "The best thing about weekends is",
    "Photosynthesis is the process by which",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`tunebench serve` in a child process on a loopback port; stopped on exit."""

    def __init__(self, args: list[str], startup_timeout: float = 300.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "tunebench.cli.main", "serve", *args, "--port", str(self.port)]
        fd, self.log = tempfile.mkstemp(prefix="serve-bench-", suffix=".log")
        with os.fdopen(fd, "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"server not up after {startup_timeout:.0f}s; see {self.log}"
                    ) from None
                time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


async def drive(
    url: str, names: list[str], clients: int, seconds: float, max_requests: int, max_tokens: int
) -> dict:
    """Closed loop: each client sends, waits for the answer, sends again, until time or count runs out."""
    from openai import AsyncOpenAI

    api = AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=300)
    latencies: list[float] = []
    tokens = errors = 0
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal tokens, errors
        for k in range(max_requests):
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                r = await api.completions.create(
                    model=names[i % len(names)],
                    prompt=PROMPTS[(i + k) % len(PROMPTS)],
                    max_tokens=max_tokens,
                    temperature=0,
                )
            except Exception as e:  # counted and reported: the target is zero
                errors += 1
                print(f"  error: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            latencies.append(time.perf_counter() - start)
            tokens += r.usage.completion_tokens

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start
    await api.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "tokens": tokens,
        "seconds": wall,
        "tokens_per_s": tokens / wall,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
    }


def health(url: str) -> dict:
    """The server's /health: status and its batch counters."""
    with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
        return json.loads(r.read())


def warm(url: str, names: list[str], clients: int, max_tokens: int) -> None:
    """One untimed round of every client, so that first-call costs (kernel set-up for new batch shapes)
    are not measured."""
    asyncio.run(drive(url, names, clients, 600, 1, max_tokens))


def make_adapters(model: str, folder: Path) -> dict[str, Path]:
    from tunebench.models import resolve_model
    from tunebench.serve.synthetic import random_lora

    base = resolve_model(model)
    return {
        f"task{i}": random_lora(base.path, folder / f"task{i}", seed=i, r=16, scale=0.02)
        for i in range(ADAPTERS)
    }


def step_times(model_name: str, adapters: dict[str, Path], batches: list[int], tokens: int = 16) -> None:
    """ms per decode step through `generate`, in this process: the base model, one adapter (PEFT), four
    adapters mixed by PEFT's `adapter_names`, and four mixed by the stacked path (serve/mixlora.py)."""
    import torch
    from peft import PeftModel

    from tunebench.models import resolve_model
    from tunebench.serve.lanes import Loader
    from tunebench.serve.mixlora import StackedLora

    loader = Loader(torch.device("cpu"))
    base = loader.model(resolve_model(model_name).path)
    names = list(adapters)
    peft = PeftModel.from_pretrained(base, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        peft.load_adapter(str(adapters[name]), adapter_name=name)
    peft.eval()
    stacked = StackedLora(peft)
    stacked.update(set(names))

    def per_step(b: int, how: str) -> float:
        ids = torch.randint(100, 1000, (b, 12), generator=torch.Generator().manual_seed(b))
        rows = [names[i % len(names)] for i in range(b)]
        extra, ctx = {}, contextlib.nullcontext()
        if how == "base":
            ctx = peft.disable_adapter()
        elif how == "one adapter":
            peft.set_adapter(names[0])
        elif how == "PEFT mixed":
            extra = {"adapter_names": rows}
        else:
            ctx = stacked.active(rows)
        with torch.inference_mode(), ctx:
            start = time.perf_counter()
            peft.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                pad_token_id=0,
                **extra,
            )
        return (time.perf_counter() - start) / tokens * 1000

    hows = ["base", "one adapter", "PEFT mixed", "stacked mixed"]
    for b in batches:
        per_step(b, "base")  # warm-up
    print(f"ms per decode step (generate, {tokens} tokens, 12-token prompts), rows: {batches}")
    for how in hows:
        print(f"  {how:<14} " + "  ".join(f"{per_step(b, how):>6.0f}" for b in batches))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (at most 64)")
    parser.add_argument("--seconds", type=float, default=90, help="measured time per mode (at most 600)")
    parser.add_argument("--max-requests", type=int, default=200, help="requests per client, at most")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--latency-requests", type=int, default=10, help="sequential requests for the merged check"
    )
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="the servers' --batch-wait-ms")
    parser.add_argument("--skip-steps", action="store_true", help="skip the in-process step timings")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 0 < args.seconds <= 600):
        parser.error("--clients must be 1..64 and --seconds 0..600")

    from tunebench.runs.record import environment

    env = environment()
    print(
        f"serving benchmark: {args.model}, {ADAPTERS} LoRA adapters (r=16, all linear layers), {args.clients} "
        f"clients, {args.seconds:.0f} s per mode, max_tokens {args.max_tokens}, greedy"
    )
    print(
        f"on {env['cpu']} ({env['threads']} threads), {env['device']}, torch {env['packages']['torch']}, "
        f"peft {env['packages']['peft']}"
    )
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        adapters = make_adapters(args.model, Path(tmp))
        if not args.skip_steps:
            step_times(args.model, adapters, [1, 4, 16])
        flags = [
            "--model",
            args.model,
            "--max-batch-size",
            "64",
            "--max-concurrent",
            "128",
            "--batch-wait-ms",
            str(args.batch_wait_ms),
        ]
        flags += [f for name, path in adapters.items() for f in ("--adapter", f"{name}={path}")]
        names = list(adapters)
        results = {}
        for mode in ("mixed", "per-adapter"):
            with Server([*flags, "--batching", mode]) as server:
                warm(server.url, names, args.clients, args.max_tokens)
                before = health(server.url)
                results[mode] = asyncio.run(
                    drive(server.url, names, args.clients, args.seconds, args.max_requests, args.max_tokens)
                )
                after = health(server.url)
            r = results[mode]
            rows = (after["rows"] - before["rows"]) / max(1, after["batches"] - before["batches"])
            print(
                f"{mode:<12} requests {r['requests']:>5}  errors {r['errors']}  tokens {r['tokens']:>6}  "
                f"{r['tokens_per_s']:>7.1f} tokens/s  p50 {r['p50']:.2f} s  p99 {r['p99']:.2f} s  "
                f"rows/batch {rows:.1f}"
            )
        ratio = results["mixed"]["tokens_per_s"] / results["per-adapter"]["tokens_per_s"]
        print(f"mixed / per-adapter throughput: {ratio:.2f}x")
        latency(args, adapters)


def latency(args, adapters: dict[str, Path]) -> None:
    """One client, one request at a time: the adapter on the shared lane against it merged."""
    name, path = next(iter(adapters.items()))
    flags = ["--model", args.model, "--adapter", f"{name}={path}"]
    for label, extra in (("shared lane", []), ("merged", ["--merged", name])):
        with Server([*flags, *extra]) as server:
            warm(server.url, [name], 1, args.max_tokens)
            r = asyncio.run(
                drive(server.url, [name], 1, args.seconds, args.latency_requests, args.max_tokens)
            )
        print(
            f"{label:<12} 1 client: p50 {r['p50']:.2f} s  {r['tokens_per_s']:.1f} tokens/s  errors {r['errors']}"
        )


if __name__ == "__main__":
    main()
