"""What ``mmtk store info|verify|gc`` compute: digests, consistency checks, clean-up.

Every function reads shards one at a time (each memory-mapped once), so they work on
stores far larger than memory.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmtk.store.shards import (
    DTYPE,
    SHARD_DIR,
    checksum_rows,
    commit_memmap,
    is_temp_file,
    list_shard_files,
    new_shard_memmap,
    open_shard,
    read_header,
)

if TYPE_CHECKING:
    from mmtk.store.feature_store import FeatureStore

# A writer renames its shard into place a moment before indexing it, and waits at most
# a minute for SQLite's lock; files younger than this are never treated as orphans.
MIN_ORPHAN_AGE_S = 300
SMALL_SHARD_BYTES = 64 << 20
COMPACT_MIN_SHARDS = 8
MAX_SHARD_BYTES = 1 << 30


# --------------------------------------------------------------------------- digest


def digest(store: FeatureStore, fingerprint: str) -> str:
    """Order-independent hash of a feature set's (key, array) pairs.

    Each item hashes to a 256-bit number (key, length and float32 bytes) and the
    numbers are summed modulo 2**256, so the result does not depend on which shard or
    in which order an item was written, yet changes when any value, key or shape does.
    """
    meta = store.index.feature_set_meta(fingerprint)
    try:
        total, count = _item_hash_sum(store, fingerprint)
    except FileNotFoundError:
        # A concurrent gc compaction replaced a shard after we listed it; the
        # index points at its replacement now.
        total, count = _item_hash_sum(store, fingerprint)
    head = f"{meta['kind']}:{meta['dim']}:{count}:".encode()
    return hashlib.blake2b(head + total.to_bytes(32, "little"), digest_size=16).hexdigest()


def _item_hash_sum(store: FeatureStore, fingerprint: str) -> tuple[int, int]:
    with store.index.snapshot():
        shards = store.index.shards(fingerprint=fingerprint)
        entries_by_shard = store.index.items_by_shard(fingerprint)
    total, count = 0, 0
    for shard_id, entries in entries_by_shard.items():
        mapped = None if shard_id is None else open_shard(store.root, shards[shard_id].path)
        for key, offset, length in entries:
            h = hashlib.blake2b(key.encode("utf-8"), digest_size=32)
            h.update(int(length).to_bytes(8, "little"))
            if length:
                h.update(np.ascontiguousarray(mapped[offset : offset + length], dtype=DTYPE).data)
            total = (total + int.from_bytes(h.digest(), "little")) % (1 << 256)
            count += 1
        del mapped
    return total, count


# --------------------------------------------------------------------------- verify


def verify(store: FeatureStore, checksums: bool = True) -> dict:
    """Check every index entry against its shard.

    Problems (``ok`` is False): an index SQLite finds damaged, a missing or unreadable
    shard, a truncated one, a header whose shape or dtype disagrees with the index or
    the feature set's dim, data whose checksum changed (``checksums``), items that point
    past their shard's end or at no shard, items of an unregistered feature set.
    Orphans (files no index row names: leftovers of killed writers) are listed apart
    and do not fail the check; ``gc`` removes them.
    """
    index, root = store.index, store.root
    problems = [f"index {index.path}: {line}" for line in index.quick_check()]
    with index.snapshot():
        metas = {s["fingerprint"]: s["meta"] for s in index.feature_sets()}
        unregistered = index.item_fingerprints() - set(metas)
        shards = index.shards()
        items = index.items_by_shard()
    for fp in sorted(unregistered):
        problems.append(f"items of feature set {fp[:12]} exist but the feature set is not registered")
    actual_rows: dict[int, int] = {}
    for shard_id, row in shards.items():
        meta = metas.get(row.fingerprint, {})
        rows = _check_shard(root, row, meta.get("dim"), checksums, problems)
        if rows is not None:
            actual_rows[shard_id] = rows
    # A shard a concurrent gc compacted away after the snapshot is not a problem.
    vanished = [row for row in shards.values() if not (root / row.path).is_file()]
    if vanished:
        still_indexed = index.shards(ids=[row.id for row in vanished])
        gone = {f"shard {root / row.path} is missing" for row in vanished if row.id not in still_indexed}
        problems = [p for p in problems if p not in gone]
    for shard_id, entries in items.items():
        if shard_id is None:
            bad = [k for k, _, n in entries if n != 0]
            if bad:
                problems.append(f"{len(bad)} items with data point at no shard (first: {bad[0]})")
            continue
        row = shards.get(shard_id)
        if row is None:
            problems.append(f"{len(entries)} items point at shard id {shard_id}, which is not in the index (first: {entries[0][0]})")
            continue
        if metas.get(row.fingerprint, {}).get("kind") == "vector":
            odd = [k for k, _, n in entries if n != 1]
            if odd:
                problems.append(f"{len(odd)} vector items of {root / row.path} span other than one row (first: {odd[0]})")
        limit = actual_rows.get(shard_id, row.rows)
        past = [k for k, offset, n in entries if offset < 0 or n < 0 or offset + n > limit]
        if past:
            problems.append(f"{len(past)} items point past the end of shard {root / row.path} ({limit} rows; first: {past[0]})")
    known = {root / row.path for row in shards.values()}
    orphans = [p.relative_to(root).as_posix() for p in list_shard_files(root) if p not in known]
    return {
        "ok": not problems,
        "problems": problems,
        "orphans": orphans,
        "feature_sets": len(metas),
        "shards": len(shards),
        "items": sum(len(e) for e in items.values()),
    }


def _check_shard(root: Path, row, dim: int | None, checksums: bool, problems: list[str]) -> int | None:
    """Append what is wrong with one shard; return its real row count when readable."""
    path = root / row.path
    if not path.is_file():
        problems.append(f"shard {path} is missing")
        return None
    try:
        header = read_header(path)
    except (OSError, ValueError) as exc:
        problems.append(f"shard {path} is unreadable ({exc})")
        return None
    if len(header.shape) != 2 or header.dtype != DTYPE or (dim is not None and header.shape[1] != dim):
        problems.append(f"shard {path} holds {header.dtype} {header.shape}, expected float32 (rows, {dim})")
        return None
    if header.file_size < header.expected_size:
        problems.append(f"shard {path} is truncated ({header.file_size} of {header.expected_size} bytes)")
        return None
    if header.shape[0] != row.rows:
        problems.append(f"shard {path} has {header.shape[0]} rows, the index recorded {row.rows}")
    if checksums and checksum_rows(open_shard(root, row.path)) != row.checksum:
        problems.append(f"shard {path} does not match its checksum (changed after it was written)")
    return header.shape[0]


# --------------------------------------------------------------------------- gc


def gc(
    store: FeatureStore,
    dry_run: bool = False,
    min_age_s: float = MIN_ORPHAN_AGE_S,
    compact: bool = True,
    compact_min_shards: int = COMPACT_MIN_SHARDS,
    small_shard_bytes: int = SMALL_SHARD_BYTES,
) -> dict:
    """Remove what no index entry needs, then compact small shards.

    - shard rows no item points at (superseded by compaction or a racing writer);
    - orphan shard files and temp files older than ``min_age_s`` (younger ones may
      belong to a writer that is about to index them);
    - with ``compact``, a feature set with at least ``compact_min_shards`` shards under
      ``small_shard_bytes`` has them rewritten as one (up to 1 GiB each): the new shard
      is renamed into place, the index repointed in one transaction, and only then are
      the old files deleted, so a crash at any point loses nothing.
    ``dry_run`` reports the same without changing anything.
    """
    root = store.root
    report = {
        "dry_run": dry_run,
        "unreferenced_shards": [],
        "orphans": [],
        "temp_files": [],
        "compacted_shards": 0,
        "new_shards": 0,
        "bytes_freed": 0,
    }
    if not root.is_dir():
        return report
    for path in store.index.drop_unreferenced_shards(dry_run=dry_run):
        report["unreferenced_shards"].append(path)
        report["bytes_freed"] += _remove(root / path, dry_run)
    _remove_orphans(store, dry_run, min_age_s, report)
    if compact:
        _compact(store, dry_run, compact_min_shards, small_shard_bytes, report)
    return report


def _remove(path: Path, dry_run: bool) -> int:
    """Delete a file (unless ``dry_run``); return its size, 0 when already gone."""
    try:
        size = path.stat().st_size
        if not dry_run:
            path.unlink()
        return size
    except FileNotFoundError:
        return 0


def _age_s(path: Path) -> float:
    """Seconds since ``path`` was last written; 0 when it just vanished (a writer renamed
    its temp file), so it counts as too young to touch."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove_orphans(store: FeatureStore, dry_run: bool, min_age_s: float, report: dict) -> None:
    root = store.root
    candidates = [p for p in list_shard_files(root) if _age_s(p) >= min_age_s]
    # Under the write lock: a writer indexes its shard only after checking, under the
    # same lock, that the file exists, so no file is deleted after being indexed.
    lock = store.index.write() if store.index.exists() else nullcontext(None)
    with lock as conn:
        known = store.index.shard_paths(conn) if conn is not None else set()
        for path in candidates:
            rel = path.relative_to(root).as_posix()
            if rel in known:
                continue
            report["temp_files" if is_temp_file(path) else "orphans"].append(rel)
            report["bytes_freed"] += _remove(path, dry_run)
        if not dry_run:
            # Empty directories of feature sets that are not registered. Read under the
            # lock: a writer registers its set before it creates the set's directory.
            registered = {s["fingerprint"][:16] for s in store.index.feature_sets()}
            for directory in (root / SHARD_DIR).glob("*"):
                if directory.is_dir() and directory.name not in registered and not any(directory.iterdir()):
                    directory.rmdir()


