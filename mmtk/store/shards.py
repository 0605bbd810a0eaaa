"""Shard files: immutable 2-D float32 ``.npy`` arrays written crash-safely.

A shard holds the rows of one ``put`` (or one compaction): vectors one row per item,
sequences their steps concatenated. It is written to a temp file in its final
directory, flushed and fsynced, then renamed into place, so a reader or a later run
only ever sees complete files; the index (``mmtk.store.index``) is updated after the
rename, so a shard that is not in the index is an orphan that ``gc`` may delete.
The ``.npy`` format keeps shards memory-mappable with ``np.load(mmap_mode="r")``.

Corrupt data is refused, never used: every path an index row names must lie inside the
store's ``shards`` folder (``shard_path``); each item's rows hash to the digest the index
recorded for it (``item_digest``), so a read checks exactly the bytes it reads; and
``ensure_checksum`` compares a whole shard's bytes with the checksum recorded at write
time (for items stored before item digests existed, and for the maintenance commands).
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import tokenize
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtk.errors import StoreError

SHARD_DIR = "shards"
# What NumPy raises on a damaged ``.npy`` file. A damaged header dict (one byte flipped)
# fails in Python's tokenizer, whose TokenError is no ValueError.
UNREADABLE = (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError)
SHARD_SUFFIX = ".npy"
TEMP_SUFFIX = ".tmp"
DTYPE = np.dtype("<f4")
# Rows hashed per step when checksumming, so a multi-GiB shard never sits in memory.
_CHECKSUM_ROWS = 65536
# Shards whose checksum this process has checked: (path, checksum, inode, size, mtime).
# Shards never change once written, so one check per process is enough; a file
# replaced behind the index's back has a new inode or mtime and is checked again.
_checked: set[tuple] = set()
_checked_lock = threading.Lock()


@dataclass(frozen=True)
class WrittenShard:
    """A shard that is complete on disk: where it is (relative to the store root) and
    what the index records about it."""

    relpath: str
    rows: int
    nbytes: int
    checksum: str


@dataclass(frozen=True)
class ShardHeader:
    """What a shard file's ``.npy`` header says, and whether the file is long enough."""

    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int
    file_size: int

    @property
    def expected_size(self) -> int:
        return self.data_offset + int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def shard_dir(root: Path, fingerprint: str) -> Path:
    """Directory of one feature set's shards (a fingerprint prefix keeps names short)."""
    return root / SHARD_DIR / fingerprint[:16]


def repair_command(root: Path) -> str:
    """The command that drops damaged entries, for hints."""
    return f"mmtk store repair --store {root}"


class UnsafeShardPath(StoreError):
    """An index row names a file outside the store's shards folder."""


def shard_path(root: Path, relpath: str) -> Path:
    """The file an index row names, refused (``UnsafeShardPath``) unless it resolves,
    symbolic links followed, to a file inside ``root/shards``: a damaged or hostile
    index must never make mmtk read or delete anything else (``../victim.txt``)."""
    base = (root / SHARD_DIR).resolve()
    path = root / relpath
    resolved = path.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise UnsafeShardPath(
            f"the index of store {root} names shard {relpath!r}, which is outside {root / SHARD_DIR}: the index is corrupt",
            hint=f"run: {repair_command(root)} (it drops such rows and touches no file outside the store)",
        )
    return path


def _write_error(exc: OSError, path: Path) -> StoreError | None:
    """A ``StoreError`` for the write failures a user causes and can fix, else None."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"no space left on the disk holding {path} ({os.strerror(exc.errno)})",
            hint="free space there or point --store (or $MMTK_STORE) at a disk with room; "
            "what was committed is kept and the next run computes only the rest",
        )
    if exc.errno == errno.EROFS:
        return StoreError(
            f"cannot write {path}: the file system is read-only",
            hint="read features from it, but extract into a writable store: --store DIR",
        )
    return None


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(root: Path, fingerprint: str, rows: np.ndarray) -> WrittenShard:
    """Write ``rows`` (2-D float32) as a new shard: temp file, fsync, rename into place."""
    rows = np.ascontiguousarray(rows, dtype=DTYPE)
    if rows.ndim != 2:
        raise ValueError(f"a shard holds a 2-D array, got shape {rows.shape}")
    directory = shard_dir(root, fingerprint)
    name = uuid.uuid4().hex
    final = directory / f"{name}{SHARD_SUFFIX}"
    temp = directory / f"{name}{SHARD_SUFFIX}{TEMP_SUFFIX}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as f:
            np.lib.format.write_array(f, rows, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        known = _write_error(exc, temp) if isinstance(exc, OSError) else None
        if known is not None:
            raise known from exc
        raise
    _fsync_dir(directory)
    return WrittenShard(
        relpath=final.relative_to(root).as_posix(),
        rows=rows.shape[0],
        nbytes=final.stat().st_size,
        checksum=checksum_rows(rows),
    )


def new_shard_memmap(root: Path, fingerprint: str, shape: tuple[int, int]) -> tuple[np.memmap, Path, Path]:
    """A writable memory-mapped temp shard for compaction, filled without holding every
    row in memory; ``commit_memmap`` renames it into place. Returns (array, temp, final)."""
    directory = shard_dir(root, fingerprint)
    name = uuid.uuid4().hex
    temp = directory / f"{name}{SHARD_SUFFIX}{TEMP_SUFFIX}"
    final = directory / f"{name}{SHARD_SUFFIX}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        array = np.lib.format.open_memmap(temp, mode="w+", dtype=DTYPE, shape=shape)
        _reserve(temp)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        known = _write_error(exc, temp)
        if known is None:
            raise
        raise known from exc
    return array, temp, final


def _reserve(path: Path) -> None:
    """Allocate a sparse file's blocks now: a full disk is then an ``OSError`` here,
    not a SIGBUS when a page of the memory map is written."""
    with open(path, "rb+") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without fallocate
                raise


def commit_memmap(root: Path, array: np.memmap, temp: Path, final: Path) -> WrittenShard:
    """Flush a shard from ``new_shard_memmap`` to disk and rename it into place."""
    try:
        array.flush()
        checksum = checksum_rows(array)
        rows = array.shape[0]
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, final)
    except OSError as exc:
        known = _write_error(exc, temp)
        if known is None:
            raise
        raise known from exc
    _fsync_dir(final.parent)
    return WrittenShard(final.relative_to(root).as_posix(), rows, final.stat().st_size, checksum)


def checksum_rows(rows: np.ndarray) -> str:
    """blake2b of a shard's data bytes (little-endian float32, row-major)."""
    digest = hashlib.blake2b(digest_size=16)
    for start in range(0, rows.shape[0], _CHECKSUM_ROWS):
        digest.update(np.ascontiguousarray(rows[start : start + _CHECKSUM_ROWS], dtype=DTYPE).data)
    return digest.hexdigest()


