"""``World``: which process of how many this is, and the process group behind it.

A single process unless the program was started by ``torchrun`` (or anything that sets
the same environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). ``joined(device)`` builds the world from that environment, starts the
``torch.distributed`` process group when there are several processes (gloo on CPU, nccl
on CUDA, each process on ``cuda:LOCAL_RANK``) and ends it on the way out, errors
included. See docs/ARCHITECTURE.md, "Training under torchrun".
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

from mmtk.errors import UsageError

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """``rank`` of ``size`` processes (``local_rank``: its index on its machine). Batch
    sources take every ``size``-th item of the shuffled order from ``rank`` on (see
    ``shard``); only the main process (rank 0) writes logs, checkpoints and the run
    directory; ``reduce`` sums a tensor across processes in place and ``broadcast``
    copies rank 0's (both the identity for one process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, environ=None) -> World:
        """The world torchrun describes in ``environ`` (default ``os.environ``); one
        process when it describes none. A malformed description is a usage error."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return SINGLE
        try:
            rank, size = int(environ.get("RANK", "0")), int(environ["WORLD_SIZE"])
            local_rank = int(environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            given = ", ".join(f"{key}={environ.get(key)!r}" for key in ENVIRONMENT)
            raise UsageError(f"the distributed environment is not numbers ({given})", "start mmtk with torchrun, or unset these variables") from None
        if size < 1 or not 0 <= rank < size or local_rank < 0:
            raise UsageError(f"RANK={rank} does not fit WORLD_SIZE={size}", "start mmtk with torchrun, or unset RANK and WORLD_SIZE")
        return cls(rank=rank, size=size, local_rank=local_rank)

    def device(self, device: str) -> str:
        """Where this process trains: ``cuda:LOCAL_RANK`` when ``device`` is CUDA and
        there are several processes (one GPU each), else ``device`` itself."""
        if self.size > 1 and device.startswith("cuda"):
            return f"cuda:{self.local_rank}"
        return device

    def reduce(self, tensor):
        if self.size > 1:
            import torch.distributed as dist

            _collective(dist.all_reduce, tensor)
        return tensor

    def broadcast(self, tensor):
        """``tensor`` replaced in place by rank 0's: what makes every rank take the
        same decision from values that could differ in their last bits."""
        if self.size > 1:
            import torch.distributed as dist

            _collective(lambda t: dist.broadcast(t, src=0), tensor)
        return tensor


def _collective(operation, tensor) -> None:
    """``operation(tensor)`` in place; nccl takes CUDA tensors only, so a CPU one (a
    count, a score) makes the trip through this process's GPU."""
    import torch.distributed as dist

    if tensor.is_cuda or dist.get_backend() != "nccl":
        operation(tensor)
        return
    moved = tensor.cuda()
    operation(moved)
    tensor.copy_(moved.cpu())


SINGLE = World()


def shard_length(n: int, world: World) -> int:
    """Items each rank takes of ``n``: all of them for one process; ``n // size`` for
    several, since every rank must take as many batches as the others (a rank with one
    batch more would wait forever in the gradient all-reduce)."""
    return n if world.size == 1 else n // world.size


def shard(order, world: World):
    """This rank's share of ``order`` (a 1-D tensor): every ``size``-th item from
    ``rank`` on, after dropping the last ``n % size`` items so that the shares are equal
    (the order is reshuffled every epoch, so no item is dropped for good)."""
    if world.size == 1:
        return order
    return order[: shard_length(len(order), world) * world.size][world.rank::world.size]


def rank_batch(batch_size: int, world: World) -> int:
    """Items per batch on each rank: ``batch_size`` is the batch of one optimizer step
    over all ranks together, so a run means the same thing on any number of processes.
    It must split evenly (refused otherwise, before training starts)."""
    if batch_size % world.size:
        raise UsageError(
            f"--batch-size {batch_size} does not split evenly over {world.size} processes",
            f"give a multiple of {world.size} (the batch size is the total over all processes)",
        )
    return batch_size // world.size


@contextlib.contextmanager
def joined(device: str) -> Iterator[World]:
    """The world of this process for training on ``device``. With several processes it
    starts the process group (gloo on CPU, nccl on CUDA, after pinning this process to
    ``cuda:LOCAL_RANK``) and destroys it when the body ends, however it ends. A group
    the caller already started is used as it is and left running."""
    world = World.from_environment()
    if world.size == 1:
        yield world
        return
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        yield world
        return
    if not dist.is_available():
        raise UsageError("this torch was built without torch.distributed", "install a torch build with distributed support, or run one process")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(world.device(device))
    dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank, world_size=world.size)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def require_single_process(what: str, why: str) -> None:
    """Refuse ``what`` under a multi-process launch (torchrun): it does not run on the
    DDP loop alone (``why``), and each rank would do the whole job on its own."""
    world = World.from_environment()
    if world.size > 1:
        raise UsageError(f"{what} runs in one process, not under torchrun with {world.size} ({why})", f"run it without torchrun: mmtk {what} ...")
