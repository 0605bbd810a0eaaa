"""Stratified k-fold splits of `mmtk tune --folds`."""

from __future__ import annotations

from collections import Counter

import pytest

from mmtk.errors import DataError, UsageError
from mmtk.tune.folds import kfold_indices


def test_every_item_is_validated_once_and_each_fold_keeps_the_class_shares():
    strata = ["a"] * 30 + ["b"] * 12 + ["c"] * 5
    folds = kfold_indices(strata, 5, seed=0)
    validated = sorted(i for _, val in folds for i in val)
    assert validated == list(range(len(strata)))
    for train, val in folds:
        assert sorted(train + val) == list(range(len(strata)))
        counts = Counter(strata[i] for i in val)
        assert counts["a"] == 6 and counts["b"] in (2, 3) and counts["c"] == 1
        assert {strata[i] for i in train} == {"a", "b", "c"}  # every class is trained on in every fold
    assert max(len(v) for _, v in folds) - min(len(v) for _, v in folds) <= 1


def test_folds_are_seeded():
    strata = [i % 2 for i in range(40)]
    assert kfold_indices(strata, 4, seed=3) == kfold_indices(strata, 4, seed=3)
    assert kfold_indices(strata, 4, seed=3) != kfold_indices(strata, 4, seed=4)


def test_unusable_fold_counts_are_refused():
    with pytest.raises(UsageError, match="at least 2 folds"):
        kfold_indices([None] * 10, 1, seed=0)
    with pytest.raises(DataError, match="3 items cannot fill 5 folds"):
        kfold_indices([None] * 3, 5, seed=0)
    with pytest.raises(DataError, match="has a single item"):
        kfold_indices(["a"] * 9 + ["b"], 3, seed=0)
