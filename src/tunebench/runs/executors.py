"""Where the runs of a grid execute: each in a fresh process of its own, one after the other (`process`,
the default of `tunebench compare`), in this process (`local`), or as Ray tasks (`ray`).

The executors walk the same grid (model × method, then the seeds of each) and write the same run store;
the result records come back in grid order.

- process: each run in a new Python process (child.py), so that its peak memory is its own and not what
  the runs before it left behind, and a crash of the process is one failed run, with its reason, while the
  grid goes on. A configuration or learning-rate search is driven from here (its Optuna study, the
  successive-halving rungs), and each of its trials or candidates trains in a process of its own too,
  asking this process's pruner about its dev curve; finished runs and cached trials are taken here without
  starting a process. It costs a fork of a preloaded server (milliseconds) per run and trial.
- local: this process. Under a multi-process launch (torchrun / accelerate launch) every process runs
  every run together (train/distributed.py); the main process decides what is finished and is the only
  one that writes to the run store.
- ray: each run is a Ray task with the resources of its method's spec (`resources:` cpus, gpus, memory).
  The task writes its run folder, as a local run would, and returns the record. A learning-rate search is
  a task of its own, with the same resources, and the runs of its method start when it is done. A task
  that raises or whose worker dies is recorded as failed, with the reason, by the driver; the others go
  on. Runs that finished earlier are skipped by the driver without starting a task.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import tunebench
from tunebench.config import ExperimentSpec, MethodSpec, Resources
from tunebench.core import store
from tunebench.core.errors import SpecError, TunebenchError, did_you_mean
from tunebench.core.ui import console
from tunebench.models import ResolvedModel
from tunebench.runs.cell import earlier_result, run_cell
from tunebench.runs.child import ChildDied, run_in_child
from tunebench.runs.grid import Cell, Grid, needs_lr_search
from tunebench.runs.record import base_record, in_own_process
from tunebench.runs.search import needs_search, with_search
from tunebench.runs.selection import continuable_state, reusable_state
from tunebench.tasks.subsets import TrainingSubset
from tunebench.train import distributed

EXECUTORS = ("process", "local", "ray")
#: The executor `tunebench compare` uses when --executor is not given (the environment variable
#: TUNEBENCH_EXECUTOR overrides it; the test suite sets it to local, to spare a process start per run).
DEFAULT_EXECUTOR = "process"
#: A cell's training-set size (None: the whole training split).
Size = TrainingSubset | None


class Executor(Protocol):
    def run(self, grid: Grid) -> list[dict]: ...


def make_executor(name: str, ray_address: str | None = None) -> Executor:
    here: dict[str, type[LocalExecutor | ProcessExecutor]] = {
        "local": LocalExecutor,
        "process": ProcessExecutor,
    }
    if name in here:
        if ray_address:
            raise SpecError(f"--ray-address is given but --executor is {name}; add --executor ray")
        return here[name]()
    if name == "ray":
        return RayExecutor(ray_address)

    raise SpecError(
        f"--executor {name!r}: unknown executor.{did_you_mean(name, EXECUTORS)} Known: "
        + ", ".join(EXECUTORS)
    )


class LocalExecutor:
    def run(self, grid: Grid) -> list[dict]:
        results = []
        with _scratch() as scratch:
            for model, method_spec, size, seeds in grid.groups():
                chosen, selection = with_search(grid, model, method_spec, size)
                for index, seed in seeds:
                    cell = Cell(model, chosen, seed, size)
                    record = self._run(cell, grid, index, selection, scratch)
                    if distributed.is_main():
                        grid.on_result(record, grid.exp_dir / cell.name)
                    results.append(record)
        return results

    def _run(self, cell: Cell, grid: Grid, index: int, selection: dict | None, scratch: Path) -> dict:
        if distributed.launched():
            # Every process must take the same decision, or one would wait forever for the others in
            # training: the main process's view of the store decides.
            _, earlier = grid.finished(cell)
            if distributed.from_main(earlier is not None):
                grid.progress.skip(cell.name, index, grid.total)
                return store.read_result(grid.exp_dir / cell.name / store.RESULT)
            if not distributed.is_main():
                grid = replace(grid, exp_dir=scratch)
        return _run_with_selection(grid, cell, index, selection)


def _run_with_selection(grid: Grid, cell: Cell, index: int, selection: dict | None) -> dict:
    """run_cell, given the search's trained states this run may reuse or continue (selection.py)."""
    reuse, carry_on = reusable_state(selection, cell.seed), continuable_state(selection, cell.seed)
    return run_cell(cell, grid, index=index, selection=selection, reuse=reuse, carry_on=carry_on)


