"""Batch sources: where the loop's batches come from.

- ``InMemorySource``: every input is a tensor on the training device and a batch is an
  index slice of each (sequences cut to the batch's longest item). No DataLoader, no
  per-item Python: an epoch costs the model's arithmetic and nothing else.
- ``StoreSource``: sequence inputs too large for memory stay in the feature store's
  memory-mapped shards and are read per batch (only the batch's rows, padded to its
  longest item), one batch ahead on a prefetch thread so reading overlaps the step.
  Vector inputs and targets are small and stay in memory.

Both shard the shuffled order by ``world`` (rank ``r`` of ``s`` takes every ``s``-th
item from ``r``, all ranks as many: ``world.shard``) and give ``Batch`` objects; ``pick_source`` chooses by a memory budget.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

from mmtk.store.gather import SequenceReader
from mmtk.training.batch import Batch
from mmtk.training.world import SINGLE, World, shard, shard_length

PREFETCH_DEPTH = 2  # batches read ahead: one being read while one waits for the step
EVAL_ITEMS = 8192  # rows per evaluation chunk of vectors: bounds memory on large sets, fast on CPU
EVAL_STEPS = 32768  # padded sequence steps per evaluation chunk (all sequence inputs together)
EVAL_MIN_ITEMS = 16


def shuffled_order(n: int, generator: torch.Generator | None, world: World) -> torch.Tensor:
    """The items of one epoch in order: a permutation drawn from ``generator`` (None:
    0..n-1, for validation), then this rank's share (``world.shard``)."""
    order = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
    return shard(order, world)


