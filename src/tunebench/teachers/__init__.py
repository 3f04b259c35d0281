"""Teachers for distillation and preference pairs (see base.py for the contract).

Importing this package registers the built-in teachers in `TEACHERS`.
"""

from tunebench.teachers import local, openai_endpoint, oracle  # noqa: F401  (registration)
from tunebench.teachers.base import TEACHERS, Teacher, TeacherOutput, build_teacher

__all__ = ["TEACHERS", "Teacher", "TeacherOutput", "build_teacher"]
