"""Raw inputs of fine-tuned towers and the batch source that feeds them to ``fit``.

A fine-tuned text input is tokenised once, when it is gathered (once per ``train`` or
``evaluate`` call, never per epoch): its ids stay in memory and a batch is an index slice
cut to its longest item. A fine-tuned image input keeps its file paths; each batch's
images are decoded and preprocessed (augmented when training) by the tower's loader in
DataLoader worker processes, so decoding overlaps the forward and backward passes.
Every other input (stored features, tabular) is gathered as usual and sliced from memory.

``MediaSource`` follows the batch-source protocol of ``mmtk.training.sources`` and
records how long the loop waited for data (``wait_seconds``: time blocked fetching the
next batch, decoding included when there are no workers).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from mmtk.errors import DataError
from mmtk.training.batch import Batch
from mmtk.training.sources import InMemorySource, shuffled_order
from mmtk.training.world import SINGLE, World, shard_length

#: Items per evaluation chunk: a fine-tuned tower's activations grow with the batch.
EVAL_BATCH = 64
#: DataLoader workers when none is asked for (``--data-workers``): measured on the
#: 2-core machine (BENCHMARKS.md, "Fine-tuning"), one worker decoding while the main
#: process trains kept the wait under the target; a second competes for the cores.
DEFAULT_WORKERS = 1


@dataclass
class RawMedia:
    """One fine-tuned input over every record: ``modality`` "text" (``ids`` ``(N, T)``
    int64 padded with 0, ``lengths``) or "image" (``paths``, None for an absent image);
    ``present`` bool ``(N,)`` or None (all); ``width`` the tower's output width."""

    modality: str
    width: int
    ids: np.ndarray | None = None
    lengths: np.ndarray | None = None
    paths: list | None = None
    present: np.ndarray | None = None

    kind = "raw"

    @property
    def dim(self) -> int:
        return self.width

    def __len__(self) -> int:
        return len(self.ids) if self.ids is not None else len(self.paths)

    def subset(self, positions) -> RawMedia:
        positions = np.asarray(positions, dtype=np.int64)
        return RawMedia(
            self.modality, self.width,
            ids=None if self.ids is None else self.ids[positions],
            lengths=None if self.lengths is None else self.lengths[positions],
            paths=None if self.paths is None else [self.paths[i] for i in positions],
            present=None if self.present is None else self.present[positions],
        )

    def nbytes(self) -> int:
        return 0 if self.ids is None else int(self.ids.nbytes)


def is_raw(item) -> bool:
    return isinstance(item, RawMedia)


class _Decode(torch.utils.data.Dataset):
    """Item ``i`` -> ``{input: pixels}`` (or the error of an image that cannot be read)."""

    def __init__(self, paths: dict[str, list], loaders: dict):
        self.paths = paths
        self.loaders = loaders

    def __len__(self) -> int:
        return len(next(iter(self.paths.values())))

    def __getitem__(self, index: int):
        from mmtk.backbones.base import BadInput

        out = {}
        for name, paths in self.paths.items():
            loader, path = self.loaders[name], paths[index]
            try:
                out[name] = loader.blank() if path is None else loader(path)
            except BadInput as exc:  # reported with the item's place by the main process
                return {"error": (name, index, str(exc))}
        return out


def _collate(items: Sequence[dict]):
    for item in items:
        if "error" in item:
            return item
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}


def _one_thread(_worker: int) -> None:
    # A worker decodes with PIL and torchvision: more torch threads per worker would only
    # compete with the training process for the same cores.
    torch.set_num_threads(1)