@dataclass
class InMemorySource:
    """Inputs as tensors on one device. ``lengths`` (sequence input -> ``(N,)`` int64)
    marks the valid steps of each item's zero-padded ``(N, T, d)`` sequence;
    ``present``/``target_masks`` as in ``Batch`` (absent: all True)."""

    features: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor] = field(default_factory=dict)
    present: dict[str, torch.Tensor] = field(default_factory=dict)
    target_masks: dict[str, torch.Tensor] = field(default_factory=dict)

    kind = "memory"

    def __len__(self) -> int:
        return len(next(iter(self.features.values())))

    def num_batches(self, batch_size: int, world: World = SINGLE) -> int:
        return math.ceil(shard_length(len(self), world) / batch_size)

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None, world: World = SINGLE) -> Iterator[Batch]:
        device = next(iter(self.features.values())).device
        order = shuffled_order(len(self), generator, world).to(device)
        for start in range(0, len(order), batch_size):
            yield self.take(order[start:start + batch_size])

    def take(self, idx: torch.Tensor) -> Batch:
        """The batch of items ``idx``."""
        features, masks = {}, {}
        for name, x in self.features.items():
            lengths = self.lengths.get(name)
            if lengths is None:
                features[name] = x[idx]
                continue
            kept = lengths[idx]
            steps = max(int(kept.max()), 1)
            features[name] = x[idx, :steps]
            masks[name] = torch.arange(steps, device=kept.device)[None, :] < kept[:, None]
        return Batch(
            features=features, masks=masks,
            present={name: p[idx] for name, p in self.present.items()},
            targets={name: y[idx] for name, y in self.targets.items()},
            target_masks={name: m[idx] for name, m in self.target_masks.items()},
        )

    def all_targets(self) -> Batch:
        """Every item's targets (features empty): what a validation loss over the whole
        set is computed against."""
        return Batch(features={}, targets=self.targets, target_masks=self.target_masks)

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self.features.values())

    @property
    def eval_batch(self) -> int:
        """Items per validation/prediction chunk: ``EVAL_ITEMS`` for vectors; with
        sequences, as many items as hold ``EVAL_STEPS`` padded steps over all sequence
        inputs, since a sequence model's activations grow with them (a transformer over
        89 tokens held 0.77 MB per item, so 8,192 items would need 6 GB)."""
        steps = sum(int(x.shape[1]) for name, x in self.features.items() if name in self.lengths)
        if not steps:
            return EVAL_ITEMS
        return max(EVAL_MIN_ITEMS, min(EVAL_ITEMS, EVAL_STEPS // steps))


@dataclass
class StoreSource:
    """``sequences`` (input -> ``SequenceReader``) read per batch from the store;
    ``memory`` (an ``InMemorySource`` over the same items, holding the vector inputs,
    targets and masks) supplies the rest. ``transform`` (e.g. the run's standardisation)
    is applied to each read batch's ``(features, masks)`` before it is handed on."""

    memory: InMemorySource
    sequences: dict[str, SequenceReader]
    order: list[str]
    transform: Callable[[dict, dict], None] | None = None
    device: str = "cpu"

    kind = "store"
    eval_batch = 64  # items per validation/prediction chunk: read, padded and held at once

    def __len__(self) -> int:
        return len(next(iter(self.sequences.values())).lengths)

    def num_batches(self, batch_size: int, world: World = SINGLE) -> int:
        return math.ceil(shard_length(len(self), world) / batch_size)

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None, world: World = SINGLE) -> Iterator[Batch]:
        order = shuffled_order(len(self), generator, world)
        chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        yield from prefetch((self.take(idx) for idx in chunks), PREFETCH_DEPTH)

    def take(self, idx: torch.Tensor) -> Batch:
        base = self.memory.take(idx.to(self._memory_device())) if self.memory.features else self._targets_only(idx)
        features, masks = dict(base.features), dict(base.masks)
        positions = idx.numpy()
        for name, reader in self.sequences.items():
            steps, lengths = reader.read(positions)
            width = max(steps.shape[1], 1)
            x = torch.zeros((len(positions), width, reader.dim)) if steps.shape[1] == 0 else torch.from_numpy(steps)
            features[name] = x
            masks[name] = torch.arange(width)[None, :] < torch.from_numpy(lengths)[:, None]
        if self.transform is not None:
            self.transform(features, masks)
        batch = Batch(
            features={name: features[name] for name in self.order}, masks=masks, present=base.present,
            targets=base.targets, target_masks=base.target_masks,
        )
        return batch if self.device == "cpu" else batch.to(self.device, non_blocking=True)

    def _targets_only(self, idx: torch.Tensor) -> Batch:
        memory = self.memory
        idx = idx.to(self._memory_device())
        return Batch(
            features={}, present={n: p[idx] for n, p in memory.present.items()},
            targets={n: y[idx] for n, y in memory.targets.items()},
            target_masks={n: m[idx] for n, m in memory.target_masks.items()},
        )

    def _memory_device(self):
        return next(iter(self.memory.targets.values())).device

    def all_targets(self) -> Batch:
        return self.memory.all_targets()


def prefetch(items: Iterable, depth: int) -> Iterator:
    """``items`` produced on a background thread up to ``depth`` ahead. An exception there
    is raised here; closing the iterator early stops the thread."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((done, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put((done, exc))

    thread = threading.Thread(target=produce, name="mmtk-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def source_nbytes(vector_bytes: int, readers: dict[str, SequenceReader]) -> int:
    """Bytes the inputs take when gathered whole into memory."""
    return vector_bytes + sum(reader.padded_nbytes() for reader in readers.values())


MEMORY_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}


def parse_memory(text: str | int) -> int:
    """``"1.5G"``, ``"800M"``, ``"2GB"`` or a byte count -> bytes (ValueError otherwise)."""
    if isinstance(text, int):
        return text
    value = str(text).strip().upper()
    number = value.rstrip("KMGB")
    unit = value[len(number):]
    if unit not in MEMORY_UNITS or not number:
        raise ValueError(f"cannot read {text!r} as a memory size")
    return int(float(number) * MEMORY_UNITS[unit])


def default_memory_budget() -> int:
    """Half the memory the kernel reports available now (MemAvailable), at least 256 MiB;
    1 GiB where that cannot be read: what inputs may take before the store-backed source
    is used."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return max(256 << 20, int(line.split()[1]) * 1024 // 2)
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 30
