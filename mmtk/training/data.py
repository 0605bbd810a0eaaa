"""Gathered inputs (``mmtk.features.Gathered``) to batch sources: standardised, moved to
the device, and in memory or left in the store by a memory budget."""

from __future__ import annotations

import numpy as np
import torch

from mmtk.training.inputs import InputSpec
from mmtk.training.sources import InMemorySource, StoreSource


def input_specs(gathered: dict) -> dict[str, InputSpec]:
    """One ``InputSpec`` per gathered input (sequences' ``max_len``: the longest stored)."""
    specs = {}
    for name, item in gathered.items():
        if item.kind in ("sequence", "tokens"):
            lengths = item.lengths if item.values is not None else item.reader.lengths
            specs[name] = InputSpec(name, item.dim, item.kind, int(lengths.max(initial=0)))
        else:
            specs[name] = InputSpec(name, item.dim)
    return specs


def inputs_nbytes(gathered: dict) -> int:
    """Bytes the inputs take gathered whole (sequences padded to their longest)."""
    return sum(item.nbytes() for item in gathered.values())


def memory_source(gathered: dict, targets: dict, target_masks: dict | None, device: str, standardizer=None) -> InMemorySource:
    """Every input as a tensor on ``device`` (sequences left in the store are read whole)."""
    features, lengths, present = {}, {}, {}
    for name, item in gathered.items():
        values, steps = item.values, item.lengths
        if values is None:
            values, steps = item.reader.read(np.arange(len(item.reader)))
        if standardizer is not None:
            values = standardizer.apply_arrays(name, values, steps, item.present)
        # Word pieces stay int64 ids (an embedding's index); everything else is float32.
        dtype = np.int64 if item.kind == "tokens" else np.float32
        features[name] = torch.as_tensor(np.asarray(values, dtype=dtype)).to(device)
        if steps is not None:
            lengths[name] = torch.as_tensor(np.asarray(steps, dtype=np.int64)).to(device)
        if item.present is not None and not item.present.all():
            present[name] = torch.as_tensor(item.present).to(device)
    return InMemorySource(
        features, {n: y.to(device) for n, y in targets.items()}, lengths=lengths, present=present,
        target_masks={n: m.to(device) for n, m in (target_masks or {}).items()},
    )


def store_source(gathered: dict, targets: dict, target_masks: dict | None, device: str, standardizer=None) -> StoreSource:
    """Sequences left in the store read per batch; the rest in memory (on CPU: batches
    are assembled there and moved to ``device`` whole)."""
    vectors = {name: item for name, item in gathered.items() if item.values is not None}
    readers = {name: item.reader for name, item in gathered.items() if item.values is None}
    memory = memory_source(vectors, targets, target_masks, "cpu", standardizer) if vectors else InMemorySource({}, targets, target_masks=dict(target_masks or {}))
    for name, item in gathered.items():
        if item.values is None and item.present is not None and not item.present.all():
            memory.present[name] = torch.as_tensor(item.present)
    transform = None
    if standardizer is not None:
        stats = {name: standardizer.stats[name] for name in readers if name in standardizer.stats}
        transform = type(standardizer)(stats).apply_tensors
    return StoreSource(memory=memory, sequences=readers, order=list(gathered), transform=transform, device=device)


def pick_source(gathered: dict, targets: dict, target_masks: dict | None, device: str, standardizer, max_memory: int):
    """The in-memory source when the inputs fit in ``max_memory`` bytes (or nothing is
    left in the store), else the store-backed one."""
    lazy = any(item.values is None for item in gathered.values())
    if lazy and inputs_nbytes(gathered) > max_memory:
        return store_source(gathered, targets, target_masks, device, standardizer)
    return memory_source(gathered, targets, target_masks, device, standardizer)


def hide_presence(source) -> None:
    """Keep the zero-filled absent items but not which they are (``--missing-modality
    zero``: the model sees zeros, as if the item had them)."""
    memory = getattr(source, "memory", source)
    memory.present.clear()
