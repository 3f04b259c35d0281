"""The engine: served names, the request queue, and the one thread that runs the models.

Requests from the HTTP side become jobs (one row per prompt) in a queue. A single worker thread owns
every model: it waits for a job, lets more arrive for `batch_wait_ms` (or until a batch is full), then
runs the oldest job's batch key — in mixed mode every job on the shared lane, whatever adapter it names;
in per-adapter mode only the jobs of the same adapter — and streams tokens back as they are chosen.
Loading and unloading adapters also run on this thread, between batches, so no batch ever sees a model
change under it. One thread is enough: a batch already uses every core through torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tunebench.serve.artifacts import Artifact
from tunebench.serve.decode import Row, Sampling, run_batch
from tunebench.serve.lanes import Lane
from tunebench.serve.prompts import PromptTemplate

log = logging.getLogger("tunebench.serve")


@dataclass
class Route:
    """What one served name runs: a lane, the adapter inside it (None: the lane's own model), and for a
    prompting run the template put around each request."""

    name: str
    lane: Lane
    adapter: str | None = None
    template: PromptTemplate | None = None
    artifact: Artifact | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    def describe(self) -> dict[str, Any]:
        """The /v1/models entry (OpenAI's fields plus what tunebench knows)."""
        a = self.artifact
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "tunebench",
            "kind": a.summary if a else "base model",
            "batching": "shared" if self.lane.mixes else "own",
            "trained_on": a.trained_on if a else None,
            "method": (a.run.get("method") if a else None),
        }


class Job:
    """One request: a row per prompt, and the asyncio queue its events go to (filled from the worker
    thread): ("delta", row index, text, finish reason or None), then ("done",) or ("error", status, text)."""

    _ids = itertools.count()

    def __init__(
        self, route: Route, prompts: list[list[int]], sampling: Sampling, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.id = next(self._ids)
        self.route = route
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.rows = [Row(ids, sampling, route.adapter, i, self._emit) for i, ids in enumerate(prompts)]

    def _emit(self, index: int, text: str, finish: str | None) -> None:
        self.post(("delta", index, text, finish))

    def post(self, event: tuple) -> None:
        """Deliver an event to the request's coroutine, from any thread."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def cancel(self) -> None:
        for row in self.rows:
            row.cancelled = True

    @property
    def cancelled(self) -> bool:
        return all(r.cancelled for r in self.rows)


class Busy(Exception):
    """Too many requests at once."""


class Engine:
    """Holds the lanes and routes, admits jobs, and runs them on its worker thread."""

    def __init__(
        self,
        *,
        device,
        bf16: bool,
        mixed: bool,
        max_batch_size: int,
        batch_wait_ms: float,
        max_concurrent: int,
    ) -> None:
        self.device, self.bf16, self.mixed = device, bf16, mixed
        self.max_batch_size, self.batch_wait = max_batch_size, batch_wait_ms / 1000
        self.max_concurrent = max_concurrent
        self.routes: dict[str, Route] = {}
        self._queue: queue.Queue = queue.Queue()
        self._active = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_rows, self._last_seconds = 0, 0.0  # the last batch's size and time, for _collect
        self.stats = {"batches": 0, "rows": 0, "mixed_batches": 0}

    # -- the HTTP side -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job, or raise Busy when `max_concurrent` jobs are already queued or running."""
        with self._lock:
            if self._active >= self.max_concurrent:
                raise Busy(f"the server is at its limit of {self.max_concurrent} concurrent requests")
            self._active += 1
        self._queue.put(job)

    @property
    def active(self) -> int:
        """Jobs queued or generating now."""
        return self._active

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run `fn` on the worker thread between batches (loading and unloading adapters)."""
        future: Future = Future()
        self._queue.put((fn, future))
        return future

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tunebench-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the worker thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        pending: deque[Job] = deque()
        while True:
            if not self._collect(pending):
                for job in pending:
                    self._fail(job, "the server is shutting down")
                return
            if pending:
                self._run(self._take(pending))

    def _collect(self, pending: deque[Job]) -> bool:
        """Move queued items into `pending`; False once asked to stop.

        Waits for a first job when idle, then for more: until `batch_wait` passes without one, or the
        batch is full. While fewer rows wait than the last batch had, it keeps waiting (up to a cap of
        5% of the last batch's time, at least 4 × `batch_wait`): the clients that batch just answered
        are coming back, over tens of milliseconds rather than at once, and starting without them would
        split a closed loop of clients into two halves that take turns at half the batch size.
        """
        cap = max(4 * self.batch_wait, 0.05 * self._last_seconds)
        first = deadline = None
        if pending:
            first = time.monotonic()
            deadline = self._deadline(pending, first, first, cap)
        while True:
            if deadline is None:
                item = self._queue.get()
            else:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    return True
            if item is None:
                return False
            if isinstance(item, tuple):
                self._command(*item)
                continue
            pending.append(item)
            now = time.monotonic()
            first = first or now
            deadline = self._deadline(pending, first, now, cap)

    def _deadline(self, pending: deque[Job], first: float, now: float, cap: float) -> float:
        rows = sum(len(j.rows) for j in pending)
        if rows >= self.max_batch_size:
            return now
        if rows < self._last_rows:
            return first + cap
        return min(first + cap, now + self.batch_wait)

    def _command(self, fn: Callable[[], Any], future: Future) -> None:
        try:
            future.set_result(fn())
        except Exception as e:  # handed to the caller, who turns it into an HTTP error
            future.set_exception(e)

    def _key(self, job: Job):
        return job.route.lane.batch_key(job.route.adapter, self.mixed)

    def _take(self, pending: deque[Job]) -> list[Job]:
        """The oldest job and every later one with the same batch key, up to a full batch."""
        key, rows = self._key(pending[0]), 0
        batch: list[Job] = []
        rest: list[Job] = []
        while pending:
            job = pending.popleft()
            if job.cancelled:
                self._done(job)
            elif self._key(job) == key and (not batch or rows + len(job.rows) <= self.max_batch_size):
                batch.append(job)
                rows += len(job.rows)
            else:
                rest.append(job)
        pending.extend(rest)
        return batch

    def _run(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        route0 = jobs[0].route
        lane = route0.lane
        missing = [j for j in jobs if self.routes.get(j.route.name) is not j.route]
        for job in missing:  # unloaded while it waited
            self._fail(job, f"model {job.route.name!r} was unloaded", status=404)
        jobs = [j for j in jobs if j not in missing]
        rows = [row for job in jobs for row in job.rows]
        if not rows:
            return
        started = time.monotonic()
        try:
            with lane.activate([r.adapter for r in rows], self.mixed) as (model, extra):
                run_batch(model, lane.detokenizer, rows, extra, device=self.device, bf16=self.bf16)
        except Exception as e:  # one bad batch must not take the server down; its clients get a 500
            log.exception("batch on lane %s failed", lane.name)
            for job in jobs:
                self._fail(job, f"generation failed: {type(e).__name__}: {e}", status=500)
            return
        self._last_rows, self._last_seconds = len(rows), time.monotonic() - started
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        self.stats["mixed_batches"] += len({r.adapter for r in rows}) > 1
        log.debug(
            "batch of %d rows (%d jobs) on %s in %.2fs",
            len(rows),
            len(jobs),
            lane.name,
            time.monotonic() - started,
        )
        for job in jobs:
            self._done(job)

    def _fail(self, job: Job, message: str, status: int = 503) -> None:
        job.post(("error", status, message))
        self._release()

    def _done(self, job: Job) -> None:
        job.post(("done",))
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
