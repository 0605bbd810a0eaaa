"""Fixtures for the feature store tests: an empty store and registered feature sets."""

from __future__ import annotations

import pytest

from mmtk.store import FeatureStore

VECTORS = "a" * 64
SEQUENCES = "b" * 64


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    """A store in a directory that does not exist yet."""
    s = FeatureStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def vectors(store) -> str:
    """A registered 8-d vector feature set; returns its fingerprint."""
    store.register(VECTORS, {"backbone": "vec-test", "modality": "image", "kind": "vector", "dim": 8})
    return VECTORS


@pytest.fixture
def sequences(store) -> str:
    """A registered 4-d sequence feature set; returns its fingerprint."""
    store.register(SEQUENCES, {"backbone": "seq-test", "modality": "text", "kind": "sequence", "dim": 4})
    return SEQUENCES
