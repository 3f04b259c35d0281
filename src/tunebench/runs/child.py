"""Run a function in a fresh Python process and get its result back: one process per run.

Why: a run's peak memory is the peak resident set of the process that trains it, and a process that has
already trained other runs keeps some of what they allocated (the allocator's free lists, caches that
grow), so in a shared process the memory column measures the run order as much as the method (FINDINGS
§7a: the probe measured 625 MB first and 1,950 MB after three trained runs). A fresh process per run also
turns a crash that would end the whole grid (a segfault in a kernel, the out-of-memory killer) into one
failed run with its reason, while the rest of the grid goes on.

Not `fork` of this process: the child would share the parent's pages (counted in its resident set, with
whatever earlier runs left there) and inherit torch's thread pools in an undefined state. A fork server
instead: a clean process, started once, that has imported what a run needs (torch, transformers, PEFT,
tunebench) and has run nothing; each run is a fork of it, so it starts in milliseconds rather than the ten
seconds those imports take on 2 cores, with the same resident baseline a fresh process would have. The
child takes the parent's environment variables and working folder as they are when the run starts (the
server's are those of when it started). Where there is no fork server (Windows), a spawned process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class ChildDied(Exception):
    """The child process ended without handing back a result (killed, or crashed in native code)."""


def run_in_child(fn: Callable[..., Any], *args: Any, name: str = "tunebench-run") -> Any:
    """`fn(*args)` in a new process; its return value, or its exception raised again here. `fn` and
    `args` must pickle. Ctrl-C reaches the child too (same process group): this waits for it to finish
    its own handling (a run saves its checkpoint) before raising KeyboardInterrupt here."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    here = (dict(os.environ), os.getcwd())
    child = ctx.Process(target=_child_main, args=(send, here, fn, args), name=name)
    child.start()
    send.close()  # the child holds the only sending end: EOF here means it ended without a word
    try:
        message = receive.recv()
    except EOFError:
        message = None  # it ended without a word
    finally:
        receive.close()
        child.join()  # on Ctrl-C too, which reaches the child: it finishes its own handling first
    if message is None:
        raise ChildDied(death_reason(child.exitcode))
    kind, value = message
    if kind == "error":
        raise value
    return value


#: What the fork server imports before it forks any run (quiet libraries, the slow imports every run makes).
PRELOAD = ["tunebench.runs.preload"]


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # read when the server starts (the first run), ignored after
    return ctx


def _child_main(
    send: Connection, here: tuple[dict[str, str], str], fn: Callable[..., Any], args: tuple
) -> None:
    environ, cwd = here
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    try:
        result: tuple[str, Any] = ("ok", fn(*args))
    except BaseException as e:
        result = ("error", _portable(e))
    try:
        send.send(result)
    finally:
        send.close()


def _portable(e: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError with its type and text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # an exception holding an unpicklable object (a lock, a tensor on a device)
        return RuntimeError(f"{type(e).__name__}: {e}")


def death_reason(exitcode: int | None) -> str:
    """Why a child ended without a result, in words: its exit status or the signal that ended it."""
    if exitcode is None or exitcode >= 0:
        return f"the process running this run exited with status {exitcode} without a result"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return (
            f"the process running this run was killed ({name}); on Linux the out-of-memory killer does "
            "this when the machine runs out of memory: a smaller batch_size or max_length needs less"
        )
    return f"the process running this run died of {name} (a crash in native code)"
