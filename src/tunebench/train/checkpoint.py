"""Training checkpoints: what a killed run needs to go on exactly where it stopped.

A checkpoint holds only what training changes: the trainable tensors (an adapter's few megabytes, not the
frozen base, which `prepare` rebuilds from the model cache and the seed), the optimizer and scheduler
states, the random generators (torch, CUDA, numpy, python), the position in the batch stream (optimizer
steps done; the stream is a pure function of seed and position) and the running statistics. With all of
that restored, the resumed run computes the same steps as one that was never interrupted.

Layout, in the run folder:

    checkpoint/meta.json              format, tag (the run's config hash), step, statistics, caller state
    checkpoint/trainable.safetensors  the trainable parameters, by name
    checkpoint/training.pt            optimizer, scheduler and generator states, and the method's training
                                      hook's (AdaLoRA's rank allocator; loaded with weights_only)

A checkpoint is written into `checkpoint.tmp-<pid>/` (meta.json last) and swapped in by two renames; the
previous one is kept as `checkpoint.old/` during the swap, and a reader falls back to it, so a kill at any
instant leaves one complete checkpoint. A checkpoint whose tag is another config's is never used.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT = 1
META = "meta.json"
WEIGHTS = "trainable.safetensors"
STATE = "training.pt"


class Checkpointer:
    """Saves and restores one run's training state in `folder` every `every` optimizer steps."""

    def __init__(self, folder: Path, every: int, tag: str) -> None:
        self.folder = Path(folder)
        self.every = every
        self.tag = tag
        self.extra: Callable[[], dict[str, Any]] = dict
        """State of the caller saved beside training's (the runner's dev curve), returned by `meta`."""
        self.at_stop = False
        """Also save when the caller stops training early (a learning-rate candidate's rung of successive
        halving: the next rung continues from that state instead of starting again)."""
        self.written = 0
        self.seconds = 0.0
        """Time spent writing checkpoints (left out of the training time)."""

    @property
    def _old(self) -> Path:
        return self.folder.with_name(self.folder.name + ".old")

    def due(self, step: int, steps: int) -> bool:
        """After optimizer step `step` (1-based). Not after the last: the run is about to finish."""
        return self.every > 0 and step % self.every == 0 and step < steps

    def meta(self) -> dict[str, Any] | None:
        """The saved checkpoint's description for this run, or None (none, damaged, or another config's)."""
        for folder in (self.folder, self._old):
            try:
                meta = json.loads((folder / META).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("tag") == self.tag:
                return {**meta, "folder": str(folder)}
        return None

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        stats: dict[str, Any],
        hook_state: dict[str, Any] | None = None,
    ) -> None:
        start = time.perf_counter()
        tmp = self.folder.with_name(f"{self.folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            tensors = {
                n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
            }
            save_file(tensors, str(tmp / WEIGHTS))
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng_state(),
                    "hook": hook_state or {},
                },
                tmp / STATE,
            )
            for name in (WEIGHTS, STATE):
                fsync_file(tmp / name)
            meta = {"format": FORMAT, "tag": self.tag, "step": step, "stats": stats, "extra": self.extra()}
            _write_synced(tmp / META, json.dumps(meta))  # last: its presence means the rest is complete
        except BaseException:  # a full disk, say: the previous checkpoint stays the one to resume from
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if self.folder.exists():  # (absent when an earlier swap was cut between its renames: keep .old then)
            shutil.rmtree(self._old, ignore_errors=True)
            os.replace(self.folder, self._old)
        os.replace(tmp, self.folder)
        shutil.rmtree(self._old, ignore_errors=True)
        self.written += 1
        self.seconds += time.perf_counter() - start

    def restore(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
    ) -> dict[str, Any] | None:
        """Put the saved state back into freshly prepared objects; returns the meta (with the training
        hook's state under "hook"), or None without one."""
        meta = self.meta()
        if meta is None:
            return None
        folder = Path(meta["folder"])
        tensors = load_file(str(folder / WEIGHTS))
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if set(tensors) != set(params):
            raise RuntimeError(
                f"{folder / WEIGHTS} does not match the parameters this run trains "
                f"({len(set(tensors) ^ set(params))} names differ); delete {folder} to start over"
            )
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(tensors[name])
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return {**meta, "hook": state.get("hook", {})}

    def adopt(self, source: Path) -> None:
        """Take a state another training saved as this run's own, moved into place with this run's tag: a
        learning-rate candidate's last rung, which the final run of the same seed continues."""
        self.clear()
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(self.folder))
        meta = json.loads((self.folder / META).read_text(encoding="utf-8"))
        _write_synced(self.folder / META, json.dumps({**meta, "tag": self.tag}))

    def clear(self) -> None:
        """Remove every checkpoint of this run (it finished, or failed and restarts clean)."""
        for path in (self.folder, self._old, *self.folder.parent.glob(f"{self.folder.name}.tmp-*")):
            shutil.rmtree(path, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from, in tensors and plain values (weights_only loads them)."""
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)  # the legacy global generator is MT19937, whose state is a tuple
    name, key, pos, has_gauss, gauss = state
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