class ProcessExecutor:
    """Each run that has to run, in a fresh process of its own (child.py); everything else here."""

    def run(self, grid: Grid) -> list[dict]:
        results = []
        grid = replace(grid, trials_apart=True)  # a search's trials too, each in a process of its own
        for model, method_spec, size, seeds in grid.groups():
            chosen, selection = with_search(grid, model, method_spec, size)
            for index, seed in seeds:
                cell = Cell(model, chosen, seed, size)
                record = earlier_result(cell, grid, index)
                if record is None:
                    record = self._in_child(cell, grid, index, selection)
                grid.on_result(record, grid.exp_dir / cell.name)
                results.append(record)
        return results

    def _in_child(self, cell: Cell, grid: Grid, index: int, selection: dict | None) -> dict:
        try:
            return run_in_child(
                _child_run_cell, grid.for_worker(), cell, index, selection, name=f"tunebench {cell.name}"
            )
        except ChildDied as e:  # the run's own handling never ran: record its failure for it
            record = record_failure(cell, grid, selection, str(e))
            _report(record, index, grid.total)
            return record


def _child_run_cell(grid: Grid, cell: Cell, index: int, selection: dict | None) -> dict:
    """One run in its own process (ProcessExecutor): written to its folder as a local run is."""
    in_own_process()
    return _run_with_selection(grid, cell, index, selection)


def record_failure(cell: Cell, grid: Grid, selection: dict | None, reason: str) -> dict:
    """Record a run that failed outside its own error handling (its process died), in its run folder."""
    config = grid.config(cell)
    record = base_record(config, grid.digest(cell))
    record["error"], record["selection"] = reason, selection
    folder = grid.exp_dir / cell.name
    folder.mkdir(parents=True, exist_ok=True)
    store.write_json_atomic(folder / store.RESULT, record)
    return record


class _scratch:
    """A private folder for the files of a process that is not the main one (deleted at the end)."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix=f"tunebench-rank{distributed.rank()}-"))
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# -- Ray ---------------------------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray  # lazy: optional extra [ray]
    except ImportError:
        raise TunebenchError(
            "--executor ray needs Ray, which is not installed: pip install 'tunebench[ray]'"
        ) from None
    return ray


def _ray_run_cell(grid: Grid, cell: Cell, index: int, selection: dict | None) -> dict:
    """A Ray task: one run, written to its folder like a local one; returns the record."""
    _use_cpus(cell.method.resources)
    in_own_process()  # max_calls=1: the worker runs this task only
    return _run_with_selection(grid, cell, index, selection)


def _ray_select(
    grid: Grid, model: ResolvedModel, method_spec: MethodSpec, size: TrainingSubset | None = None
) -> tuple[MethodSpec, dict | None]:
    """A Ray task: the learning-rate search of one (model, method, training-set size); returns (chosen
    spec, selection)."""
    _use_cpus(method_spec.resources)
    return with_search(grid, model, method_spec, size)


def _use_cpus(resources: Resources) -> None:
    """Threads for the cores the task asked for: Ray reserves them but does not stop torch from using
    every core of the node, which would make runs placed side by side slow each other down."""
    import torch  # lazy: slow import

    torch.set_num_threads(max(1, int(resources.cpus)))


class RayExecutor:
    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.ray = _import_ray()

    def run(self, grid: Grid) -> list[dict]:
        ray = self.ray
        self._connect()
        cluster = ray.cluster_resources()
        shared = ray.put(grid.for_worker())  # sent to the object store once, not per task
        # A retry would hide a crash and cost its time; a fresh worker per run (max_calls=1) makes its peak
        # memory its own, as under the process executor.
        run_task = ray.remote(max_retries=0, max_calls=1)(_ray_run_cell)
        select_task = ray.remote(max_retries=0)(_ray_select)
        results: dict[int, dict] = {}
        pending: dict[Any, tuple] = {}

        def done(index: int, cell: Cell, record: dict) -> None:
            results[index] = record
            grid.on_result(record, grid.exp_dir / cell.name)

        def fail_all(
            model: ResolvedModel, method_spec: MethodSpec, size: Size, seeds: list, reason: str
        ) -> None:
            for index, seed in seeds:
                cell = Cell(model, method_spec, seed, size)
                done(index, cell, record_failure(cell, grid, None, reason))

        def submit(
            model: ResolvedModel, chosen: MethodSpec, size: Size, seeds: list, selection: dict | None
        ) -> None:
            for index, seed in seeds:
                cell = Cell(model, chosen, seed, size)
                _, earlier = grid.finished(cell)
                if earlier is not None:
                    grid.progress.skip(cell.name, index, grid.total)
                    done(index, cell, earlier)
                    continue
                try:
                    options = task_options(chosen.resources, cluster, f"methods ({chosen.name}).resources")
                except TunebenchError as e:
                    done(index, cell, record_failure(cell, grid, selection, str(e)))
                    continue
                console.print(f"[bold][{index}/{grid.total}] {cell.name}[/bold]: started on Ray")
                ref = run_task.options(**options).remote(shared, cell, index, selection)
                pending[ref] = ("run", index, cell, selection)

        for model, method_spec, size, seeds in grid.groups():
            if needs_search(method_spec):
                try:
                    options = task_options(
                        method_spec.resources, cluster, f"methods ({method_spec.name}).resources"
                    )
                except TunebenchError as e:
                    fail_all(model, method_spec, size, seeds, str(e))
                    continue
                ref = select_task.options(**options).remote(shared, model, method_spec, size)
                pending[ref] = ("select", model, method_spec, size, seeds)
            else:
                submit(model, method_spec, size, seeds, None)

        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            kind, *rest = pending.pop(ref)
            if kind == "select":
                model, method_spec, size, seeds = rest
                try:
                    chosen, selection = ray.get(ref)
                except Exception as e:  # the search's worker died: its runs cannot start
                    reason = "the learning-rate search failed: " + _ray_failure(e)
                    fail_all(model, method_spec, size, seeds, reason)
                    continue
                submit(model, chosen, size, seeds, selection)
            else:
                index, cell, selection = rest
                try:
                    record = ray.get(ref)
                except Exception as e:  # raised outside the run's own error handling, or the worker died
                    record = record_failure(cell, grid, selection, _ray_failure(e))
                _report(record, index, grid.total)
                done(index, cell, record)
        return [results[i] for i in sorted(results)]

    def _connect(self) -> None:
        """Join the cluster at --ray-address, or start a local Ray (unless this process already joined one)."""
        ray = self.ray
        if ray.is_initialized():
            return

        source = str(Path(tunebench.__file__).resolve().parents[1])
        if self.address:
            # The cluster's workers get this tunebench (the package folder is uploaded); its dependencies
            # (torch, transformers, …) must be installed there.
            env: dict[str, Any] = {"py_modules": [str(Path(tunebench.__file__).resolve().parent)]}
        else:
            # Workers are started with this Python; PYTHONPATH makes them import this source tree.
            env = {"env_vars": {"PYTHONPATH": source, "TOKENIZERS_PARALLELISM": "false"}}
        try:
            ray.init(address=self.address, runtime_env=env, include_dashboard=False, log_to_driver=True)
        except Exception as e:
            where = f"--ray-address {self.address}" if self.address else "a local Ray instance"
            raise TunebenchError(f"{where}: Ray did not start ({type(e).__name__}: {e})") from None


def task_options(resources: Resources, cluster: dict[str, float], where: str) -> dict[str, Any]:
    """Ray's resource request for one run; an error, rather than a task that waits forever, when the
    cluster has less than that in all."""
    gpus = resources.gpus if resources.gpus is not None else (1.0 if cluster.get("GPU", 0) >= 1 else 0.0)
    memory_mb = resources.memory_mb(where)
    wanted = {"CPU": resources.cpus, "GPU": gpus, "memory": (memory_mb or 0) * 2**20}
    for key, amount in wanted.items():
        if amount and amount > cluster.get(key, 0):
            have = cluster.get(key, 0)
            if key == "memory":
                asked, held = f"{amount / 2**20:.0f} MB", f"{have / 2**20:.0f} MB"
            else:
                asked, held = f"{amount:g}", f"{have:g}"
            raise TunebenchError(
                f"{where}: a run asks for {asked} {key}, and the Ray cluster has {held} in all"
            )
    options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": gpus}
    if memory_mb:
        options["memory"] = int(memory_mb * 2**20)
    return options


def _ray_failure(e: Exception) -> str:
    """What went wrong in a Ray task, in a line: the task's own exception, or how its worker died."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {cause}"
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"the Ray worker running this run died ({type(e).__name__}: {first})"