def _compact(store: FeatureStore, dry_run: bool, min_shards: int, small_bytes: int, report: dict) -> None:
    for summary in store.index.feature_sets():
        fingerprint, dim = summary["fingerprint"], summary["meta"]["dim"]
        small = sorted((r for r in store.index.shards(fingerprint=fingerprint).values() if r.bytes < small_bytes), key=lambda r: r.id)
        if len(small) < min_shards:
            continue
        for group in _groups(small):
            freed = 0 if dry_run else _compact_group(store, fingerprint, dim, group)
            if freed is None:  # another process changed these shards first
                continue
            report["compacted_shards"] += len(group)
            report["new_shards"] += 1
            report["bytes_freed"] += freed


def _groups(shards: list) -> list[list]:
    """Consecutive shards packed into groups of at most ``MAX_SHARD_BYTES`` (2+ each)."""
    groups, current, size = [], [], 0
    for row in shards:
        if current and size + row.bytes > MAX_SHARD_BYTES:
            groups.append(current)
            current, size = [], 0
        current.append(row)
        size += row.bytes
    groups.append(current)
    return [g for g in groups if len(g) >= 2]


def _compact_group(store: FeatureStore, fingerprint: str, dim: int, group: list) -> int | None:
    """Rewrite the items of ``group``'s shards into one new shard; return the bytes
    freed, or None when another process removed or compacted them meanwhile."""
    root, ids = store.root, [r.id for r in group]
    entries = store.index.items_by_shard(fingerprint)
    total = sum(n for i in ids for _, _, n in entries.get(i, []))
    if total == 0:  # the feature set was removed since the shards were listed
        return None
    moves: list[tuple[str, int, int]] = []
    target, temp, final = new_shard_memmap(root, fingerprint, (total, dim))
    try:
        cursor = 0
        for row in group:
            mapped = open_shard(root, row.path)
            for key, offset, length in sorted(entries.get(row.id, []), key=lambda e: e[1]):
                target[cursor : cursor + length] = mapped[offset : offset + length]
                moves.append((key, row.id, cursor))
                cursor += length
            del mapped
        written = commit_memmap(root, target, temp, final)
        del target
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if not store.index.repoint(fingerprint, ids, written, moves):
        final.unlink(missing_ok=True)
        return None
    freed = sum(_remove(root / r.path, dry_run=False) for r in group)
    return freed - written.nbytes
