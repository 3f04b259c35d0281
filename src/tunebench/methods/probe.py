"""The feature-based method: a frozen model's representation → logistic regression (scikit-learn).

Features are pooled the model's own way (methods/pooling.py: a sentence-transformers pooling config when
the model has one, else the mean for encoders and the last token for decoders), exactly as a
classification head reads them. They are computed once per (model, data, pooling, length, precision)
and cached on disk under the tunebench cache, so retraining the head — another C, another seed, or
LP-FT's probe before fine-tuning — costs seconds.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, Method, count_parameters
from tunebench.methods.cost import Cost, probe_params, zero
from tunebench.methods.pooling import (
    POOLINGS,
    Pooling,
    feature_cache,
    load_trunk,
    model_pooling,
    pooled_features,
    trunk_pooled,
)
from tunebench.models.load import load_tokenizer
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Task
from tunebench.train.loop import TrainStats
from tunebench.train.memory import PeakMemory


@dataclass
class ProbeOptions:
    pooling: str = "auto"
    """auto (the model's own, as every classification head reads it: a sentence-transformers pooling
    config, else mean for encoders and the last token for decoders), or cls, mean, max, last,
    mean_sqrt_len, weighted_mean."""
    C: float = 1.0
    """Inverse L2 regularisation strength of the logistic regression."""
    max_iter: int = 2000

    def check(self, where: str) -> None:
        require(
            self.pooling == "auto" or self.pooling in POOLINGS,
            f"{where}.pooling",
            f"expected auto, {', '.join(POOLINGS)}; got {self.pooling!r}",
        )
        require(self.C > 0, f"{where}.C", "must be positive")


def logistic(options: ProbeOptions) -> Any:
    """The probe's (unfitted) logistic regression: multinomial over the labels, L2-regularised."""
    from sklearn.linear_model import LogisticRegression  # lazy: slow import

    return LogisticRegression(C=options.C, max_iter=options.max_iter)


def linear_init(classifier: Any, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted logistic regression as a Linear layer's (n_labels, H) weight and (n_labels,) bias, float32,
    whose softmax gives the regression's probabilities.

    Binary regression keeps one row w for class 1 (p = σ(w·x + b)); rows (-w/2, w/2) and biases (-b/2, b/2)
    give the same softmax. A label absent from the training split gets a zero row and a bias below every
    other, so it is never predicted, as the probe never predicts it.
    """
    coef, intercept = classifier.coef_, classifier.intercept_
    if coef.shape[0] == 1:
        coef, intercept = (
            np.concatenate([-coef / 2, coef / 2]),
            np.concatenate([-intercept / 2, intercept / 2]),
        )
    weight = np.zeros((n_labels, coef.shape[1]), dtype=np.float32)
    bias = np.full(n_labels, intercept.min() - 10.0, dtype=np.float32)
    rows = np.asarray(classifier.classes_, dtype=np.int64)
    weight[rows], bias[rows] = coef, intercept
    return weight, bias


@METHODS.register("probe")
class Probe(Method):
    name = "probe"
    updates = "a linear classifier on frozen features"
    access = "white box"
    summary = "feature-based: logistic regression on the frozen model's pooled representation (cached)"
    Options = ProbeOptions
    cost = Cost(
        "frozen features (inference) and a linear head fitted apart",
        added=probe_params,
        backprop_layers=zero,
        artifact=probe_params,
    )

    def check(self, task: Task, model: ResolvedModel) -> None:
        if task.kind != "classification":
            raise UnsupportedError(
                f"probe trains a classifier and needs a classification task; {task.name} is a "
                f"{task.kind} task"
            )

    def prepare(self, ctx: Context) -> None:
        self.ctx_model = ctx.model
        own = model_pooling(ctx.model)
        chosen = own if self.options.pooling == "auto" else Pooling(self.options.pooling, "probe.pooling")
        self.pooling = chosen.mode
        self.head_info = {"pooling": chosen.mode, "pooling_source": chosen.source, "init": "probe"}
        self.tokenizer = load_tokenizer(ctx.model)
        self.trunk = load_trunk(ctx.model, ctx.device)
        self.trunk.requires_grad_(False)
        self.labels = list(ctx.task.labels or [])
        self.classifier = logistic(self.options)

    def param_counts(self) -> tuple[int, int]:
        hidden = self.trunk.config.hidden_size
        rows = 1 if len(self.labels) == 2 else len(self.labels)
        trainable = rows * (hidden + 1)
        return trainable, count_parameters(self.trunk)[1] + trainable

    def features(self, ctx: Context, texts: list[str]) -> np.ndarray:
        cache = feature_cache(self.ctx_model, self.trunk, self.pooling, ctx, texts)
        embed = functools.partial(trunk_pooled, self.trunk, self.pooling)
        return pooled_features(embed, self.tokenizer, texts, ctx, cache)

    def fit(self, ctx: Context) -> TrainStats:
        with PeakMemory() as mem:
            start = time.perf_counter()
            x = self.features(ctx, [e.input for e in ctx.splits.train])
            y = [self.labels.index(e.target) for e in ctx.splits.train]
            self.classifier.fit(x, y)
            seconds = time.perf_counter() - start
        return TrainStats(
            seconds=seconds, examples=len(y), peak_rss_mb=mem.peak_rss_mb, peak_gpu_mb=mem.peak_gpu_mb
        )

    def predict(self, ctx: Context, inputs: list[str]) -> list[str]:
        predicted = self.classifier.predict(self.features(ctx, inputs))
        if ctx.on_eval_batch is not None:
            ctx.on_eval_batch(len(inputs))
        return [self.labels[int(k)] for k in predicted]

    def export(self, folder: Path) -> None:
        save_file(
            {
                "coef": self.classifier.coef_.astype(np.float32),
                "intercept": self.classifier.intercept_.astype(np.float32),
                "classes": self.classifier.classes_.astype(np.int64),
            },
            str(folder / "probe.safetensors"),
        )
        (folder / "probe.json").write_text(
            json.dumps({"labels": self.labels, "pooling": self.pooling}, indent=2)
        )

    def load_artifact(self, folder: Path) -> None:
        tensors = load_file(str(folder / "probe.safetensors"))
        meta = json.loads((folder / "probe.json").read_text())
        self.labels, self.pooling = meta["labels"], meta["pooling"]
        self.classifier.coef_ = tensors["coef"].astype(np.float64)
        self.classifier.intercept_ = tensors["intercept"].astype(np.float64)
        self.classifier.classes_ = tensors["classes"]
