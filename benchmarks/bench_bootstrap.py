"""Bootstrap comparisons: the metrics of all resamples at once (``mmtk.resampled_metrics``,
what ``compare_runs`` uses for the default scorer) against one scikit-learn scoring per
resample (what any other scorer costs), side by side in one process.

Two workloads:
- ``example``: runs on the bundled example (default: the three runs that
  ``scripts/reproduce-readme-figures.sh`` trains); each model runs once
  (``collect_predictions``, timed), then ``compare_predictions`` with ``--bootstrap``
  resamples both ways.
- ``synthetic``: three runs' random predictions on ``--items`` (1,000) items of a multiclass
  (5 classes) and a multilabel (10 labels) task, both ways.

Both ways give the same intervals and p-values (the largest difference is printed).
Times include each run's scoring on all items (scikit-learn, once per run either way).
Run from the repository root, after ``bash scripts/reproduce-readme-figures.sh``:

    .venv/bin/python benchmarks/bench_bootstrap.py
    .venv/bin/python benchmarks/bench_bootstrap.py --workloads synthetic --bootstrap 20
    .venv/bin/python benchmarks/bench_bootstrap.py --workloads synthetic --vectorised-only
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

RUNS = ["examples/out/readme-figures/fusion", "examples/out/readme-figures/image-only", "examples/out/readme-figures/text-only"]


def per_resample(predictions, indices):
    """``score_predictions`` behind a scorer of its own: compared once per resample."""
    from mmtk.evaluate import score_predictions

    return score_predictions(predictions, indices)


def numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [x for key in sorted(tree) for x in numbers(tree[key])]
    if isinstance(tree, list):
        return [x for item in tree for x in numbers(item)]
    return [float(tree)] if isinstance(tree, (int, float)) and tree is not None else []


def both_ways(label: str, predictions: list, bootstrap: int, vectorised_only: bool = False) -> None:
    from mmtk.comparison import compare_predictions

    from mmtk.evaluate import score_predictions

    names = [f"run{i}" for i in range(len(predictions))]
    score_predictions(predictions[0])  # scikit-learn's import (seconds) is no part of either way
    started = time.perf_counter()
    fast = compare_predictions(predictions, names=names, bootstrap=bootstrap, seed=0)
    vectorised = time.perf_counter() - started
    if vectorised_only:
        print(f"{label}: {len(predictions)} runs x {len(predictions[0])} items x {bootstrap} resamples: all resamples at once {vectorised:.2f} s")
        return
    started = time.perf_counter()
    slow = compare_predictions(predictions, names=names, scorer=per_resample, bootstrap=bootstrap, seed=0)
    looped = time.perf_counter() - started
    strip = [{k: v for k, v in entry.items() if k != "run"} for entry in fast["runs"]], [
        {k: v for k, v in entry.items() if k != "run"} for entry in slow["runs"]
    ]
    difference = max(abs(a - b) for a, b in zip(numbers(strip[0]), numbers(strip[1])))
    print(
        f"{label}: {len(predictions)} runs x {len(predictions[0])} items x {bootstrap} resamples: "
        f"all resamples at once {vectorised:.2f} s, one scoring per resample {looped:.2f} s "
        f"(x{looped / vectorised:.0f}); largest difference between the two {difference:.1e}"
    )


def example(args) -> None:
    from mmtk.evaluate import collect_predictions
    from mmtk.store import FeatureStore

    store = FeatureStore(os.environ.get("MMTK_STORE", "examples/out/store"))
    started = time.perf_counter()
    predictions = [collect_predictions(run, "examples/memes/test.jsonl", store=store, device="cpu") for run in args.runs]
    print(f"example: running the {len(args.runs)} models once (collect_predictions): {time.perf_counter() - started:.2f} s")
    both_ways("example", predictions, args.bootstrap, args.vectorised_only)


def synthetic(args) -> None:
    from mmtk.evaluate import RunPredictions, TaskPredictions

    rng = np.random.default_rng(0)
    n = args.items
    y_class = rng.integers(0, 5, n)
    y_multi = (rng.random((n, 10)) < 0.2).astype(np.int64)
    runs = []
    for _ in range(3):
        classes = rng.dirichlet(np.ones(5), n)
        classes[np.arange(n), y_class] += rng.random(n)  # better than chance
        multi = np.clip(0.6 * y_multi + 0.5 * rng.random((n, 10)), 0, 1)
        runs.append(RunPredictions(run=None, dataset=None, ids=[str(i) for i in range(n)], tasks={
            "genre": TaskPredictions("genre", "multiclass", list("abcde"), y_class, classes / classes.sum(axis=1, keepdims=True)),
            "tags": TaskPredictions("tags", "multilabel", [f"t{i}" for i in range(10)], y_multi, multi),
        }))
    both_ways("synthetic", runs, args.bootstrap, args.vectorised_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["example", "synthetic"], choices=["example", "synthetic"])
    parser.add_argument("--runs", nargs="+", default=RUNS)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--vectorised-only", action="store_true", help="skip the per-resample way (minutes on large workloads)")
    args = parser.parse_args()
    for workload in args.workloads:
        {"example": example, "synthetic": synthetic}[workload](args)


if __name__ == "__main__":
    main()
