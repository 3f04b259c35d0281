"""The `tunebench` command: the flags of every subcommand (their bodies are in commands.py); no logic here."""

from __future__ import annotations

import argparse
import sys

from tunebench.core.errors import TunebenchError
from tunebench.core.quiet import quiet_libraries
from tunebench.core.ui import console
from tunebench.serve.options import add_flags


def _constraint_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("constraints for the recommendation")
    g.add_argument(
        "--max-memory", metavar="SIZE", help="peak memory, e.g. 4GB or 512MB (a bare number is MB)"
    )
    g.add_argument(
        "--max-trainable-params", metavar="N", help="trainable parameters, e.g. 1M, or a share: 1%%"
    )
    g.add_argument("--max-latency-ms", metavar="MS", help="latency per example (batch size 1), milliseconds")
    g.add_argument("--max-train-seconds", metavar="S", help="training time, e.g. 300 or 5min")
    g = p.add_argument_group("cost at scale (the estimator: `tunebench estimate`)")
    g.add_argument(
        "--target-model",
        metavar="SIZE_OR_NAME",
        help="add each method's estimated peak memory at this size: 7B, 13B, 70B, a config.json, a model",
    )
    g.add_argument(
        "--target-device",
        default="A100-80GB",
        metavar="DEVICE",
        help="the device for --target-model (default A100-80GB; custom:80GB:312TFLOPS also works)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunebench", description="Which specialization strategy fits my task?"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compare", help="run every method of a spec on its models and print the leaderboard")
    p.add_argument(
        "spec", nargs="?", help="experiment YAML (default: the built-in 3-digit addition experiment)"
    )
    p.add_argument("--model", action="append", help="model name, folder or hub id (repeat or comma-separate)")
    p.add_argument("--task", help="built-in task name or a data file (.jsonl .csv .tsv .parquet)")
    p.add_argument("--task-opt", action="append", metavar="KEY=VALUE", help="task option, e.g. digits=4")
    p.add_argument("--methods", help="comma-separated methods, e.g. zero-shot,lora")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument(
        "--data-sizes",
        metavar="SIZES",
        help="run every method at these training-set sizes (nested subsets), e.g. 100,300,all, or "
        "per_class=10,30,all for examples of every label",
    )
    p.add_argument("--steps", type=int, help="optimizer steps per trained run (budget.steps)")
    p.add_argument("--budget", action="append", metavar="KEY=VALUE", help="budget field, e.g. batch_size=16")
    p.add_argument(
        "--search",
        action="append",
        metavar="METHOD.KEY=VALUES",
        help="choose a method option or budget field on dev with Optuna: lora.r=4,8,16 (a list), "
        "lora.lr=log:1e-4:3e-3 (log-uniform; also float:LO:HI, int:LO:HI); lora.trials=12, "
        "lora.objectives=dev,trainable_params and lora.pruner=median|hyperband|none set the search",
    )
    p.add_argument("--name", help="experiment name (the folder under --out)")
    p.add_argument("--out", help="run store folder (default: runs)")
    p.add_argument("--force", action="store_true", help="redo runs that finished earlier")
    p.add_argument(
        "--run-cache",
        metavar="DIR",
        help="a runs folder to take finished runs from besides --out (the same run: same model, data, "
        "method, budget, seed)",
    )
    g = p.add_argument_group("engines (docs/distributed.md)")
    g.add_argument(
        "--executor",
        metavar="NAME",
        help="process (default: each run in a fresh process of its own, one after the other, so its peak "
        "memory is its own), local (all in this process) or ray (each run a Ray task); the environment "
        "variable TUNEBENCH_EXECUTOR sets the default",
    )
    g.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one)")
    g.add_argument("--tracker", default="none", metavar="NAME", help="none (default) or mlflow")
    g.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow tracking URI (default: a file store in <out>/mlruns)"
    )
    _constraint_flags(p)

    p = sub.add_parser(
        "report", help="the leaderboard, quality-vs-cost charts and a recommendation from a runs folder"
    )
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="the folder compare wrote, e.g. runs/default")
    p.add_argument(
        "--format",
        choices=["html", "md", "csv", "json"],
        default="html",
        help="html (default: RUNS_DIR/report.html), or md, csv, json (to stdout unless --out)",
    )
    p.add_argument("--out", metavar="FILE", help="write the report here")
    p.add_argument(
        "--charts",
        metavar="DIR",
        help="also write each chart as a stand-alone SVG file in DIR (for a README or a slide)",
    )
    _constraint_flags(p)

    p = sub.add_parser("estimate", help="what a method would cost at another size, on a given GPU")
    p.add_argument(
        "--model", required=True, help="preset size (7B 8B 13B 33B 65B 70B 175B), model, folder or hub id"
    )
    p.add_argument("--method", required=True, help="comma-separated methods (e.g. lora,qlora,full), or all")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per sequence (default 512)")
    p.add_argument("--batch", type=int, default=8, help="sequences per micro-batch (default 8)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    p.add_argument(
        "--device",
        default="A100-80GB",
        help="GPU name (A100-80GB, H100-80GB, 4090 …) or custom:80GB:312TFLOPS",
    )
    p.add_argument(
        "--tokens", default="100M", help="training tokens for the time estimate, e.g. 1B (default 100M)"
    )
    p.add_argument("--precision", default="mixed", help="mixed (default), bf16-adam32, bf16 or fp32")
    p.add_argument("--optimizer", default="adamw", help="adamw (default), adamw-8bit or sgd")
    p.add_argument(
        "--mfu", type=float, default=0.4, help="share of the peak throughput achieved (default 0.4)"
    )
    p.add_argument(
        "--opt",
        action="append",
        metavar="KEY=VALUE",
        help="method option, e.g. r=8, target_modules=q,v, blocks=4",
    )
    p.add_argument(
        "--classes",
        type=int,
        default=0,
        help="a classification head over this many classes instead of the LM head (the probe's: 2 if unset)",
    )
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")

    sub.add_parser("models", help="list the models")
    p = sub.add_parser("prepare", help="prepare models into the local cache now (otherwise on first use)")
    p.add_argument("models", nargs="+")
    sub.add_parser("tasks", help="list the built-in tasks")
    sub.add_parser("methods", help="list the methods")
    p = sub.add_parser("serve", help="serve a model and its adapters over an OpenAI-compatible API")
    add_flags(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        # lazy: the commands import torch and transformers (about 2 s), so --help and flag errors stay instant
        from tunebench.cli import commands

        return getattr(commands, f"cmd_{args.command}")(args)
    except TunebenchError as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; finished runs are kept and the next run of the same command resumes",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
