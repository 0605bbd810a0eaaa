"""What every executor shares: a batch of ``(content key, value)`` pairs is decoded with
the encoder's ``load`` and encoded as one forward pass into a ``Chunk``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, NamedTuple, Sequence

from mmtk.backbones import BadInput
from mmtk.backbones.base import close_resource


class Chunk(NamedTuple):
    """One encoded batch: features for ``keys`` (rows in order) and the items that failed."""

    keys: list[str]
    features: Any  # (B, d) array, B arrays (T_i, d) for sequences, ``Encoded``, or None
    bad: list[tuple[str, str]]  # (content key, reason)


class Loaded(NamedTuple):
    """One batch after decoding: the loadable items and the ones that failed."""

    keys: list[str]
    items: list[Any]
    bad: list[tuple[str, str]]


def load_items(encoder, items: Sequence[tuple[str, Any]]) -> Loaded:
    """Load (decode) each ``(key, value)``; items the encoder cannot use become ``bad``."""
    keys, loaded, bad = [], [], []
    for key, value in items:
        try:
            loaded.append(encoder.load(value))
            keys.append(key)
        except BadInput as exc:
            bad.append((key, str(exc)))
    return Loaded(keys, loaded, bad)


def encode_loaded(encoder, batch: Loaded) -> Chunk:
    """Encode a decoded batch's loadable items as one forward pass."""
    features = encoder.encode(encoder.collate(batch.items)) if batch.items else None
    return Chunk(batch.keys, features, batch.bad)


def encode_items(encoder, items: Sequence[tuple[str, Any]]) -> Chunk:
    """Load (decode) each ``(key, value)`` and encode the loadable ones as one batch."""
    # ``load_items`` is looked up in this module at call time, as every executor does:
    # a fault injected there (tests/cli/test_console_script.py) reaches all of them.
    return encode_loaded(encoder, load_items(encoder, items))


def batches(items: Sequence[tuple[str, Any]], size: int) -> Iterator[list[tuple[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@contextmanager
def built(config, device: str) -> Iterator:
    """``config.build(device)``, closed on the way out (``close_resource``)."""
    encoder = config.build(device)
    try:
        yield encoder
    finally:
        close_resource(encoder)


class InOrder:
    """Releases chunks in batch order: a batch that fails (a bad item with
    ``on_error="fail"``) then stops extraction only after every batch before it was
    handed on and committed, whatever order the workers finished in."""

    def __init__(self):
        self.next = 0
        self.waiting: dict[int, Chunk] = {}

    def add(self, index: int, chunk: Chunk) -> Iterator[Chunk]:
        self.waiting[index] = chunk
        while self.next in self.waiting:
            yield self.waiting.pop(self.next)
            self.next += 1

