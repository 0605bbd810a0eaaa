"""``MixedSource``: batches of several datasets, each batch drawn from one of them.

Training on several datasets at once (``mmtk train A.jsonl B.jsonl``) puts every
dataset's items into one batch source (an ``InMemorySource`` or ``StoreSource``, their
targets for every task with ``target_masks`` False where an item's dataset has no such
task) and gives each dataset a group of positions in it. A batch never mixes datasets,
so a batch norm or a per-batch statistic sees one distribution, and a task's loss in a
batch comes from one dataset's labels or is absent. How the batches of an epoch are
ordered is ``mix``:

- ``proportional``: every dataset's items are shuffled and cut into batches, and the
  epoch's batches are the union of them in a seeded random order. Every item is seen
  once an epoch and a dataset's share of batches is its share of the items, so at any
  step the next batch comes from a dataset with probability proportional to what it
  has left.
- ``round-robin``: one batch of each dataset in turn (dataset order as given), for as
  many rounds as the largest dataset has batches; a smaller dataset that runs out is
  reshuffled and cycled, so an epoch sees the largest fully and every dataset equally
  often.

Both draw only from the loop's shuffling generator (so ``--resume`` restores them) and
shard each dataset's shuffled order by ``world`` as the plain sources do. Without a
generator (validation, prediction) the base source's items come in their stored order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from mmtk.training.batch import Batch
from mmtk.training.world import SINGLE, World, shard, shard_length

MIXES = ("proportional", "round-robin")


@dataclass
class MixedSource:
    """``base`` (a batch source over every dataset's items) and ``groups`` (one int64
    tensor of positions in ``base`` per dataset, disjoint); ``mix`` one of ``MIXES``."""

    base: object
    groups: Sequence[torch.Tensor]
    mix: str = "proportional"

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"unknown mix {self.mix!r}; choose one of {', '.join(MIXES)}")
        self.groups = [torch.as_tensor(group, dtype=torch.int64) for group in self.groups]

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def eval_batch(self) -> int:
        """Items per validation/prediction chunk: the base source's."""
        return self.base.eval_batch

    def __len__(self) -> int:
        return len(self.base)

    def num_batches(self, batch_size: int, world: World = SINGLE) -> int:
        counts = self._counts(batch_size, world)
        return sum(counts) if self.mix == "proportional" else len(counts) * max(counts, default=0)

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None, world: World = SINGLE) -> Iterator[Batch]:
        if generator is None:  # validation and prediction: every item once, in order
            yield from self.base.batches(batch_size, world=world)
            return
        device = self._device()
        for positions in self.plan(batch_size, generator, world):
            yield self.base.take(positions.to(device))

    def plan(self, batch_size: int, generator: torch.Generator, world: World = SINGLE) -> list[torch.Tensor]:
        """The epoch's batches as positions in ``base``, each from one group."""
        chunks = [self._chunks(group, batch_size, generator, world) for group in self.groups]
        if self.mix == "proportional":
            slots = [(d, i) for d, own in enumerate(chunks) for i in range(len(own))]
            return [chunks[d][i] for d, i in (slots[int(k)] for k in torch.randperm(len(slots), generator=generator))]
        rounds = max((len(own) for own in chunks), default=0)
        planned = []
        for r in range(rounds):
            for d, group in enumerate(self.groups):
                if not chunks[d]:
                    continue
                while r >= len(chunks[d]):  # this dataset ran out: a fresh pass over it
                    chunks[d] = chunks[d] + self._chunks(group, batch_size, generator, world)
                planned.append(chunks[d][r])
        return planned

    def take(self, idx: torch.Tensor) -> Batch:
        return self.base.take(idx.to(self._device()))

    def all_targets(self) -> Batch:
        return self.base.all_targets()

    def _device(self) -> torch.device:
        """Where ``base.take`` wants its positions: beside the in-memory tensors; on the
        CPU for the store-backed source, which reads its rows there."""
        features = getattr(self.base, "features", None)
        return next(iter(features.values())).device if features else torch.device("cpu")

    def _chunks(self, group: torch.Tensor, batch_size: int, generator: torch.Generator, world: World) -> list[torch.Tensor]:
        order = shard(group[torch.randperm(len(group), generator=generator)], world)
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    def _counts(self, batch_size: int, world: World) -> list[int]:
        return [math.ceil(shard_length(len(group), world) / batch_size) for group in self.groups]
