"""Committing computed features to the store in small transactions, so that a killed
run loses at most its last second of work. Every engine commits through this class on
its driver (the Ray engine too: ``mmtk.extract.executors.ray`` says why)."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from mmtk.backbones import BackboneConfig
from mmtk.backbones.base import Encoded

# Seconds between commits: bounds the work a SIGKILL can lose, while keeping the store's
# per-commit cost (a shard fsync and one transaction) far below the compute time.
COMMIT_INTERVAL_S = 1.0
# ...or this many items, whichever comes first, so memory stays flat on fast backbones.
COMMIT_MAX_ITEMS = 512


class Committer:
    """Buffers computed features and commits them to the store every ~1 s."""

    def __init__(self, store, config: BackboneConfig):
        self.store = store
        self.config = config
        self.keys: list[str] = []
        self.rows: list[np.ndarray] = []
        self.companion_rows: dict[str, list[np.ndarray]] = {fingerprint: [] for fingerprint in config.companions}
        self.committed = 0
        self.registered = False
        self.last_commit = time.monotonic()

    def add(self, keys: Sequence[str], features: np.ndarray | Sequence[np.ndarray] | Encoded) -> None:
        """Queue ``features`` for ``keys``: a (B, d) array for vector backbones, B arrays
        of shape (T_i, d) for sequence backbones, or ``Encoded`` with companions."""
        if isinstance(features, Encoded):
            for fingerprint, arrays in features.companions.items():
                self.companion_rows[fingerprint].extend(np.asarray(a, dtype=np.float32) for a in arrays)
            features = features.features
        rows = [np.asarray(row, dtype=np.float32) for row in features]
        if not self.registered:
            for fingerprint, meta in self.config.companions.items():
                # A companion's width may be known only from its rows (a test-time view
                # of a hub model whose config does not state it).
                dim = meta["dim"] or int(self.companion_rows[fingerprint][0].shape[-1])
                self.store.register(fingerprint, {**meta, "dim": dim})
            self.store.register(
                self.config.fingerprint,
                {
                    "backbone": self.config.spec,
                    "modality": self.config.modality,
                    "kind": self.config.kind,
                    "dim": int(rows[0].shape[-1]),
                    **({"variant": self.config.variant} if self.config.variant else {}),
                },
            )
            self.registered = True
        self.keys.extend(keys)
        self.rows.extend(rows)
        if len(self.keys) >= COMMIT_MAX_ITEMS or time.monotonic() - self.last_commit >= COMMIT_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self.keys:
            # Companions first: a kill in between leaves them without features, which the
            # rerun computes again (their put then ignores what is stored); never features
            # without companions, which no rerun would add.
            for fingerprint, rows in self.companion_rows.items():
                self.store.put(fingerprint, self.keys, rows)
                rows.clear()
            self.store.put(self.config.fingerprint, self.keys, self.rows)
            self.committed += len(self.keys)
            self.keys, self.rows = [], []
        self.last_commit = time.monotonic()