def _report(record: dict, index: int, total: int) -> None:
    name = store.record_run_name(record)
    if record["status"] == "ok":
        metric = record["primary_metric"]
        console.print(
            f"[{index}/{total}] {name}: [green]done[/green] {metric} {record['metrics'][metric]:.1%}"
        )
    else:
        console.print(f"[{index}/{total}] {name}: [red]failed[/red]: {record['error']}")


def for_launch(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec as one of several processes of a torchrun / accelerate launch runs it.

    A learning-rate search is refused (its cache would have to be shared by every process), and training
    checkpoints are off: each process would have to resume from the same one, and only the main process
    writes. Both are single-process features for now (docs/distributed.md).
    """
    if not distributed.launched():
        return spec
    for m in spec.methods:
        if m.search is not None:
            raise SpecError(
                f"{spec.source}: methods ({m.name}).search: a search runs in one process; run it in a "
                "single-process run, then give the chosen options to this launch"
            )
        if needs_lr_search(m):
            raise SpecError(
                f"{spec.source}: methods ({m.name}).lr_grid: a learning-rate search runs in one process; "
                "choose the learning rate in a single-process run, then set budget.lr for this launch"
            )
    world = distributed.world_size()
    for m in spec.methods:
        if m.budget.batch_size % world:
            raise SpecError(
                f"{spec.source}: methods ({m.name}).batch_size: {m.budget.batch_size} examples cannot be "
                f"shared evenly by {world} processes; use a multiple of {world}"
            )
    if not hasattr(spec.budget, "checkpoint_every"):
        return spec
    methods = [replace(m, budget=replace(m.budget, checkpoint_every=0)) for m in spec.methods]
    return replace(spec, methods=methods, budget=replace(spec.budget, checkpoint_every=0))
