"""Shard files: immutable 2-D float32 ``.npy`` arrays written crash-safely.

A shard holds the rows of one ``put`` (or one compaction): vectors one row per item,
sequences their steps concatenated. It is written to a temp file in its final
directory, flushed and fsynced, then renamed into place, so a reader or a later run
only ever sees complete files; the index (``mmtk.store.index``) is updated after the
rename, so a shard that is not in the index is an orphan that ``gc`` may delete.
The ``.npy`` format keeps shards memory-mappable with ``np.load(mmap_mode="r")``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtk.errors import StoreError

SHARD_DIR = "shards"
SHARD_SUFFIX = ".npy"
TEMP_SUFFIX = ".tmp"
DTYPE = np.dtype("<f4")
# Rows hashed per step when checksumming, so a multi-GiB shard never sits in memory.
_CHECKSUM_ROWS = 65536


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
    directory.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    final = directory / f"{name}{SHARD_SUFFIX}"
    temp = directory / f"{name}{SHARD_SUFFIX}{TEMP_SUFFIX}"
    try:
        with open(temp, "wb") as f:
            np.lib.format.write_array(f, rows, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
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
    directory.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    temp = directory / f"{name}{SHARD_SUFFIX}{TEMP_SUFFIX}"
    final = directory / f"{name}{SHARD_SUFFIX}"
    array = np.lib.format.open_memmap(temp, mode="w+", dtype=DTYPE, shape=shape)
    return array, temp, final


def commit_memmap(root: Path, array: np.memmap, temp: Path, final: Path) -> WrittenShard:
    """Flush a shard from ``new_shard_memmap`` to disk and rename it into place."""
    array.flush()
    checksum = checksum_rows(array)
    rows = array.shape[0]
    with open(temp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(temp, final)
    _fsync_dir(final.parent)
    return WrittenShard(final.relative_to(root).as_posix(), rows, final.stat().st_size, checksum)


def checksum_rows(rows: np.ndarray) -> str:
    """blake2b of a shard's data bytes (little-endian float32, row-major)."""
    digest = hashlib.blake2b(digest_size=16)
    for start in range(0, rows.shape[0], _CHECKSUM_ROWS):
        digest.update(np.ascontiguousarray(rows[start : start + _CHECKSUM_ROWS], dtype=DTYPE).data)
    return digest.hexdigest()


def read_header(path: Path) -> ShardHeader:
    """Parse a shard's ``.npy`` header without reading its data (``ValueError`` if bad)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if fortran:
            raise ValueError("shard is stored in Fortran order")
        return ShardHeader(tuple(shape), np.dtype(dtype), f.tell(), os.fstat(f.fileno()).st_size)


def open_shard(root: Path, relpath: str) -> np.ndarray:
    """Memory-map a shard read-only: one file open for all the rows gathered from it."""
    path = root / relpath
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"shard {path} cannot be read ({exc})",
            hint="run `mmtk store verify` to list damaged entries",
        ) from exc


def list_shard_files(root: Path) -> list[Path]:
    """Every file under the store's shard directory (shards, temp files, strays)."""
    base = root / SHARD_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file())


def is_temp_file(path: Path) -> bool:
    """True for an unfinished write (a crashed or still running ``put``)."""
    return path.name.endswith(TEMP_SUFFIX)
