"""The model zoo: packaged offline models, hub ids and local folders, tiny random models for tests."""

from tunebench.models.zoo import MODELS, ModelEntry, ResolvedModel, resolve_model

__all__ = ["MODELS", "ModelEntry", "ResolvedModel", "resolve_model"]
