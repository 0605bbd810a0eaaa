"""``World``: which process of how many this is. A single process today; the DDP issue
builds one from torchrun's environment and gives the loop its all-reduce."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """``rank`` of ``size`` processes. Batch sources take every ``size``-th item of the
    shuffled order from ``rank`` on; only the main process (rank 0) writes logs,
    checkpoints and the run directory; ``reduce`` sums a tensor across processes in place
    (identity for one process)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def reduce(self, tensor):
        if self.size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor


SINGLE = World()
