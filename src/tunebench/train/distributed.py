"""One run on several processes (`torchrun` or `accelerate launch`): data-parallel training with torch DDP.

The launcher starts the same command once per process and sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; torch.distributed joins the process group from them (NCCL on GPUs, gloo on CPUs). Every
process runs the grid in the same order. In training, each optimizer step's batch (the same on every
process: it is drawn from the run's seed) is cut into one slice per process, and DDP averages the
gradients, so the run sees the batches a single process would see with the same seed and budget. Only
the main process writes to the run store (runs/executors.py sends the others' files to a scratch folder).

Without a launcher (WORLD_SIZE unset or 1) every function here is a no-op, and nothing is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

import torch

from tunebench.train.data import Batch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True when this process is one of several started by torchrun or accelerate launch."""
    return world_size() > 1


@cache
def _join() -> None:
    """Join the process group the launcher described (once per process).

    Not through accelerate's PartialState: on a CPU under torchrun it reports a single process
    (DistributedType.NO, index 0 on every process), which would make every process the writer.
    """
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def rank() -> int:
    if not launched():
        return 0
    _join()
    return torch.distributed.get_rank()


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    """This process's device: its own GPU (cuda:LOCAL_RANK) under a launcher, or the CPU."""
    _join()
    if not torch.cuda.is_available():
        return torch.device("cpu")
    here = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(here)  # NCCL's collectives run on the current device
    return here


def from_main(value: Any) -> Any:
    """The main process's `value`, on every process: for choices that must be the same everywhere."""
    if not launched():
        return value
    _join()
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def mean(value: float) -> float:
    """The mean of a number over the processes (the step's loss, each process having its own slice)."""
    if not launched():
        return value
    _join()
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(t)
    return float(t.item()) / world_size()


def _collective_device() -> torch.device:
    return device() if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


class _LossModule(torch.nn.Module):
    """The model and its loss as one module, so that DDP sees the forward that makes the gradients.

    The losses call parts of the model directly (the backbone, then the head at target positions only),
    which bypasses a DDP-wrapped model's own forward; wrapping the loss keeps DDP in the path.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def data_parallel(
    model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Batch], torch.Tensor]
) -> Callable[[torch.nn.Module, Batch], torch.Tensor]:
    """The loss to train with: `loss_fn` itself in one process; under a launcher, the loss of this
    process's slice of the batch, through DDP (which averages the gradients over the processes)."""
    if not launched():
        return loss_fn
    from torch.nn.parallel import DistributedDataParallel  # lazy: slow import

    here = device()
    # DDP broadcasts the main process's weights at construction; find_unused_parameters because a method
    # may train parameters that a given loss does not reach (it costs one walk over the autograd graph).
    ddp = DistributedDataParallel(
        _LossModule(model, loss_fn),
        device_ids=[here.index] if here.type == "cuda" else None,
        find_unused_parameters=True,
    )

    def sliced_loss(_model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return ddp(shard(batch))

    return sliced_loss


def shard(batch: Batch) -> Batch:
    """This process's rows of a batch (row r goes to process r * world // rows, in contiguous blocks)."""
    if not launched():
        return batch
    part = rank()
    pieces = [torch.tensor_split(t, world_size())[part] for t in (batch.input_ids, batch.attention_mask)]
    labels = torch.tensor_split(batch.labels, world_size())[part]
    hidden = torch.tensor_split(batch.hidden, world_size())[part] if batch.hidden is not None else None
    return Batch(pieces[0], pieces[1], labels, hidden)
