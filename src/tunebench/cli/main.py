"""The `tunebench` command. Each subcommand parses flags and calls one library function; no logic here."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from tunebench.core.errors import SpecError, TunebenchError


def _key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SpecError(f"{flag} {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The spec as data: the YAML file (or the built-in default), then the flags on top."""
    from tunebench.config import default_spec_path, keep_methods, load_yaml

    data = load_yaml(args.spec or default_spec_path())
    if args.model:
        data["models"] = [m for item in args.model for m in item.split(",") if m]
    if args.task:
        data["task"] = {"name": args.task}
    if args.task_opt:
        task = data.get("task", "arithmetic")
        task = {"name": task} if isinstance(task, str) else dict(task)
        data["task"] = {**task, **_key_values(args.task_opt, "--task-opt")}
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        data["methods"] = keep_methods(data, wanted)
    if args.seeds:
        data["seeds"] = args.seeds
    budget = dict(data.get("budget") or {})
    if args.steps is not None:
        budget["steps"] = args.steps
    budget.update(_key_values(args.budget or [], "--budget"))
    data["budget"] = budget
    if args.out:
        data["out"] = args.out
    if args.name:
        data["name"] = args.name
    return data


def _constraints(args: argparse.Namespace):
    from tunebench.report.recommend import parse_constraints

    return parse_constraints(
        args.max_memory, args.max_trainable_params, args.max_latency_ms, args.max_train_seconds
    )


def _estimates(args: argparse.Namespace):
    from tunebench.estimate.in_report import InReport

    return InReport(args.target_model, args.target_device)


