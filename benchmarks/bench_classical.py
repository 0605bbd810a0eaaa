"""How the classical baselines' probabilities are calibrated (``mmtk.models.classical``).

On the sets of ``bench_baselines.py`` (their features gathered by its ``lr_features``, so
the inputs equal what mmtk's models see; standardised on the training file), every
modality row fits ``svm`` and ``logreg`` with mmtk's own fitting functions on the whole
training file and scores the test file's probabilities under each calibration:

- ``none``: the logistic regression's own ``predict_proba`` (the SVM has none);
- ``ovr``: scikit-learn's ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``, a
  Platt sigmoid per class one-vs-rest normalised to sum to 1 (for two classes: one sigmoid);
- ``mmtk``: what the models do (``calibrated_fit``): that same sigmoid for two classes,
  one temperature over the class scores for more.

Columns: test log loss, accuracy, and the expected calibration error of the top class
(10 equal-width bins). Both calibrations use the same stratified folds (seed 0).

    .venv/bin/python benchmarks/bench_classical.py --sets av-clean,clothing

The last line is one JSON object with every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

FOLDS = 5
GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # logreg's default --model-arg grid


def top_class_ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    confidence, hit = probs.max(axis=1), (probs.argmax(axis=1) == y).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum(abs(confidence[which == b].mean() - hit[which == b].mean()) * np.mean(which == b) for b in range(bins) if np.any(which == b)))


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.metrics import log_loss

    return {
        "log_loss": float(log_loss(y, np.clip(probs, 1e-15, 1.0), labels=np.arange(probs.shape[1]))),
        "accuracy": float(np.mean(probs.argmax(axis=1) == y)), "ece": top_class_ece(probs, y),
    }


def one_vs_rest(estimator, x: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold

    cv = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    return CalibratedClassifierCV(estimator, method="sigmoid", cv=cv, ensemble=False).fit(x, y).predict_proba(test)


def rows_for(bench, store) -> list[dict]:
    from bench_baselines import lr_features
    from sklearn.base import clone
    from sklearn.preprocessing import StandardScaler

    from mmtk.data import fit_label_encoder, parse_task
    from mmtk.models.classical import fit_logreg, fit_svm

    encoder = fit_label_encoder(parse_task(bench.task), bench.train)
    train_y, test_y = encoder.encode(bench.train), encoder.encode(bench.test)
    rows = []
    for modality, refs in bench.modalities.items():
        train_x, test_x = lr_features(bench, refs, store)
        scaler = StandardScaler().fit(train_x)
        train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
        svm = fit_svm(train_x, train_y, C=1.0, folds=FOLDS, balanced=False, seed=0)
        logreg = fit_logreg(train_x, train_y, grid=GRID, folds=FOLDS, max_iter=3000, balanced=False, seed=0)
        found = {
            ("svm", "ovr"): one_vs_rest(clone(svm.estimator), train_x, train_y, test_x),
            ("svm", "mmtk"): svm.predict_proba(test_x),
            ("logreg", "none"): logreg.estimator.predict_proba(test_x),
            ("logreg", "ovr"): one_vs_rest(clone(logreg.estimator), train_x, train_y, test_x),
            ("logreg", "mmtk"): logreg.predict_proba(test_x),
        }
        for (model, calibration), probs in found.items():
            chosen = {"C": float(logreg.estimator.C)} if model == "logreg" else {}
            rows.append({"set": bench.name, "modality": modality, "classes": len(encoder.classes), "model": model,
                         "calibration": calibration, **scores(probs, test_y), **chosen})
            row = rows[-1]
            print(f"{bench.name:9s} {modality:8s} {model:6s} {calibration:5s} log loss {row['log_loss']:.4f}  "
                  f"accuracy {row['accuracy']:.4f}  ECE {row['ece']:.4f}" + (f"  (C={chosen['C']:g})" if chosen else ""), flush=True)
    return rows


def main() -> None:
    import os

    from threadpoolctl import threadpool_limits

    from bench_baselines import OUT, build_sets, extract
    from mmtk.store import FeatureStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="av-clean,clothing", help="comma-separated sets of bench_baselines.py")
    args = parser.parse_args()
    store = FeatureStore(os.environ.get("MMTK_STORE", OUT / "store"))
    rows = []
    with tempfile.TemporaryDirectory() as work, threadpool_limits(limits=1):
        for bench in build_sets(args.sets.split(","), Path(work)):
            extract(bench, store)
            rows += rows_for(bench, store)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