def item_digest(rows: np.ndarray) -> int:
    """One item's checksum: blake2b (64 bits, as SQLite's signed integer) of its rows'
    little-endian float32 bytes. 64 bits make a changed item pass unnoticed with odds
    of 2**-64; per item, a read of 100,000 items out of 10 million hashes 100,000 rows,
    not the shards they sit in."""
    data = np.ascontiguousarray(rows, dtype=DTYPE)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def read_header(path: Path) -> ShardHeader:
    """Parse a shard's ``.npy`` header without reading its data (``ValueError`` if bad)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        try:
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (SyntaxError, tokenize.TokenError) as exc:
            raise ValueError(f"its header cannot be parsed: {exc}") from exc
        if fortran:
            raise ValueError("shard is stored in Fortran order")
        return ShardHeader(tuple(shape), np.dtype(dtype), f.tell(), os.fstat(f.fileno()).st_size)


def nonfinite_rows(rows: np.ndarray) -> np.ndarray:
    """Indices of the rows holding NaN or inf, read in bounded steps like the checksum."""
    bad = [
        start + np.flatnonzero(~np.isfinite(rows[start : start + _CHECKSUM_ROWS]).all(axis=1))
        for start in range(0, rows.shape[0], _CHECKSUM_ROWS)
    ]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)


def open_shard(root: Path, relpath: str) -> np.ndarray:
    """Memory-map a shard read-only: one file open for all the rows gathered from it.
    ``FileNotFoundError`` passes through (a concurrent gc may have compacted it away);
    any other failure is a ``StoreError`` naming the file and the repair command."""
    path = shard_path(root, relpath)
    try:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty, 0 bytes")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except UNREADABLE as exc:
        raise StoreError(f"shard {path} cannot be read ({exc})", hint=f"run: {repair_command(root)}") from exc


def _identity(path: Path, checksum: str) -> tuple:
    stat = path.stat()
    return (str(path), checksum, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def is_checked(root: Path, relpath: str, checksum: str) -> bool:
    """Whether this process has checked the shard's bytes against ``checksum`` (and the
    file is still the one it checked). ``FileNotFoundError`` passes through."""
    identity = _identity(root / relpath, checksum)
    with _checked_lock:
        return identity in _checked


def ensure_checksum(root: Path, relpath: str, checksum: str, mapped: np.ndarray) -> None:
    """The first time this process maps a shard, check that its bytes (``mapped``, a
    2-D array from ``open_shard``) still hash to the ``checksum`` recorded when it was
    written: a flipped byte would otherwise change features, and predictions, without a
    word. Costs one read of the shard per process; later maps of it cost a ``stat``."""
    path = root / relpath
    identity = _identity(path, checksum)
    with _checked_lock:
        if identity in _checked:
            return
    if checksum_rows(mapped) != checksum:
        raise StoreError(
            f"shard {path} does not match its checksum: its bytes changed after they were written",
            hint=f"run: {repair_command(root)} (drops its items), then extract-features again to recompute them",
        )
    with _checked_lock:
        _checked.add(identity)


def list_shard_files(root: Path) -> list[Path]:
    """Every file under the store's shard directory (shards, temp files, strays)."""
    base = root / SHARD_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file())


def is_temp_file(path: Path) -> bool:
    """True for an unfinished write (a crashed or still running ``put``)."""
    return path.name.endswith(TEMP_SUFFIX)
