"""Standardizer: statistics over valid steps of present items, the auto rule, padding and
absent items kept at zero, and its JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtk.features import Gathered
from mmtk.training import Standardizer


def test_statistics_skip_padding_and_absent_items():
    steps = np.zeros((3, 3, 2), dtype=np.float32)
    steps[0, :2] = [[1, 10], [3, 30]]
    steps[1, :1] = [[5, 50]]
    lengths = np.array([2, 1, 0])
    stats = Standardizer.fit({"s": Gathered(steps, lengths=lengths)}).stats["s"]
    np.testing.assert_allclose(stats[0], [3, 30])
    vectors = np.array([[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]], dtype=np.float32)
    stats = Standardizer.fit({"v": Gathered(vectors, present=np.array([True, True, False]))}).stats["v"]
    np.testing.assert_allclose(stats[0], [2, 4]) and np.testing.assert_allclose(stats[1], [1, 2])


def test_auto_standardises_only_inputs_on_widely_different_scales():
    rng = np.random.default_rng(0)
    mfcc_like = rng.normal(size=(200, 13)).astype(np.float32) * np.array([300.0] + [1.0] * 12, dtype=np.float32)
    embedding = rng.normal(size=(200, 16)).astype(np.float32) * 0.05
    gathered = {"mfcc": Gathered(mfcc_like), "minilm": Gathered(embedding), "tabular": Gathered(mfcc_like.copy())}
    chosen = Standardizer.fit(gathered, "auto", scaled=("tabular",))
    assert set(chosen.stats) == {"mfcc"}
    assert set(Standardizer.fit(gathered, "all").stats) == set(gathered)
    assert Standardizer.fit(gathered, "none") is None
    assert Standardizer.fit({"minilm": Gathered(embedding)}, "auto") is None
    with pytest.raises(ValueError, match="unknown standardisation"):
        Standardizer.fit(gathered, "some")


def test_a_constant_dimension_is_centred_not_divided_by_zero():
    values = np.array([[1.0, 7.0], [3.0, 7.0]], dtype=np.float32)
    standardizer = Standardizer.fit({"v": Gathered(values)})
    np.testing.assert_allclose(standardizer.apply_arrays("v", values), [[-1, 0], [1, 0]])


def test_arrays_and_tensors_agree_and_padding_stays_zero():
    rng = np.random.default_rng(1)
    steps = rng.normal(size=(4, 5, 3)).astype(np.float32) * 7 + 2
    lengths = np.array([5, 3, 1, 0])
    steps[np.arange(5)[None, :] >= lengths[:, None]] = 0
    standardizer = Standardizer.fit({"s": Gathered(steps, lengths=lengths)})
    from_arrays = standardizer.apply_arrays("s", steps, lengths)
    features = {"s": torch.from_numpy(steps.copy())}
    standardizer.apply_tensors(features, {"s": torch.arange(5)[None, :] < torch.from_numpy(lengths)[:, None]})
    np.testing.assert_allclose(features["s"].numpy(), from_arrays, rtol=1e-6)
    assert not from_arrays[3].any() and not from_arrays[2, 1:].any()


def test_json_round_trip():
    standardizer = Standardizer.fit({"v": Gathered(np.array([[1.0], [2.0]], dtype=np.float32))})
    again = Standardizer.from_json(standardizer.to_json())
    assert np.array_equal(again.stats["v"][0], standardizer.stats["v"][0]) and Standardizer.from_json(None) is None
