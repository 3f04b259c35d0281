"""Tasks: data splits, how a model is asked, how answers are scored.

Importing this package registers the built-in tasks in `TASKS`.
"""

from tunebench.tasks import arithmetic, files  # noqa: F401  (registration)
from tunebench.tasks.base import TASKS, Example, Splits, Task, TaskEntry, build_task

__all__ = ["TASKS", "Example", "Splits", "Task", "TaskEntry", "build_task"]
