"""The feature-based method: a frozen model's representation → logistic regression (scikit-learn).

Features are computed once per (model, data, pooling, length) and cached on disk under the tunebench
cache, so retraining the head — another C, another seed — costs seconds. Encoders are pooled at the
[CLS] token or by the mean over tokens; decoders by their last token (which has seen the whole input)
or the mean.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from tunebench.errors import UnsupportedError
from tunebench.methods.base import METHODS, Context, Method, count_parameters
from tunebench.models.load import load_tokenizer
from tunebench.models.zoo import ResolvedModel, cache_dir
from tunebench.tasks.base import Task
from tunebench.train.data import collate, encode_labelled
from tunebench.train.device import autocast
from tunebench.train.loop import TrainStats
from tunebench.train.memory import PeakMemory
from tunebench.typed import require


@dataclass
class ProbeOptions:
    pooling: str = "auto"
    """cls, mean or last (auto: cls for encoders, last token for decoders)."""
    C: float = 1.0
    """Inverse L2 regularisation strength of the logistic regression."""
    max_iter: int = 2000

    def check(self, where: str) -> None:
        require(
            self.pooling in ("auto", "cls", "mean", "last"),
            f"{where}.pooling",
            f"expected auto, cls, mean or last, got {self.pooling!r}",
        )
        require(self.C > 0, f"{where}.C", "must be positive")


@METHODS.register("probe")
class Probe(Method):
    name = "probe"
    updates = "a linear classifier on frozen features"
    access = "white box"
    summary = "feature-based: logistic regression on the frozen model's pooled representation (cached)"
    Options = ProbeOptions

    def check(self, task: Task, model: ResolvedModel) -> None:
        if task.kind != "classification":
            raise UnsupportedError(
                f"probe trains a classifier and needs a classification task; {task.name} is a "
                f"{task.kind} task"
            )

    def prepare(self, ctx: Context) -> None:
        from sklearn.linear_model import LogisticRegression
        from transformers import AutoModel

        self.ctx_model = ctx.model
        self.pooling = self.options.pooling
        if self.pooling == "auto":
            self.pooling = "cls" if ctx.model.kind == "encoder" else "last"
        self.tokenizer = load_tokenizer(ctx.model)
        self.trunk = AutoModel.from_pretrained(ctx.model.path, dtype=torch.float32).to(ctx.device).eval()
        self.trunk.requires_grad_(False)
        self.labels = list(ctx.task.labels or [])
        self.classifier = LogisticRegression(C=self.options.C, max_iter=self.options.max_iter)

    def param_counts(self) -> tuple[int, int]:
        hidden = self.trunk.config.hidden_size
        rows = 1 if len(self.labels) == 2 else len(self.labels)
        trainable = rows * (hidden + 1)
        return trainable, count_parameters(self.trunk)[1] + trainable

    def features(self, ctx: Context, texts: list[str]) -> np.ndarray:
        path = self._cache_path(ctx, texts)
        if path.exists():
            return np.load(path)
        encoded, _ = encode_labelled(self.tokenizer, texts, [0] * len(texts), ctx.budget.max_length)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
        out = np.zeros((len(texts), self.trunk.config.hidden_size), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(order), ctx.budget.eval_batch_size):
                idx = order[start : start + ctx.budget.eval_batch_size]
                batch = collate([encoded[i] for i in idx], self.tokenizer.pad_token_id).to(ctx.device)
                with autocast(ctx.device, ctx.bf16):
                    hidden = self.trunk(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
                out[idx] = self._pool(hidden.last_hidden_state.float(), batch.attention_mask).cpu().numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
        return out

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, H), (B, T) → (B, H)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        last = mask.sum(1) - 1  # right padding: the last real token of each row
        return hidden[torch.arange(hidden.shape[0]), last]

    def _cache_path(self, ctx: Context, texts: list[str]) -> Path:
        weights = Path(self.ctx_model.path) / "model.safetensors"
        stamp = weights.stat().st_mtime_ns if weights.exists() else 0
        h = hashlib.sha256(
            json.dumps([self.ctx_model.path, stamp, self.pooling, ctx.budget.max_length]).encode()
        )
        for t in texts:
            h.update(t.encode() + b"\0")
        return cache_dir() / "features" / f"{self.ctx_model.name}-{h.hexdigest()[:20]}.npy"

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
