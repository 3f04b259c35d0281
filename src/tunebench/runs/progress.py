"""Progress of a comparison: which run, training steps with loss, evaluation batches.

A live rich display on a terminal; on a pipe or in CI, a line every tenth of a phase instead.
"""

from __future__ import annotations

from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tunebench.core.ui import console, interactive


class RunProgress:
    def __init__(self) -> None:
        self.live = interactive()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._label = ""
        self._last_line = -1

    def run_start(self, label: str, index: int, total: int) -> None:
        self._label = f"[{index}/{total}] {label}"
        console.print(f"[bold]{self._label}[/bold]")

    def skip(self, label: str, index: int, total: int) -> None:
        console.print(
            f"[dim][{index}/{total}] {label}: finished earlier, reusing its result (--force redoes it)[/dim]"
        )

    def reused(self, label: str, index: int, total: int, source: Path) -> None:
        console.print(
            f"[dim][{index}/{total}] {label}: the same run finished in {source.parent.name}, reusing it "
            "(--force redoes it)[/dim]"
        )

    def _phase(self, description: str, total: int) -> None:
        self._close()
        self._last_line = -1
        if self.live:
            self._progress = Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(description, total=total, info="")

    def train_step(self, step: int, total: int, loss: float) -> None:
        if step == 1:
            self._phase("train", total)
        if self._progress is not None:
            assert self._task is not None  # set together with _progress in _phase
            self._progress.update(self._task, completed=step, info=f"loss {loss:.3f}")
        elif step == total or step * 10 // total > self._last_line:
            self._last_line = step * 10 // total
            console.print(f"  train step {step}/{total}  loss {loss:.4f}")
        if step == total:
            self._close()

    def eval_start(self, total: int) -> None:
        self._eval_done, self._eval_total = 0, total
        self._phase("evaluate", total)

    def eval_batch(self, n: int) -> None:
        self._eval_done += n
        if self._progress is not None:
            assert self._task is not None  # set together with _progress in _phase
            self._progress.update(self._task, completed=self._eval_done)
        elif self._eval_done == self._eval_total or self._eval_done * 4 // self._eval_total > self._last_line:
            self._last_line = self._eval_done * 4 // self._eval_total
            console.print(f"  evaluate {self._eval_done}/{self._eval_total}")

    def run_end(self, result: dict) -> None:
        self._close()
        if result["status"] == "ok":
            metric = result["primary_metric"]
            lo, hi = result["ci95"]
            console.print(
                f"  [green]done[/green] {metric} {result['metrics'][metric]:.1%} (95% CI {lo:.1%}–{hi:.1%})"
            )
        else:
            console.print(f"  [red]failed[/red]: {result['error']}")

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
