"""What ``mmtk store info|verify|repair|gc`` compute: digests, consistency checks,
dropping damaged entries, clean-up.

Every function reads shards one at a time (each memory-mapped once), so they work on
stores far larger than memory. None of them touches a file outside the store's shards
folder, whatever path an index row names (``shard_path``), and none copies or digests
bytes that fail their checksum.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmtk.errors import StoreError
from mmtk.store.index import IndexDamaged
from mmtk.store.shards import (
    DTYPE,
    SHARD_DIR,
    UnsafeShardPath,
    checksum_rows,
    commit_memmap,
    ensure_checksum,
    is_temp_file,
    item_digest,
    list_shard_files,
    new_shard_memmap,
    nonfinite_rows,
    open_shard,
    read_header,
    repair_command,
    shard_path,
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
        mapped = None if shard_id is None else _checked_shard(store.root, shards, shard_id, entries[0][0])
        for key, offset, length, _ in entries:
            h = hashlib.blake2b(key.encode("utf-8"), digest_size=32)
            h.update(int(length).to_bytes(8, "little"))
            if length:
                h.update(np.ascontiguousarray(mapped[offset : offset + length], dtype=DTYPE).data)
            total = (total + int.from_bytes(h.digest(), "little")) % (1 << 256)
            count += 1
        del mapped
    return total, count


def _checked_shard(root: Path, shards: dict, shard_id: int, first_key: str):
    """A shard mapped for reading every row, its checksum checked (digests of damaged
    bytes would compare two stores wrongly)."""
    row = shards.get(shard_id)
    if row is None:
        raise StoreError(
            f"item {first_key!r} points at shard id {shard_id}, which is not in the index of store {root}",
            hint=f"run: {repair_command(root)}",
        )
    mapped = open_shard(root, row.path)
    ensure_checksum(root, row.path, row.checksum, mapped)
    return mapped


# --------------------------------------------------------------------------- checks


def inspect_shard(root: Path, row, dim: int | None, checksums: bool = True) -> tuple[str | None, int | None]:
    """What makes one indexed shard unusable (None when sound) and the rows its file
    really holds (None when unreadable). Without ``checksums`` only the header and size
    are checked; with them, the data's checksum too."""
    try:
        path = shard_path(root, row.path)
    except UnsafeShardPath:
        return f"shard {row.path!r} named by the index is outside {root / SHARD_DIR}", None
    if not path.is_file():
        return f"shard {path} is missing", None
    try:
        header = read_header(path)
    except (OSError, ValueError, EOFError) as exc:
        return f"shard {path} is unreadable ({exc})", None
    if len(header.shape) != 2 or header.dtype != DTYPE or (dim is not None and header.shape[1] != dim):
        return f"shard {path} holds {header.dtype} {header.shape}, expected float32 (rows, {dim})", None
    if header.file_size < header.expected_size:
        return f"shard {path} is truncated ({header.file_size} of {header.expected_size} bytes)", None
    if header.shape[0] != row.rows:
        return f"shard {path} has {header.shape[0]} rows, the index recorded {row.rows}", header.shape[0]
    if checksums and checksum_rows(open_shard(root, row.path)) != row.checksum:
        return f"shard {path} does not match its checksum (changed after it was written)", header.shape[0]
    return None, header.shape[0]


def _nonfinite_keys(root: Path, row, entries: list[tuple[str, int, int, int | None]]) -> list[str]:
    """Keys of a (checksum-sound) shard's items holding NaN or inf: ``put`` refuses
    them, so they can only come from a store written by other means."""
    bad = nonfinite_rows(open_shard(root, row.path))
    if len(bad) == 0:
        return []
    return [key for key, offset, length, _ in entries if length and np.any((bad >= offset) & (bad < offset + length))]


def _mismatched_keys(root: Path, row, entries: list[tuple[str, int, int, int | None]]) -> list[str]:
    """Keys of a (checksum-sound) shard's items whose rows do not hash to the digest the
    index recorded: their index row changed (its offset or digest), and a gather would
    refuse them. Items past the shard's end are ``_bad_items``' to report."""
    mapped = open_shard(root, row.path).view(np.ndarray)
    return [
        key
        for key, offset, length, digest in entries
        if digest is not None and 0 <= offset and 0 < length and offset + length <= len(mapped)
        and item_digest(mapped[offset : offset + length]) != digest
    ]


# --------------------------------------------------------------------------- verify


