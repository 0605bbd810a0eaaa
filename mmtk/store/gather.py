"""Copy many items' rows out of their shards into one array, one shard at a time.

Items are grouped by shard and each shard is memory-mapped once, so reading a whole
dataset costs one file open per shard touched, never one per item. Within a shard rows
are read in offset order so the page cache sees a forward scan. With ``verify`` each
shard's checksum is checked the first time the process maps it (``ensure_checksum``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmtk.errors import StoreError
from mmtk.store.index import ShardRow
from mmtk.store.shards import ensure_checksum, open_shard, repair_command


def _by_shard(shard_ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(shard id, positions)`` for every shard referenced (``-1`` = no shard)."""
    order = np.argsort(shard_ids, kind="stable")
    ids, starts = np.unique(shard_ids[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return [(int(s), order[a:b]) for s, a, b in zip(ids, starts, bounds) if s >= 0]


def _mapped(root: Path, row: ShardRow, dim: int, last_row: int, verify: bool) -> np.ndarray:
    """The shard memory-mapped, its shape checked against the index (and its checksum
    with ``verify``)."""
    shard = open_shard(root, row.path)
    if shard.ndim != 2 or shard.shape[1] != dim or last_row > shard.shape[0]:
        raise StoreError(
            f"shard {root / row.path} has shape {shard.shape}, but the index expects {dim} columns "
            f"and at least {last_row} rows",
            hint=f"run: {repair_command(root)}",
        )
    if verify:
        ensure_checksum(root, row.path, row.checksum, shard)
    return shard


def gather_rows(
    root: Path, shards: dict[int, ShardRow], shard_ids: np.ndarray, offsets: np.ndarray, dim: int, verify: bool = True
) -> np.ndarray:
    """One row per item (vectors): ``(N, dim)`` float32. ``shard_ids[i]`` and
    ``offsets[i]`` locate item ``i``."""
    out = np.empty((len(shard_ids), dim), dtype=np.float32)
    for shard_id, positions in _by_shard(shard_ids):
        rows = offsets[positions]
        order = np.argsort(rows, kind="stable")
        positions, rows = positions[order], rows[order]
        mapped = _mapped(root, shards[shard_id], dim, int(rows[-1]) + 1, verify)
        out[positions] = mapped[rows]
        del mapped  # release the mapping before opening the next shard
    return out


def gather_steps(
    root: Path,
    shards: dict[int, ShardRow],
    shard_ids: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    dim: int,
    max_len: int | None,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Sequences zero-padded to the longest (or ``max_len``): ``(N, T, dim)`` float32 and
    the kept lengths ``(N,)`` int64. Longer sequences keep their first ``max_len`` steps.
    Item ``i`` is ``lengths[i]`` rows from ``offsets[i]`` in shard ``shard_ids[i]``
    (``-1``: an empty sequence, no shard)."""
    n = len(shard_ids)
    lengths = np.asarray(lengths, dtype=np.int64)
    if max_len is not None:
        lengths = np.minimum(lengths, max_len)
    steps = int(lengths.max()) if n else 0
    out = np.zeros((n, steps, dim), dtype=np.float32)
    for shard_id, positions in _by_shard(shard_ids):
        positions = positions[np.argsort(offsets[positions], kind="stable")]
        take = lengths[positions]
        total = int(take.sum())
        if total == 0:
            continue
        # Flatten every (item, step) pair of this shard into one fancy index.
        item = np.repeat(positions, take)
        step = np.arange(total) - np.repeat(np.cumsum(take) - take, take)
        source = np.repeat(offsets[positions], take) + step
        mapped = _mapped(root, shards[shard_id], dim, int(source.max()) + 1, verify)
        out[item, step] = mapped[source]
        del mapped
    return out, lengths


class SequenceReader:
    """Reads chosen items' sequences of one feature set straight from their shards:
    ``read(positions) -> (steps (B, T, dim) float32 padded to the batch's longest,
    lengths (B,))``. The index is asked once, when the reader is made; each read
    memory-maps only the shards the chosen items live in (``FeatureStore.sequence_reader``).
    Items with shard ``-1`` and length 0 read as empty (an absent modality)."""

    def __init__(self, root: Path, shards: dict[int, ShardRow], shard_ids, offsets, lengths, dim: int, max_len: int | None = None):
        self.root, self.shards, self.dim, self.max_len = root, shards, int(dim), max_len
        self.shard_ids = np.asarray(shard_ids, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if max_len is not None:
            self.lengths = np.minimum(self.lengths, max_len)

    def __len__(self) -> int:
        return len(self.lengths)

    def read(self, positions) -> tuple[np.ndarray, np.ndarray]:
        # One slice copy per item (its steps are contiguous in the shard) instead of
        # gather_steps' flattened fancy index and scatter: one pass over the bytes, not two
        # (the store-backed batch source calls this once per batch).
        positions = np.asarray(positions, dtype=np.int64)
        ids, offsets, lengths = self.shard_ids[positions], self.offsets[positions], self.lengths[positions]
        out = np.zeros((len(positions), int(lengths.max(initial=0)), self.dim), dtype=np.float32)
        for shard_id, members in _by_shard(ids):
            members = members[np.argsort(offsets[members], kind="stable")]
            mapped = _mapped(self.root, self.shards[shard_id], self.dim, int((offsets[members] + lengths[members]).max()), True)
            for i in members:
                out[i, : lengths[i]] = mapped[offsets[i]: offsets[i] + lengths[i]]
            del mapped  # release the mapping before opening the next shard
        return out, lengths

    def subset(self, positions) -> SequenceReader:
        """The reader of items ``positions`` (in that order), e.g. a training split."""
        positions = np.asarray(positions, dtype=np.int64)
        return SequenceReader(
            self.root, self.shards, self.shard_ids[positions], self.offsets[positions], self.lengths[positions], self.dim,
            self.max_len,
        )

    def padded_nbytes(self) -> int:
        """Bytes of every item padded to the longest: what gathering it whole would take."""
        return len(self.lengths) * int(self.lengths.max(initial=0)) * self.dim * 4
