"""A method whose run kills its process, for the Ray executor's tests; registered in each Ray worker by
the `worker_process_setup_hook` of the test's Ray instance (and in the test process itself)."""

from __future__ import annotations

import os

from tunebench.methods import METHODS
from tunebench.methods.prompting import ZeroShot

CRASH = "crash-worker"


class CrashWorker(ZeroShot):
    name = CRASH
    summary = "dies (os._exit) when its run prepares the model: a worker lost mid-run"

    def prepare(self, ctx) -> None:
        os._exit(17)


def register() -> None:
    if CRASH not in METHODS:
        METHODS.add(CRASH, CrashWorker)