def verify(store: FeatureStore, checksums: bool = True) -> dict:
    """Check every index entry against its shard (``StoreError`` when there is no store).

    Problems (``ok`` is False): an index SQLite finds damaged (``index_damaged``: then
    nothing else can be checked, and ``repair`` cannot help), a missing, unreadable,
    empty or truncated shard, one named outside the store, a header whose shape or dtype
    disagrees with the index or the feature set's dim, data whose checksum changed or
    that holds NaN or inf, items whose rows do not match their own digest (these three
    with ``checksums``), items that point past their shard's end or
    at no shard, items of an unregistered feature set. Orphans (files no index row
    names: leftovers of killed writers) are listed apart and do not fail the check;
    ``gc`` removes them.
    """
    store.require_exists()
    index, root = store.index, store.root
    report = {"ok": False, "index_damaged": False, "problems": [], "orphans": [], "feature_sets": 0, "shards": 0, "items": 0}
    by_shard: dict[int, list[str]] = {}  # shard problems, reported in shard id order
    item_problems: list[str] = []
    actual_rows: dict[int, int] = {}
    n_items = 0
    try:
        problems = [f"index {index.path}: {line}" for line in index.quick_check()]
        # Items stream in shard order (SQLite sorts them on disk), so one shard's items
        # are in memory at a time, whatever the store's size.
        with index.snapshot():
            metas = {s["fingerprint"]: s["meta"] for s in index.feature_sets()}
            unregistered = index.item_fingerprints() - set(metas)
            shards = index.shards()
            for shard_id, entries in index.iter_items_by_shard():
                n_items += len(entries)
                if shard_id in shards:
                    by_shard[shard_id] = _check_shard(root, shards[shard_id], entries, shards, metas, checksums, actual_rows)
                bad = _bad_items(root, shard_id, entries, shards, metas, actual_rows)
                if bad is not None:
                    why, keys = bad
                    item_problems.append(f"{len(keys)} items {why} (first: {keys[0]})")
    except IndexDamaged as exc:
        report.update(index_damaged=True, problems=[exc.message])
        return report
    if problems:
        report["index_damaged"] = True
    for fp in sorted(unregistered):
        problems.append(f"items of feature set {fp[:12]} exist but the feature set is not registered")
    for shard_id, row in shards.items():
        if shard_id not in by_shard:  # no item points at it
            by_shard[shard_id] = _check_shard(root, row, [], shards, metas, checksums, actual_rows)
    shard_problems = [p for shard_id in sorted(by_shard) for p in by_shard[shard_id]]
    # A shard a concurrent gc compacted away after the snapshot is not a problem.
    vanished = [row for row in shards.values() if not (root / row.path).is_file()]
    if vanished:
        still_indexed = index.shards(ids=[row.id for row in vanished])
        gone = {f"shard {root / row.path} is missing" for row in vanished if row.id not in still_indexed}
        shard_problems = [p for p in shard_problems if p not in gone]
    problems += shard_problems + item_problems
    known = {root / row.path for row in shards.values()}
    unknown = [p for p in list_shard_files(root) if p not in known]
    if unknown:
        # A shard another process wrote or compacted after the snapshot is indexed now.
        known |= {root / path for path in index.shard_paths()}
    orphans = [p.relative_to(root).as_posix() for p in unknown if p not in known]
    report.update(
        ok=not problems,
        problems=problems,
        orphans=orphans,
        feature_sets=len(metas),
        shards=len(shards),
        items=n_items,
    )
    return report


def _check_shard(root: Path, row, entries, shards: dict, metas: dict, checksums: bool, actual_rows: dict) -> list[str]:
    """``verify``'s problems with one shard and the bytes of its items; records the rows
    its file really holds in ``actual_rows``."""
    found: list[str] = []
    shard_id, dim = row.id, metas.get(row.fingerprint, {}).get("dim")
    # A shard whose rows all belong to items with their own digest is checked through
    # them: one hashing pass instead of two (whole checksum, then digests). Its whole
    # checksum is computed only when an item fails, to tell a changed shard (repair
    # drops it) from changed index rows (repair drops those items).
    by_items = checksums and bool(entries) and all(e[3] is not None for e in entries) and sum(e[2] for e in entries) == row.rows
    problem, rows = inspect_shard(root, row, dim, checksums and not by_items)
    if problem is None and checksums:
        # Items whose row span is wrong are reported by ``_bad_items``, once, for that.
        structural = _bad_items(root, shard_id, entries, shards, metas, {shard_id: rows})
        skip = set(structural[1]) if structural else set()
        changed = _mismatched_keys(root, row, [e for e in entries if e[0] not in skip])
        if changed and by_items:
            problem, rows = inspect_shard(root, row, dim, checksums=True)
        if problem is None:
            bad = _nonfinite_keys(root, row, entries)
            if bad:
                found.append(f"shard {root / row.path} holds NaN or inf for {len(bad)} items (first: {bad[0]})")
            if changed:
                found.append(f"{len(changed)} items of shard {root / row.path} do not match their checksum (first: {changed[0]})")
    if problem is not None:
        found.append(problem)
    if rows is not None:
        actual_rows[shard_id] = rows
    return found


