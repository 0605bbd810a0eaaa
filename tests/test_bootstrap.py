"""Bootstrap resampling, percentile intervals and the paired test (``mmtk.bootstrap``):
seeded, intervals around the estimate that narrow with more items, and a test whose
p-values are 1 for identical runs, small for a clearly better run and near uniform when
two runs are equally good."""

from __future__ import annotations

import numpy as np

from mmtk.bootstrap import CHUNK_ENTRIES, counts_of, paired_p_value, percentile_interval, resample_indices


def accuracy_values(correct: np.ndarray, bootstrap: int, seed: int) -> np.ndarray:
    """Bootstrap values of the accuracy of a run that got ``correct`` items right."""
    n = len(correct)
    return np.concatenate([counts_of(indices, n) @ correct / n for indices in resample_indices(n, bootstrap, seed)])


def test_resamples_are_seeded_and_counts_add_up():
    first = np.concatenate(list(resample_indices(50, 30, seed=3)))
    again = np.concatenate(list(resample_indices(50, 30, seed=3)))
    other = np.concatenate(list(resample_indices(50, 30, seed=4)))
    assert first.shape == (30, 50) and (first == again).all() and not (first == other).all()
    counts = counts_of(first, 50)
    assert (counts.sum(axis=1) == 50).all()
    assert counts[0].tolist() == np.bincount(first[0], minlength=50).tolist()


def test_chunks_bound_memory_and_keep_the_count():
    n = CHUNK_ENTRIES // 7 + 1  # 6 resamples per chunk
    shapes = [chunk.shape for chunk in resample_indices(n, 20, seed=0)]
    assert shapes == [(6, n)] * 3 + [(2, n)]


def test_interval_contains_the_estimate_and_narrows_with_more_items():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 200, 800):
        correct = (rng.random(n) < 0.7).astype(float)
        low, high = percentile_interval(accuracy_values(correct, 1000, seed=1))
        assert low <= correct.mean() <= high
        widths.append(high - low)
    # The standard error shrinks as 1/sqrt(n): four times the items, about half the width.
    assert widths[0] > 1.5 * widths[1] > 2.25 * widths[2]


def test_interval_leaves_out_undefined_resamples():
    assert percentile_interval(np.array([np.nan, 0.5, 0.5, np.nan])) == [0.5, 0.5]
    assert percentile_interval(np.array([np.nan, np.nan])) is None


def test_identical_runs_give_p_one():
    values = accuracy_values((np.arange(100) % 3 > 0).astype(float), 500, seed=0)
    assert paired_p_value(values, values.copy(), 0.0) == 1.0


def test_a_clearly_better_run_gives_a_small_p_and_the_direction_does_not_matter():
    rng = np.random.default_rng(1)
    n = 200
    weak, strong = (rng.random(n) < 0.6).astype(float), (rng.random(n) < 0.85).astype(float)
    weak_values, strong_values = accuracy_values(weak, 1000, seed=2), accuracy_values(strong, 1000, seed=2)
    observed = strong.mean() - weak.mean()
    p = paired_p_value(weak_values, strong_values, observed)
    assert p < 0.05
    assert paired_p_value(strong_values, weak_values, -observed) == p  # two-sided
    assert p >= 1 / 1001  # the observed data count as one resample: never 0


def test_p_values_are_calibrated_when_two_runs_are_equally_good():
    """Under the null (two runs right on each item independently with the same
    probability) a level-0.05 test rejects about 5% of the time, and p is about uniform.
    Without the recentring (counting resamples where the difference exceeds the
    observed one instead of twice it), p would sit near 0.5 whatever the runs."""
    rng = np.random.default_rng(5)
    n, trials = 150, 300
    p_values = []
    for trial in range(trials):
        first, other = ((rng.random(n) < 0.7).astype(float) for _ in range(2))
        observed = other.mean() - first.mean()
        p_values.append(paired_p_value(accuracy_values(first, 400, trial), accuracy_values(other, 400, trial), observed))
    p_values = np.array(p_values)
    assert 0.01 <= (p_values < 0.05).mean() <= 0.10  # measured: 0.043
    assert 0.40 <= (p_values < 0.5).mean() <= 0.60  # measured: 0.51


def test_undefined_pairs_are_left_out():
    first = np.array([0.5, np.nan, 0.6, 0.7])
    other = np.array([0.5, 0.4, np.nan, 0.7])
    assert paired_p_value(first, other, 0.0) == 1.0  # 2 defined pairs, both as extreme as 0
    assert paired_p_value(np.array([np.nan]), np.array([0.1]), 0.1) is None
