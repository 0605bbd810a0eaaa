"""Seeded, stratified k-fold splits for ``mmtk tune --folds K``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from mmtk.errors import DataError, UsageError


def kfold_indices(strata: Sequence[Any], k: int, seed: int, source: Any = "dataset") -> list[tuple[list[int], list[int]]]:
    """``k`` ``(train, validation)`` index lists over ``len(strata)`` items: every item is
    validated in exactly one fold. Each stratum (one key per item, as
    ``mmtk.train.split_indices`` takes them; ``[None] * n`` for none) is shuffled with
    ``seed`` and dealt over the folds round-robin, each stratum continuing where the
    last one stopped (from a seeded first fold), so each fold holds its share of every
    class and the folds' sizes differ by at most one.
    A stratum of one item would be missing from the training part of its fold (its
    label unknown there), so it is refused."""
    if k < 2:
        raise UsageError(f"--folds {k}: k-fold needs at least 2 folds", "give --folds 5, or leave --folds out to use the validation split")
    if len(strata) < k:
        raise DataError(f"{source}: {len(strata)} items cannot fill {k} folds", f"give --folds {max(2, len(strata))} or fewer")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(strata):
        groups[repr(key)].append(i)
    fold_of = np.empty(len(strata), dtype=np.int64)
    dealt = int(rng.integers(k))
    for key in sorted(groups):
        members = np.array(groups[key])
        if len(groups) > 1 and len(members) < 2:
            raise DataError(f"{source}: class {key} has a single item, so one fold would train without it", "drop that item, or give more data of that class")
        rng.shuffle(members)
        fold_of[members] = (dealt + np.arange(len(members))) % k
        dealt += len(members)
    folds = []
    for fold in range(k):
        val_idx = np.flatnonzero(fold_of == fold)
        train_idx = np.flatnonzero(fold_of != fold)
        folds.append((train_idx.tolist(), val_idx.tolist()))
    return folds
