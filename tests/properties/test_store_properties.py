"""Feature-store round trips with random keys, lengths and write batches (Hypothesis):
whatever is put comes back, in the order asked, from one store or across reopenings."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtk.store import FeatureStore

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
VECTORS, SEQUENCES = "a" * 64, "b" * 64
KEYS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


def _arrays(seed: int, keys: list[str], dim: int, lengths: list[int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if lengths is None:
        return {key: rng.normal(size=dim).astype(np.float32) for key in keys}
    return {key: rng.normal(size=(length, dim)).astype(np.float32) for key, length in zip(keys, lengths)}


def _batches(items: list, cuts: list[int]) -> list[list]:
    """``items`` split at the (sorted, clipped) positions ``cuts``: several put calls."""
    edges = sorted({0, len(items), *(min(c, len(items)) for c in cuts)})
    return [items[a:b] for a, b in zip(edges, edges[1:])]


@SETTINGS
@given(
    keys=st.lists(KEYS, min_size=1, max_size=30, unique=True),
    dim=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    order_seed=st.integers(0, 2**16),
)
def test_vectors_come_back_in_the_order_asked(tmp_path_factory, keys, dim, cuts, order_seed):
    root = tmp_path_factory.mktemp("vectors")
    store = FeatureStore(root)
    store.register(VECTORS, {"backbone": "p", "modality": "image", "kind": "vector", "dim": dim})
    arrays = _arrays(order_seed, keys, dim)
    for batch in _batches(keys, cuts):
        assert store.put(VECTORS, batch, [arrays[k] for k in batch]) == len(batch)
    assert store.missing(VECTORS, keys) == []
    wanted = list(np.random.default_rng(order_seed).permutation(keys)) + keys[:3]  # shuffled, with repeats
    for reader in (store, FeatureStore(root)):
        out = reader.gather(VECTORS, wanted)
        assert out.dtype == np.float32 and out.shape == (len(wanted), dim)
        np.testing.assert_array_equal(out, np.stack([arrays[k] for k in wanted]))
    # Putting again stores nothing new and changes nothing.
    assert store.put(VECTORS, keys, [np.zeros(dim, np.float32)] * len(keys)) == 0
    np.testing.assert_array_equal(store.gather(VECTORS, keys), np.stack([arrays[k] for k in keys]))
    store.close()


@SETTINGS
@given(
    lengths=st.lists(st.integers(0, 7), min_size=1, max_size=20),
    dim=st.integers(1, 5),
    cuts=st.lists(st.integers(0, 20), max_size=3),
    max_len=st.one_of(st.none(), st.integers(0, 8)),
)
def test_sequences_come_back_padded_with_their_lengths(tmp_path_factory, lengths, dim, cuts, max_len):
    store = FeatureStore(tmp_path_factory.mktemp("sequences"))
    store.register(SEQUENCES, {"backbone": "s", "modality": "text", "kind": "sequence", "dim": dim})
    keys = [f"t:{i}" for i in range(len(lengths))]
    arrays = _arrays(len(lengths), keys, dim, lengths)
    for batch in _batches(keys, cuts):
        store.put(SEQUENCES, batch, [arrays[k] for k in batch])
    wanted = keys[::-1]
    padded, got = store.gather_sequences(SEQUENCES, wanted, max_len=max_len)
    cap = max(lengths) if max_len is None else min(max_len, max(lengths))
    assert padded.shape == (len(wanted), cap, dim) and padded.dtype == np.float32
    for row, key in enumerate(wanted):
        steps = min(len(arrays[key]), cap)
        assert got[row] == steps
        np.testing.assert_array_equal(padded[row, :steps], arrays[key][:steps])
        assert not padded[row, steps:].any()
    store.close()


@SETTINGS
@given(keys=st.lists(KEYS, min_size=1, max_size=20), asked=st.lists(KEYS, max_size=20))
def test_missing_is_what_was_not_put_in_first_seen_order(tmp_path_factory, keys, asked):
    store = FeatureStore(tmp_path_factory.mktemp("missing"))
    store.register(VECTORS, {"backbone": "p", "modality": "image", "kind": "vector", "dim": 2})
    store.put(VECTORS, keys, [np.ones(2, np.float32)] * len(keys))
    assert store.missing(VECTORS, asked) == [k for k in dict.fromkeys(asked) if k not in set(keys)]
    store.close()


@SETTINGS
@given(keys=st.lists(KEYS, min_size=1, max_size=15, unique=True), split=st.integers(0, 15), seed=st.integers(0, 99))
def test_the_digest_depends_on_the_features_not_on_the_write_order(tmp_path_factory, keys, split, seed):
    arrays = _arrays(seed, keys, 3)
    digests = []
    for order in (keys, keys[::-1]):
        store = FeatureStore(tmp_path_factory.mktemp("digest"))
        store.register(VECTORS, {"backbone": "p", "modality": "image", "kind": "vector", "dim": 3})
        for batch in _batches(order, [split]):
            store.put(VECTORS, batch, [arrays[k] for k in batch])
        digests.append(store.info(VECTORS)["digest"])
        store.close()
    assert digests[0] == digests[1]
