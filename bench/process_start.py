"""What a run's own process costs to start (the process executor, runs/child.py), and its resident baseline.

    .venv/bin/python bench/process_start.py

The first start includes the fork server's imports (torch, transformers, PEFT, tunebench); later ones are a
fork of it.
"""

import time

import psutil

from tunebench.runs.child import run_in_child


def resident_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


if __name__ == "__main__":
    for i in range(4):
        t = time.perf_counter()
        rss = run_in_child(resident_mb)
        print(f"start {i}: {time.perf_counter() - t:.2f} s, the child's resident set {rss:.0f} MB")