def _bad_items(root: Path, shard_id, entries, shards: dict, metas: dict, actual_rows: dict) -> tuple[str, list[str]] | None:
    """Items of one shard that cannot be read whatever the shard's state: (why, keys)."""
    if shard_id is None:
        bad = [k for k, _, n, _ in entries if n != 0]
        return ("point at no shard although they have data", bad) if bad else None
    row = shards.get(shard_id)
    if row is None:
        return (f"point at shard id {shard_id}, which is not in the index", [k for k, _, _, _ in entries])
    if metas.get(row.fingerprint, {}).get("kind") == "vector":
        odd = [k for k, _, n, _ in entries if n != 1]
        if odd:
            return (f"are vectors of {root / row.path} that span other than one row", odd)
    limit = actual_rows.get(shard_id, row.rows)
    past = [k for k, offset, n, _ in entries if offset < 0 or n < 0 or offset + n > limit]
    return (f"point past the end of shard {root / row.path} ({limit} rows)", past) if past else None


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
    Compaction checks each shard before copying its rows: a damaged shard's items (and
    items that point past their shard's end) are not copied but dropped, so the next
    extraction recomputes them (``dropped_items``, ``damaged_shards``); copying them
    would give wrong bytes a fresh checksum. An index row naming a file outside the
    store loses its row; the file is never touched (``refused_paths``).
    ``dry_run`` reports the same without changing anything.
    """
    store.require_exists()
    root = store.root
    report = {
        "dry_run": dry_run,
        "unreferenced_shards": [],
        "orphans": [],
        "temp_files": [],
        "compacted_shards": 0,
        "new_shards": 0,
        "damaged_shards": [],
        "dropped_items": 0,
        "refused_paths": [],
        "bytes_freed": 0,
    }
    for path in store.index.drop_unreferenced_shards(dry_run=dry_run):
        report["unreferenced_shards"].append(path)
        try:
            report["bytes_freed"] += _remove(shard_path(root, path), dry_run)
        except UnsafeShardPath:
            report["refused_paths"].append(path)
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
                if directory.is_dir() and not directory.is_symlink() and directory.name not in registered and not any(directory.iterdir()):
                    directory.rmdir()


def _compact(store: FeatureStore, dry_run: bool, min_shards: int, small_bytes: int, report: dict) -> None:
    for summary in store.index.feature_sets():
        fingerprint, dim = summary["fingerprint"], summary["meta"]["dim"]
        small = sorted((r for r in store.index.shards(fingerprint=fingerprint).values() if r.bytes < small_bytes), key=lambda r: r.id)
        if len(small) < min_shards:
            continue
        for group in _groups(small):
            if dry_run:
                report["compacted_shards"] += len(group)
                report["new_shards"] += 1
                continue
            done = _compact_group(store, fingerprint, dim, group)
            if done is None:  # another process changed these shards first
                continue
            report["compacted_shards"] += len(group)
            report["new_shards"] += int(done["new_shard"])
            report["bytes_freed"] += done["freed"]
            report["damaged_shards"] += done["damaged"]
            report["dropped_items"] += done["dropped"]


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


def _compact_group(store: FeatureStore, fingerprint: str, dim: int, group: list) -> dict | None:
    """Rewrite the items of ``group``'s shards into one new shard, leaving out (and
    dropping from the index) the items of shards that fail their checks. Returns what
    was done, or None when another process removed or compacted them meanwhile."""
    root, ids = store.root, [r.id for r in group]
    entries = store.index.items_by_shard(fingerprint)
    if not any(entries.get(i) for i in ids):  # the feature set was removed since the shards were listed
        return None
    sound, damaged, moves, dropped = [], [], [], []
    for row in group:
        # A shard a concurrent gc compacted away looks missing here; repoint then finds
        # its row gone and changes nothing.
        problem, rows = inspect_shard(root, row, dim, checksums=True)
        mine = sorted(entries.get(row.id, []), key=lambda e: e[1])
        if problem is not None:
            damaged.append(problem)
            dropped += [(key, row.id) for key, _, _, _ in mine]
            continue
        good = [e for e in mine if 0 <= e[1] and 0 < e[2] and e[1] + e[2] <= rows]
        # Copied rows keep their digests, so items whose rows do not match are not copied.
        bad = ({e[0] for e in mine} - {e[0] for e in good}) | set(_nonfinite_keys(root, row, good)) | set(_mismatched_keys(root, row, good))
        dropped += [(key, row.id) for key in sorted(bad)]
        sound.append((row, [e for e in good if e[0] not in bad]))
    total = sum(length for _, kept in sound for _, _, length, _ in kept)
    written = None
    if total:
        target, temp, final = new_shard_memmap(root, fingerprint, (total, dim))
        try:
            cursor = 0
            for row, kept in sound:
                mapped = open_shard(root, row.path)
                for key, offset, length, _ in kept:
                    target[cursor : cursor + length] = mapped[offset : offset + length]
                    moves.append((key, row.id, cursor))
                    cursor += length
                del mapped
            written = commit_memmap(root, target, temp, final)
            del target
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    if not store.index.repoint(fingerprint, ids, written, moves, dropped):
        if written is not None:
            final.unlink(missing_ok=True)
        return None
    freed = 0
    for row in group:
        try:
            freed += _remove(shard_path(root, row.path), dry_run=False)
        except UnsafeShardPath:
            pass  # a row naming a file outside the store loses its row, never the file
    return {
        "freed": freed - (written.nbytes if written else 0),
        "new_shard": written is not None,
        "damaged": damaged,
        "dropped": len(dropped),
    }


# --------------------------------------------------------------------------- repair


def repair(store: FeatureStore, dry_run: bool = False) -> dict:
    """Drop every entry whose bytes cannot be trusted, so the next ``extract-features``
    recomputes exactly those items.

    Dropped: the items of every shard that is missing, unreadable, empty, truncated,
    named outside the store, of the wrong shape or failing its checksum (the shard's
    row too, and its file when it lies inside the store); single items that hold NaN
    or inf, do not match their digest, point past their shard's end or at no shard; items of unregistered feature
    sets. Sound entries are untouched. A damaged index (``IndexDamaged``) cannot be
    repaired this way: its error says what to do. ``dry_run`` reports without changing.

    Returns ``{"dry_run", "damaged_shards": [{"path", "problem", "items"}],
    "dropped_items", "feature_sets": [{"fingerprint", "backbone", "items"}], "bytes_freed"}``.
    """
    store.require_exists()
    root, index = store.root, store.index
    with index.snapshot():
        metas = {s["fingerprint"]: s["meta"] for s in index.feature_sets()}
        shards = index.shards()
        grouped = index.items_by_set_and_shard()
    damaged: dict[int, str] = {}
    actual_rows: dict[int, int] = {}
    for shard_id, row in shards.items():
        problem, rows = inspect_shard(root, row, metas.get(row.fingerprint, {}).get("dim"))
        if problem is not None:
            damaged[shard_id] = problem
        elif rows is not None:
            actual_rows[shard_id] = rows
    counts: dict[str, int] = {}
    single: list[tuple[str, str, int | None]] = []
    for (fingerprint, shard_id), entries in grouped.items():
        if fingerprint not in metas or shard_id in damaged:
            counts[fingerprint] = counts.get(fingerprint, 0) + len(entries)
            continue
        bad = _bad_items(root, shard_id, entries, shards, metas, actual_rows)
        keys = set(bad[1]) if bad else set()
        if shard_id in actual_rows:
            rest = [e for e in entries if e[0] not in keys]
            keys |= set(_nonfinite_keys(root, shards[shard_id], rest)) | set(_mismatched_keys(root, shards[shard_id], rest))
        single += [(fingerprint, key, shard_id) for key in sorted(keys)]
        if keys:
            counts[fingerprint] = counts.get(fingerprint, 0) + len(keys)
    gone = sorted(damaged)
    if not dry_run:
        # Counted again inside the transaction: a concurrent gc may have moved items.
        result = index.drop_entries(gone, single, unregistered=any(fp not in metas for fp, _ in grouped))
        counts, gone = result["items"], result["shards"]
    freed = 0
    for shard_id in gone:
        try:
            freed += _remove(shard_path(root, shards[shard_id].path), dry_run)
        except UnsafeShardPath:
            pass  # only the row goes: the file it names is not the store's
    sizes: dict[int, int] = {}
    for (_, shard_id), entries in grouped.items():
        sizes[shard_id] = sizes.get(shard_id, 0) + len(entries)
    return {
        "dry_run": dry_run,
        "damaged_shards": [{"path": shards[i].path, "problem": damaged[i], "items": sizes.get(i, 0)} for i in sorted(damaged)],
        "dropped_items": sum(counts.values()),
        "feature_sets": [
            {"fingerprint": fp, "backbone": metas.get(fp, {}).get("backbone", "(unregistered)"), "items": n}
            for fp, n in sorted(counts.items())
            if n
        ],
        "bytes_freed": freed,
    }
