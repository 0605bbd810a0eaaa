"""Content keys: what the feature store is keyed on, besides the backbone fingerprint.

A key depends on an item's content, never on its name, so the same picture under two
names is computed once and an edited file gets a new key. Extraction and feature
loading both call ``content_key``, which is why it lives here and nowhere else.
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from typing import Any, Iterable

from mmtk.errors import DataError

#: Modalities whose values are file paths; every other modality is hashed as text.
FILE_MODALITIES = frozenset({"image", "audio", "video"})

_DIGEST_SIZE = 20
_CHUNK = 1 << 20  # hash files in 1 MiB reads so a long video never sits in memory whole
# A file changed less than this long ago is hashed afresh rather than memoised (git's
# "racily clean" rule): filesystems stamp times with a coarse clock (a few ms on ext4 and
# tmpfs, 2 s on FAT), so a rewrite within the same tick keeps the size and times the
# memo would trust. Once the file is older than that, any rewrite gets a later ctime.
_RACY_NS = 2_000_000_000


def content_key(value: Any, modality: str) -> str:
    """The store key of one item's input.

    For ``image``/``audio``/``video`` ``value`` is a file path and the key is
    ``"f:"`` + blake2b (20-byte digest) of the file's bytes, memoised in-process on
    (absolute path, size, mtime_ns, ctime_ns, inode) so a warm re-run does not re-read
    every file; a file changed in the last 2 s is always re-read, so a same-size rewrite
    within one tick of the filesystem clock still gets a new key. For
    any other modality the key is ``"t:"`` + blake2b of ``b"text\\0"`` + the UTF-8 text.
    The prefixes keep a text and a file with identical bytes from sharing a key.
    """
    if value is None:
        raise DataError(f"no {modality} value to compute a content key for", "read the dataset with that column required")
    if modality in FILE_MODALITIES:
        path = os.path.abspath(os.fspath(value))
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise DataError(f"{modality} file {path} cannot be read: {exc.strerror}", "fix the path or drop the item") from None
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) < _RACY_NS:
            return "f:" + _hash_file(path)
        return "f:" + _file_digest(path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    digest = hashlib.blake2b(b"text\0" + str(value).encode("utf-8"), digest_size=_DIGEST_SIZE)
    return "t:" + digest.hexdigest()


def content_keys(values: Iterable[Any], modality: str) -> list[str]:
    """``content_key`` for each value, in order."""
    return [content_key(value, modality) for value in values]


@lru_cache(maxsize=1 << 20)
def _file_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    # Everything but the path is part of the cache key only: a file rewritten in place
    # gets a new ctime even when its mtime is set back (cp -p, touch -r, rsync -t), and
    # one replaced by a rename a new inode, so either misses the cache.
    return _hash_file(path)


def _hash_file(path: str) -> str:
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"file {path} cannot be read: {exc.strerror}", "fix its permissions or drop the item") from None
    return digest.hexdigest()
