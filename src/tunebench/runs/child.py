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

from tunebench.core.quiet import quiet_libraries


class ChildDied(Exception):
    """The child process ended without handing back a result (killed, or crashed in native code)."""


def run_in_child(
    fn: Callable[..., Any],
    *args: Any,
    name: str = "tunebench-run",
    answer: Callable[[Any], Any] | None = None,
) -> Any:
    """`fn(*args)` in a new process; its return value, or its exception raised again here. `fn` and
    `args` must pickle. Ctrl-C reaches the child too (same process group): this waits for it to finish
    its own handling (a run saves its checkpoint) before raising KeyboardInterrupt here.

    `answer`: what the child may ask this process while it runs (`ask_parent(question)` in the child
    returns `answer(question)`), for state that lives here, such as a search trial asking the parent's
    Optuna pruner whether to stop."""
    ctx = _context()
    here_end, child_end = ctx.Pipe(duplex=True)
    environment = (dict(os.environ), os.getcwd())
    child = ctx.Process(target=_child_main, args=(child_end, environment, fn, args), name=name)
    child.start()
    child_end.close()  # the child holds the only other end: EOF here means it ended without a word
    try:
        message = _converse(here_end, answer)
    finally:
        here_end.close()
        child.join()  # on Ctrl-C too, which reaches the child: it finishes its own handling first
    if message is None:
        raise ChildDied(death_reason(child.exitcode))
    kind, value = message
    if kind == "error":
        raise value
    return value


def _converse(end: Connection, answer: Callable[[Any], Any] | None) -> tuple[str, Any] | None:
    """Answer the child's questions until its result comes; None when it ended without one."""
    while True:
        try:
            kind, value = end.recv()
        except EOFError:
            return None
        if kind != "ask":
            return kind, value
        if answer is None:
            raise RuntimeError("the child asked a question, but run_in_child was given no `answer`")
        end.send(answer(value))


#: The connection to the parent, in a child started by run_in_child (None elsewhere).
_PARENT: Connection | None = None


def ask_parent(question: Any) -> Any:
    """In a child of run_in_child: the parent's `answer(question)`."""
    if _PARENT is None:
        raise RuntimeError("ask_parent is only for a process started by run_in_child")
    _PARENT.send(("ask", question))
    return _PARENT.recv()


#: What the fork server imports before it forks any run (quiet libraries, the slow imports every run makes).
PRELOAD = ["tunebench.runs.preload"]


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # read when the server starts (the first run), ignored after
    return ctx


def _child_main(
    parent: Connection, here: tuple[dict[str, str], str], fn: Callable[..., Any], args: tuple
) -> None:
    global _PARENT
    environ, cwd = here
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    _PARENT = parent
    quiet_libraries()  # as in the CLI that asked (the fork server did so too; a spawned child did not)
    try:
        result: tuple[str, Any] = ("ok", fn(*args))
    except BaseException as e:
        result = ("error", _portable(e))
    try:
        parent.send(result)
    finally:
        parent.close()


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
