"""The CUDA path end to end: every method on tiny models, on the GPU, through the CLI.

    python bench/cuda_smoke.py [OUT_DIR]

Runs a generation task (tiny-llama) and a classification task (tiny-llama with a classifier head, and
tiny-bert) with every registered method for a few steps, then prints per run: status, device, bf16,
peak GPU memory and the error of a failed run. It checks device placement, bf16 autocast and QLoRA
through bitsandbytes on CUDA; it measures no speed (tiny models). Needs no network.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")


def main() -> int:
    import torch

    from tunebench.cli.main import main as cli
    from tunebench.methods import METHODS

    out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    print(
        "torch",
        torch.__version__,
        "cuda",
        torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
    )
    data = out / "sentiment.jsonl"
    words = {"pos": ["great", "good", "nice"], "neg": ["awful", "bad", "poor"]}
    rows = [
        {"text": f"{words[y][i % 3]} {words[y][(i // 3) % 3]}", "label": y} for i in range(40) for y in words
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--steps", "5", "--budget", "batch_size=8", "--out", str(out)]
    methods = ",".join(METHODS)
    cli(
        [
            "compare",
            "--model",
            "tiny-llama",
            "--methods",
            methods,
            "--task-opt",
            "digits=2",
            "--task-opt",
            "train_size=64",
            "--task-opt",
            "test_size=16",
            "--name",
            "generation",
            *common,
        ]
    )
    cli(
        [
            "compare",
            "--model",
            "tiny-bert,tiny-llama",
            "--methods",
            methods,
            "--task",
            str(data),
            "--task-opt",
            "input=text",
            "--task-opt",
            "target=label",
            "--name",
            "classification",
            *common,
        ]
    )
    print(f"\n{'run':<45} {'status':<7} {'device':<28} {'bf16':<5} {'peak GPU MB':>11}  error")
    failures = 0
    for path in sorted(out.glob("*/*/result.json")):
        r = json.loads(path.read_text())
        train = r.get("train") or {}
        ev = r.get("eval") or {}
        peak = max(train.get("peak_gpu_mb") or 0, ev.get("peak_gpu_mb") or 0)
        refused = r["status"] != "ok" and "Unsupported" in (r["error"] or "")
        failures += r["status"] != "ok" and not refused
        print(
            f"{path.parent.parent.name + '/' + path.parent.name:<45} {r['status']:<7} {r['env']['device']:<28} "
            f"{ev.get('bf16', '')!s:<5} {peak:>11.1f}  {(r['error'] or '')[:90]}"
        )
    print(f"\n{failures} unexpected failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
