"""The subcommands' bodies: each turns parsed flags into one library call and prints what it returns.

main.py builds the parser and imports this module only once the flags are parsed (it pulls in torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from tunebench.config import default_spec_path, keep_methods, load_yaml, parse_spec
from tunebench.core.errors import SpecError
from tunebench.core.paths import cache_dir
from tunebench.core.searchspace import apply_flags as apply_search_flags
from tunebench.core.typed import field_names
from tunebench.core.ui import console, out
from tunebench.core.units import parse_count
from tunebench.estimate.in_report import InReport
from tunebench.estimate.model import Setting
from tunebench.estimate.plan import plan
from tunebench.estimate.render import render as render_estimate
from tunebench.estimate.render import to_json
from tunebench.methods import METHODS
from tunebench.models import MODELS, resolve_model
from tunebench.models.zoo import READY
from tunebench.objectives import OBJECTIVES
from tunebench.report import make_report, report_for_results
from tunebench.report.charts import write_charts
from tunebench.report.fmt import lr as show_lr
from tunebench.report.formats import render as render_format
from tunebench.report.formats import write_report
from tunebench.report.recommend import parse_constraints
from tunebench.report.terminal import render as render_table
from tunebench.runs.executors import DEFAULT_EXECUTOR, make_executor
from tunebench.runs.runner import run_experiment
from tunebench.runs.tracking import make_tracker
from tunebench.serve import serve
from tunebench.serve.options import from_flags
from tunebench.tasks import TASKS
from tunebench.train import distributed


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
    if args.data_sizes:  # "100,300,all", or "per_class=10,30,all"
        key, per_key, sizes = args.data_sizes.partition("=")
        data["data_sizes"] = {key.strip(): sizes} if per_key else args.data_sizes
    if getattr(args, "search", None):
        data["methods"] = apply_search_flags(data.get("methods") or [], args.search)
    budget = dict(data.get("budget") or {})
    if args.steps is not None:
        budget["steps"] = args.steps
    budget.update(_key_values(args.budget or [], "--budget"))
    data["budget"] = budget
    if args.out:
        data["out"] = args.out
    if args.run_cache:
        data["run_cache"] = args.run_cache
    if args.name:
        data["name"] = args.name
    return data


def _constraints(args: argparse.Namespace):

    return parse_constraints(
        args.max_memory, args.max_trainable_params, args.max_latency_ms, args.max_train_seconds
    )


def _estimates(args: argparse.Namespace):

    return InReport(args.target_model, args.target_device)


def cmd_compare(args: argparse.Namespace) -> int:

    data = spec_from_args(args)
    spec = parse_spec(data, source=str(args.spec or "default experiment"))
    constraints = _constraints(args)
    executor, tracker = _engines(args, spec)
    estimates = _estimates(args)  # an unknown --target-model fails now, not after the runs
    console.print(
        f"[bold]tunebench compare[/bold] · experiment [cyan]{spec.name}[/cyan] · models "
        f"{', '.join(spec.models)} · methods {', '.join(m.name for m in spec.methods)} · "
        f"seeds {', '.join(map(str, spec.seeds))}"
        + (f" · data sizes {', '.join(map(str, spec.data_sizes.sizes))}" if spec.data_sizes else "")
        + (" per class" if spec.data_sizes and spec.data_sizes.by_class else "")
    )
    results = run_experiment(spec, force=args.force, executor=executor, tracker=tracker)
    if not distributed.is_main():  # one of several processes (torchrun): the main one reports
        return 0 if all(r["status"] == "ok" for r in results) else 1
    exp_dir = Path(spec.out) / spec.name
    report = report_for_results(exp_dir, results, constraints, estimates.columns())
    estimates.add_sentence(report)
    out.print(render_table(report))
    out.print(f"Runs in {exp_dir}")
    out.print(f"Report: {write_report(report, exp_dir / 'report.html')}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _engines(args: argparse.Namespace, spec):
    """The executor and the tracker the flags ask for (each checked before anything runs)."""
    if distributed.launched() and args.executor not in (None, "local"):
        raise SpecError(
            f"--executor {args.executor}: under torchrun or accelerate launch, runs use the launched processes"
        )
    if not distributed.is_main():
        console.quiet = True  # every process runs the grid; the main one speaks for them
        return make_executor("local"), None
    name = args.executor or os.environ.get("TUNEBENCH_EXECUTOR") or DEFAULT_EXECUTOR
    executor = make_executor(name, args.ray_address)
    tracker = make_tracker(args.tracker, args.tracking_uri, Path(spec.out) / spec.name, spec.name)
    return executor, tracker


def cmd_report(args: argparse.Namespace) -> int:

    estimates = _estimates(args)
    report = make_report(args.runs_dir, _constraints(args), estimates.columns())
    estimates.add_sentence(report)
    if args.charts:
        for path in write_charts(report, args.charts):
            console.print(f"Chart: {path}")  # stderr: stdout may be the Markdown or CSV report
    if args.format == "html" or args.out:
        path = write_report(report, args.out or Path(args.runs_dir) / "report.html", args.format)
        out.print(render_table(report))
        out.print(f"Report: {path}")
    else:
        sys.stdout.write(render_format(report, args.format))
    return 0


def cmd_models(args: argparse.Namespace) -> int:

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

    for name in args.models:
        resolved = resolve_model(name)
        out.print(f"{name}: ready in {resolved.path}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:

    table = Table(title="Tasks (a data file path also works as --task)", title_justify="left")
    for col in ("name", "summary", "options", "example"):
        table.add_column(col)
    for name, entry in TASKS.items():
        table.add_row(name, entry.summary, ", ".join(field_names(entry.options)), "\n".join(entry.examples))
    out.print(table)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:

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

    objectives = Table(
        title="Objectives (combine with a trainable method: lora+dpo, full+distill:orca)",
        title_justify="left",
    )
    for col in ("name", "options", "summary"):
        objectives.add_column(col)
    for name, objective_cls in OBJECTIVES.items():
        objectives.add_row(name, ", ".join(field_names(objective_cls.Options)), objective_cls.summary)
    out.print(objectives)
    return 0


def _recipes_table(methods: Any) -> Any:
    """Each training method's own defaults, used for the budget fields a spec leaves unset."""
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

    serve(from_flags(args))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:

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
        out.print(render_estimate(result))
    return 0
