"""The feature store: backbone features cached on disk, keyed by (fingerprint, content key).

``FeatureStore`` is the interface; ``index`` (SQLite), ``shards`` (``.npy`` files),
``gather`` (memory-mapped, checksum-checked reads) and ``maintenance`` (digest, verify,
repair, gc) hold the parts.
"""

from __future__ import annotations

from mmtk.store.feature_store import FeatureStore

__all__ = ["FeatureStore"]
