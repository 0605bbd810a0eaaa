"""Copy many items' rows out of their shards into one array, one shard at a time.

Items are grouped by shard and each shard is memory-mapped once, so reading a whole
dataset costs one file open per shard touched, never one per item. Within a shard rows
are read in offset order so the page cache sees a forward scan. With ``verify`` every
item read is checked against its digest in the index (``item_digest``), so the cost of
the check grows with the items read, not with the shards they sit in. A shard is
checked whole instead (``ensure_checksum``, once per process) when that is no dearer:
when the reads cover half its rows or more, when this process checked it already, and
when an item in it has no digest (stored before digests existed), as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmtk.errors import StoreError
from mmtk.store.index import ShardRow
from mmtk.store.shards import ensure_checksum, is_checked, item_digest, open_shard, repair_command


# Rows copied per step from a shard into the output (bounds the temporary copy).
_COPY_ROWS = 4096


def _by_shard(shard_ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(shard id, positions)`` for every shard referenced (``-1`` = no shard)."""
    order = np.argsort(shard_ids, kind="stable")
    ids, starts = np.unique(shard_ids[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return [(int(s), order[a:b]) for s, a, b in zip(ids, starts, bounds) if s >= 0]


def _mapped(root: Path, row: ShardRow, dim: int, last_row: int, whole: bool) -> np.ndarray:
    """The shard memory-mapped (as a plain array over the mapping), its shape checked
    against the index, and with ``whole`` its checksum."""
    shard = open_shard(root, row.path)
    if shard.ndim != 2 or shard.shape[1] != dim or last_row > shard.shape[0]:
        raise StoreError(
            f"shard {root / row.path} has shape {shard.shape}, but the index expects {dim} columns "
            f"and at least {last_row} rows",
            hint=f"run: {repair_command(root)}",
        )
    if whole:
        ensure_checksum(root, row.path, row.checksum, shard)
    return shard.view(np.ndarray)  # slicing a np.memmap costs a Python call per slice


def _whole_check(root: Path, row: ShardRow, verify: bool, digests, positions: np.ndarray, rows_read: int) -> bool:
    """With ``verify``, whether to check the shard whole (once per process) rather than
    each item read: when an item has no digest of its own, when this process has
    checked the shard already (later reads of it are then free), or when the reads
    cover at least half its rows (hashing item by item then costs about as much as
    hashing the whole shard, which also serves later reads)."""
    if not verify:
        return False
    return (
        digests is None
        or 2 * rows_read >= row.rows
        or is_checked(root, row.path, row.checksum)
        or any(digests[p] is None for p in positions)
    )


def _check_items(root: Path, row: ShardRow, positions, rows_of, digests, keys: Sequence | None) -> None:
    """Refuse the first item at ``positions`` whose rows (``rows_of(position)``) do not
    hash to the digest the index recorded for it (items without one are skipped: their
    shard's whole checksum was checked)."""
    if digests is None:
        return
    for p in positions.tolist():
        expected = digests[p]
        if expected is not None and item_digest(rows_of(p)) != expected:
            item = repr(keys[p]) if keys is not None else f"#{p}"
            raise StoreError(
                f"item {item} in shard {root / row.path} does not match its checksum: its bytes changed after they were written",
                hint=f"run: {repair_command(root)} (drops such items), then extract-features again to recompute them",
            )


def _item_rows(mapped: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
    """``position -> that item's rows`` in a mapped shard (all of them: for digests)."""
    return lambda p: mapped[offsets[p] : offsets[p] + lengths[p]]


def gather_rows(
    root: Path,
    shards: dict[int, ShardRow],
    shard_ids: np.ndarray,
    offsets: np.ndarray,
    dim: int,
    verify: bool = True,
    digests: Sequence[int | None] | None = None,
    keys: Sequence[str] | None = None,
) -> np.ndarray:
    """One row per item (vectors): ``(N, dim)`` float32. ``shard_ids[i]`` and
    ``offsets[i]`` locate item ``i``, ``digests[i]`` is its digest (None: unknown, so
    with ``verify`` its whole shard is checked); ``keys`` name items in errors."""
    out = np.empty((len(shard_ids), dim), dtype=np.float32)
    for shard_id, positions in _by_shard(shard_ids):
        rows = offsets[positions]
        order = np.argsort(rows, kind="stable")
        positions, rows = positions[order], rows[order]
        whole = _whole_check(root, shards[shard_id], verify, digests, positions, len(rows))
        mapped = _mapped(root, shards[shard_id], dim, int(rows[-1]) + 1, whole)
        # In steps: ``out[positions] = mapped[rows]`` in one go would first copy every
        # row into a temporary as large as this shard's part of the output.
        for start in range(0, len(rows), _COPY_ROWS):
            out[positions[start : start + _COPY_ROWS]] = mapped[rows[start : start + _COPY_ROWS]]
        del mapped  # release the mapping before opening the next shard
        if verify and not whole:
            # The copy holds the same float32 bytes as the shard's row.
            _check_items(root, shards[shard_id], positions, out.__getitem__, digests, keys)
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
    digests: Sequence[int | None] | None = None,
    keys: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sequences zero-padded to the longest (or ``max_len``): ``(N, T, dim)`` float32 and
    the kept lengths ``(N,)`` int64. Longer sequences keep their first ``max_len`` steps.
    Item ``i`` is ``lengths[i]`` rows from ``offsets[i]`` in shard ``shard_ids[i]``
    (``-1``: an empty sequence, no shard); ``digests`` and ``keys`` as in ``gather_rows``
    (a cut item is checked over all its rows)."""
    n = len(shard_ids)
    full = np.asarray(lengths, dtype=np.int64)
    lengths = full if max_len is None else np.minimum(full, max_len)
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
        last = int((offsets[positions] + full[positions]).max()) if verify else int(source.max()) + 1
        whole = _whole_check(root, shards[shard_id], verify, digests, positions, int(full[positions].sum()))
        mapped = _mapped(root, shards[shard_id], dim, last, whole)
        out[item, step] = mapped[source]
        if verify and not whole:
            _check_items(root, shards[shard_id], positions, _item_rows(mapped, offsets, full), digests, keys)
        del mapped
    return out, lengths


class SequenceReader:
    """Reads chosen items' sequences of one feature set straight from their shards:
    ``read(positions) -> (steps (B, T, dim) float32 padded to the batch's longest,
    lengths (B,))``. The index is asked once, when the reader is made; each read
    memory-maps only the shards the chosen items live in (``FeatureStore.sequence_reader``)
    and checks each item read against its digest (``digests``, None where unknown: then
    its shard's whole checksum, once per process). Items with shard ``-1`` and length 0
    read as empty (an absent modality). ``keys`` name items in errors."""

    def __init__(
        self,
        root: Path,
        shards: dict[int, ShardRow],
        shard_ids,
        offsets,
        lengths,
        dim: int,
        max_len: int | None = None,
        digests: Sequence[int | None] | None = None,
        keys: Sequence[str | None] | None = None,
    ):
        self.root, self.shards, self.dim, self.max_len = root, shards, int(dim), max_len
        self.shard_ids = np.asarray(shard_ids, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.full_lengths = np.asarray(lengths, dtype=np.int64)
        self.lengths = self.full_lengths if max_len is None else np.minimum(self.full_lengths, max_len)
        n = len(self.shard_ids)
        self.digests = np.array(list(digests) if digests is not None else [None] * n, dtype=object)
        self.keys = np.array(list(keys) if keys is not None else [None] * n, dtype=object)

    def __len__(self) -> int:
        return len(self.lengths)

    def read(self, positions) -> tuple[np.ndarray, np.ndarray]:
        # One slice copy per item (its steps are contiguous in the shard) instead of
        # gather_steps' flattened fancy index and scatter: one pass over the bytes, not two
        # (the store-backed batch source calls this once per batch).
        positions = np.asarray(positions, dtype=np.int64)
        ids, offsets, lengths = self.shard_ids[positions], self.offsets[positions], self.lengths[positions]
        full, digests, keys = self.full_lengths[positions], self.digests[positions], self.keys[positions]
        out = np.zeros((len(positions), int(lengths.max(initial=0)), self.dim), dtype=np.float32)
        for shard_id, members in _by_shard(ids):
            members = members[np.argsort(offsets[members], kind="stable")]
            row = self.shards[shard_id]
            whole = _whole_check(self.root, row, True, digests, members, int(full[members].sum()))
            mapped = _mapped(self.root, row, self.dim, int((offsets[members] + full[members]).max()), whole)
            if not whole:
                # Each item is checked over all its rows, also when max_len cuts it.
                _check_items(self.root, row, members, _item_rows(mapped, offsets, full), digests, keys)
            for i in members:
                out[i, : lengths[i]] = mapped[offsets[i]: offsets[i] + lengths[i]]
            del mapped  # release the mapping before opening the next shard
        return out, lengths

    def subset(self, positions) -> SequenceReader:
        """The reader of items ``positions`` (in that order), e.g. a training split."""
        positions = np.asarray(positions, dtype=np.int64)
        return SequenceReader(
            self.root, self.shards, self.shard_ids[positions], self.offsets[positions], self.full_lengths[positions], self.dim,
            self.max_len, self.digests[positions], self.keys[positions],
        )

    @staticmethod
    def joined(readers: Sequence[SequenceReader]) -> SequenceReader:
        """One reader over the items of ``readers`` (of one store and feature set), in order."""
        first, shards = readers[0], {}
        for reader in readers:
            shards.update(reader.shards)
        return SequenceReader(
            first.root, shards, *(np.concatenate([getattr(r, name) for r in readers]) for name in ("shard_ids", "offsets", "full_lengths")),
            first.dim, first.max_len, np.concatenate([r.digests for r in readers]), np.concatenate([r.keys for r in readers]),
        )

    def padded_nbytes(self) -> int:
        """Bytes of every item padded to the longest: what gathering it whole would take."""
        return len(self.lengths) * int(self.lengths.max(initial=0)) * self.dim * 4