def cmd_compare(args: argparse.Namespace) -> int:
    from tunebench.config import parse_spec
    from tunebench.core.ui import console, out
    from tunebench.report import report_for_results
    from tunebench.report.formats import write_report
    from tunebench.report.terminal import render
    from tunebench.runs.runner import run_experiment
    from tunebench.train.distributed import is_main

    data = spec_from_args(args)
    spec = parse_spec(data, source=str(args.spec or "default experiment"))
    constraints = _constraints(args)
    executor, tracker = _engines(args, spec)
    estimates = _estimates(args)  # an unknown --target-model fails now, not after the runs
    console.print(
        f"[bold]tunebench compare[/bold] · experiment [cyan]{spec.name}[/cyan] · models "
        f"{', '.join(spec.models)} · methods {', '.join(m.name for m in spec.methods)} · "
        f"seeds {', '.join(map(str, spec.seeds))}"
    )
    results = run_experiment(spec, force=args.force, executor=executor, tracker=tracker)
    if not is_main():  # one of several processes (torchrun): the main one reports
        return 0 if all(r["status"] == "ok" for r in results) else 1
    exp_dir = Path(spec.out) / spec.name
    report = report_for_results(exp_dir, results, constraints, estimates.columns())
    estimates.add_sentence(report)
    out.print(render(report))
    out.print(f"Runs in {exp_dir}")
    out.print(f"Report: {write_report(report, exp_dir / 'report.html')}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _engines(args: argparse.Namespace, spec):
    """The executor and the tracker the flags ask for (each checked before anything runs)."""
    from tunebench.core.ui import console
    from tunebench.runs.executors import make_executor
    from tunebench.runs.tracking import make_tracker
    from tunebench.train import distributed

    if distributed.launched() and args.executor != "local":
        raise SpecError(
            "--executor ray: under torchrun or accelerate launch, runs use the launched processes"
        )
    if not distributed.is_main():
        console.quiet = True  # every process runs the grid; the main one speaks for them
        return make_executor("local"), None
    executor = make_executor(args.executor, args.ray_address)
    tracker = make_tracker(args.tracker, args.tracking_uri, Path(spec.out) / spec.name, spec.name)
    return executor, tracker


def cmd_report(args: argparse.Namespace) -> int:
    from tunebench.core.ui import console, out
    from tunebench.report import make_report
    from tunebench.report.formats import render as render_format
    from tunebench.report.formats import write_report
    from tunebench.report.terminal import render

    estimates = _estimates(args)
    report = make_report(args.runs_dir, _constraints(args), estimates.columns())
    estimates.add_sentence(report)
    if args.charts:
        from tunebench.report.charts import write_charts

        for path in write_charts(report, args.charts):
            console.print(f"Chart: {path}")  # stderr: stdout may be the Markdown or CSV report
    if args.format == "html" or args.out:
        path = write_report(report, args.out or Path(args.runs_dir) / "report.html", args.format)
        out.print(render(report))
        out.print(f"Report: {path}")
    else:
        sys.stdout.write(render_format(report, args.format))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tunebench.core.paths import cache_dir
    from tunebench.core.ui import out
    from tunebench.models import MODELS
    from tunebench.models.zoo import READY

    table = Table(
        title="Models (also: any local Hugging Face folder, or a hub id when online)", title_justify="left"
    )
    for col in ("name", "kind", "size", "prepared", "source"):
        table.add_column(col)
    for name, entry in MODELS.items():
        ready = (cache_dir() / "models" / name / READY).exists()
        table.add_row(name, entry.kind, entry.params, "yes" if ready else "on first use", entry.source)
    out.print(table)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from tunebench.core.ui import out
    from tunebench.models import resolve_model

    for name in args.models:
        resolved = resolve_model(name)
        out.print(f"{name}: ready in {resolved.path}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from tunebench.core.typed import field_names
    from tunebench.core.ui import out
    from tunebench.tasks import TASKS

    table = Table(title="Tasks (a data file path also works as --task)", title_justify="left")
    for col in ("name", "summary", "options", "example"):
        table.add_column(col)
    for name, entry in TASKS.items():
        table.add_row(name, entry.summary, ", ".join(field_names(entry.options)), "\n".join(entry.examples))
    out.print(table)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from tunebench.core.typed import field_names
    from tunebench.core.ui import out
    from tunebench.methods import METHODS

    table = Table(title="Methods", title_justify="left")
    for col in ("name", "updates", "access", "trains", "options", "summary"):
        table.add_column(col)
    for name, cls in METHODS.items():
        table.add_row(
            name,
            cls.updates,
            cls.access,
            "yes" if cls.trains else "no",
            ", ".join(field_names(cls.Options)) or "—",
            cls.summary,
        )
    out.print(table)
    out.print(_recipes_table(METHODS))
    from tunebench.objectives import OBJECTIVES

    objectives = Table(
        title="Objectives (combine with a trainable method: lora+dpo, full+distill:orca)",
        title_justify="left",
    )
    for col in ("name", "options", "summary"):
        objectives.add_column(col)
    for name, cls in OBJECTIVES.items():
        objectives.add_row(name, ", ".join(field_names(cls.Options)), cls.summary)
    out.print(objectives)
    return 0


def _recipes_table(methods: Any) -> Any:
    """Each training method's own defaults, used for the budget fields a spec leaves unset."""

    from tunebench.report.fmt import lr as show_lr

    table = Table(
        title="Training defaults (used where the spec sets none; lr_grid: auto searches the grid)",
        title_justify="left",
    )
    for col in ("name", "lr", "lr_grid: auto", "warm-up", "weight decay", "source"):
        table.add_column(col)
    for name, cls in methods.items():
        r = cls.recipe
        if r is not None:
            grid = ", ".join(show_lr(x) for x in r.lr_grid)
            table.add_row(name, show_lr(r.lr), grid, f"{r.warmup:g}", f"{r.weight_decay:g}", r.source)
    return table


def cmd_serve(args: argparse.Namespace) -> int:
    from tunebench.serve import serve
    from tunebench.serve.options import from_flags

    serve(from_flags(args))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from tunebench.core.ui import out
    from tunebench.core.units import parse_count
    from tunebench.estimate.model import Setting
    from tunebench.estimate.plan import plan
    from tunebench.estimate.render import render, to_json

    setting = Setting(
        seq_len=args.seq_len,
        batch=args.batch,
        grad_accum=args.grad_accum,
        tokens=parse_count(args.tokens, "--tokens"),
        precision=args.precision,
        optimizer=args.optimizer,
        mfu=args.mfu,
    )
    result = plan(
        args.model, args.method, args.device, setting, _key_values(args.opt or [], "--opt"), args.classes
    )
    if args.json:
        out.print_json(json.dumps(to_json(result)))
    else:
        out.print(render(result))
    return 0


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
    p.add_argument("--steps", type=int, help="optimizer steps per trained run (budget.steps)")
    p.add_argument("--budget", action="append", metavar="KEY=VALUE", help="budget field, e.g. batch_size=16")
    p.add_argument("--name", help="experiment name (the folder under --out)")
    p.add_argument("--out", help="run store folder (default: runs)")
    p.add_argument("--force", action="store_true", help="redo runs that finished earlier")
    g = p.add_argument_group("engines (docs/distributed.md)")
    g.add_argument(
        "--executor",
        default="local",
        metavar="NAME",
        help="local (default: here, one run after the other) or ray (each run a Ray task)",
    )
    g.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one)")
    g.add_argument("--tracker", default="none", metavar="NAME", help="none (default) or mlflow")
    g.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow tracking URI (default: a file store in <out>/mlruns)"
    )
    _constraint_flags(p)
    p.set_defaults(func=cmd_compare)

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
    p.set_defaults(func=cmd_report)

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
    p.set_defaults(func=cmd_estimate)

    sub.add_parser("models", help="list the models").set_defaults(func=cmd_models)
    p = sub.add_parser("prepare", help="prepare models into the local cache now (otherwise on first use)")
    p.add_argument("models", nargs="+")
    p.set_defaults(func=cmd_prepare)
    sub.add_parser("tasks", help="list the built-in tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("methods", help="list the methods").set_defaults(func=cmd_methods)
    p = sub.add_parser("serve", help="serve a model and its adapters over an OpenAI-compatible API")
    from tunebench.serve.options import add_flags

    add_flags(p)
    p.set_defaults(func=cmd_serve)
    return parser


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    # bitsandbytes warns on every import that an optional CPU kernel package is absent; its own fallback works.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # per-run weight loading bars would drown the run's own progress
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return args.func(args)
    except TunebenchError as e:
        from tunebench.core.ui import console

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