class MediaSource:
    """Batches of raw fine-tuned inputs plus in-memory ones. ``memory`` holds the other
    inputs, the targets and every input's ``present``; ``raw`` the fine-tuned inputs;
    ``loaders`` each image input's loader (training: augmenting); ``labels`` names each
    item for error messages (``file:line (item id)``); ``workers`` DataLoader processes
    for images (0: decode in this process)."""

    kind = "media"

    def __init__(
        self, memory: InMemorySource, raw: dict[str, RawMedia], order: Sequence[str], loaders: dict, *,
        labels: Sequence[str], device: str = "cpu", workers: int = DEFAULT_WORKERS, length: int,
    ):
        self.memory = memory
        self.raw = raw
        self.order = list(order)
        self.loaders = loaders
        self.labels = list(labels)
        self.device = device
        self.workers = max(0, int(workers))
        self.length = int(length)
        self.text = {
            name: (torch.as_tensor(item.ids), torch.as_tensor(item.lengths)) for name, item in raw.items() if item.modality == "text"
        }
        self.images = {name: item.paths for name, item in raw.items() if item.modality == "image"}
        self.wait_seconds = 0.0
        self.batches_served = 0

    def __len__(self) -> int:
        return self.length

    @property
    def eval_batch(self) -> int:
        return EVAL_BATCH

    def num_batches(self, batch_size: int, world: World = SINGLE) -> int:
        return math.ceil(shard_length(len(self), world) / batch_size)

    def all_targets(self) -> Batch:
        targets = self.memory.all_targets()
        return targets if self.device == "cpu" else targets.to(self.device)

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None, world: World = SINGLE) -> Iterator[Batch]:
        order = shuffled_order(len(self), generator, world)
        chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        pixels = self._pixels(chunks, generator)
        for idx in chunks:
            tick = time.perf_counter()
            decoded = next(pixels) if pixels is not None else {}
            batch = self._assemble(idx, decoded)
            self.wait_seconds += time.perf_counter() - tick
            self.batches_served += 1
            yield batch

    def _pixels(self, chunks, generator):
        """An iterator of each chunk's decoded images (None without image inputs)."""
        if not self.images:
            return None
        dataset = _Decode(self.images, self.loaders)
        if self.workers == 0:
            return (_collate([dataset[int(i)] for i in idx]) for idx in chunks)
        # Workers draw their augmentation seeds from this generator: seeded runs repeat.
        seeds = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())) if generator is not None else None
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=[idx.tolist() for idx in chunks], num_workers=self.workers, collate_fn=_collate,
            worker_init_fn=_one_thread, pin_memory=self.device.startswith("cuda"), generator=seeds,
            multiprocessing_context="fork" if "fork" in _start_methods() else None,
        )
        return iter(loader)

    def _assemble(self, idx: torch.Tensor, decoded: dict) -> Batch:
        if "error" in decoded:
            name, index, reason = decoded["error"]
            raise DataError(f"{self.labels[index]}: {reason} (input {name})", "fix or remove the item, then train again")
        base = self.memory.take(idx)
        features, masks = dict(base.features), dict(base.masks)
        for name, (ids, lengths) in self.text.items():
            kept = lengths[idx]
            steps = max(int(kept.max()), 1)
            features[name] = ids[idx, :steps]
            masks[name] = torch.arange(steps)[None, :] < kept[:, None]
        features.update(decoded)
        batch = Batch(
            features={name: features[name] for name in self.order}, masks=masks, present=base.present,
            targets=base.targets, target_masks=base.target_masks,
        )
        return batch if self.device == "cpu" else batch.to(self.device, non_blocking=True)


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods() if os.name == "posix" else []


def media_source(gathered: dict, targets: dict, target_masks: dict | None, device: str, standardizer, towers: dict, labels, *,
                 train: bool, workers: int = DEFAULT_WORKERS) -> MediaSource:
    """The batch source over ``gathered`` where some inputs are ``RawMedia``: the rest go
    to an in-memory source on CPU (standardised as usual), image inputs get their
    tower's loader (augmenting when ``train``)."""
    from mmtk.training.data import memory_source

    raw = {name: item for name, item in gathered.items() if is_raw(item)}
    other = {name: item for name, item in gathered.items() if not is_raw(item)}
    length = len(next(iter(raw.values())))
    memory = memory_source(other, targets, target_masks, "cpu", standardizer) if other else InMemorySource(
        {}, {n: y.cpu() for n, y in targets.items()}, target_masks={n: m.cpu() for n, m in (target_masks or {}).items()}
    )
    memory.targets = {n: y.cpu() for n, y in memory.targets.items()}
    for name, item in raw.items():
        if item.present is not None and not item.present.all():
            memory.present[name] = torch.as_tensor(item.present)
    loaders = {name: towers[name].loader(train) for name, item in raw.items() if item.modality == "image"}
    return MediaSource(memory, raw, list(gathered), loaders, labels=labels, device=device, workers=workers, length=length)
