"""Teachers for distillation and preference pairs (see base.py for the contract)."""

from tunebench.teachers.base import TEACHERS, Teacher, TeacherOutput

__all__ = ["TEACHERS", "Teacher", "TeacherOutput"]
