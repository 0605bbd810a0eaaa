"""mmtk.plots: every plot of every task kind is a valid PNG, the calibration error matches
hand-computed values, modality weights per class, class-query projections, and learning
curves from a real 2-epoch training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.errors import DataError
from mmtk.plots import plot_learning_curves, plot_task
from mmtk.plots.calibration import calibration_pairs, expected_calibration_error, reliability_bins
from mmtk.plots.curves import loss_series, read_log, validation_series
from mmtk.plots.models import class_query_projection, mean_weights_per_class, modality_weights
from mmtk.store import FeatureStore
from synthetic_features import FEATURES, xor_split

EXPECTED = {
    "binary": ["confusion_matrix", "confusion_matrix_normalized", "roc_curve", "pr_curve", "reliability", "per_class_f1"],
    "multiclass": ["confusion_matrix", "confusion_matrix_normalized", "roc_curve", "pr_curve", "reliability", "per_class_f1"],
    "multilabel": ["average_precision", "roc_curve", "pr_curve", "reliability", "per_class_f1"],
    "regression": ["predicted_vs_true"],
}


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()  # the whole file decodes, not only its signature
    with Image.open(path) as image:
        assert image.width > 100 and image.height > 100
        assert np.asarray(image.convert("L")).std() > 1.0  # something is drawn


def task_data(kind: str, n: int = 60):
    rng = np.random.default_rng(0)
    if kind == "binary":
        y = rng.integers(0, 2, n)
        p = np.clip(0.6 * y + 0.4 * rng.random(n), 0, 1)
        return y, np.stack([1 - p, p], axis=1), ["no", "yes"]
    if kind == "multiclass":
        y = rng.integers(0, 3, n)
        logits = rng.normal(size=(n, 3)) + 2 * np.eye(3)[y]
        return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), ["neg", "neu", "pos"]
    if kind == "multilabel":
        y = rng.integers(0, 2, (n, 4))
        return y, np.clip(0.5 * y + 0.5 * rng.random((n, 4)), 0, 1), ["drama", "comedy", "horror", "crime"]
    y = rng.random(n)
    return y, y + 0.1 * rng.normal(size=n), []


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_plot_of_every_task_kind_is_a_png(kind, tmp_path):
    y, outputs, classes = task_data(kind)
    paths = plot_task(kind, y, outputs, classes, tmp_path / "plots", prefix="t_", title="task")
    assert [p.name for p in paths] == [f"t_{name}.png" for name in EXPECTED[kind]]
    for path in paths:
        assert_png(path)


def test_curves_leave_out_classes_that_are_never_or_always_true(tmp_path):
    y = np.zeros(10, dtype=int)  # binary with one class only: no ROC or PR curve at all
    p = np.linspace(0, 1, 10)
    names = [path.name for path in plot_task("binary", y, np.stack([1 - p, p], 1), ["0", "1"], tmp_path)]
    assert "roc_curve.png" not in names and "pr_curve.png" not in names and "reliability.png" in names


def test_ece_binary_hand_computed():
    labels = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.12, 0.95, 0.85, 1.0])
    outputs = np.stack([1 - p, p], axis=1)
    # Bins of width 0.1: {0.05} gap 0.05; {0.15, 0.12} mean 0.135, half positive: gap 0.365;
    # {0.85} gap 0.85; {0.95, 1.0} (1.0 in the last bin) mean 0.975, all positive: gap 0.025.
    expected = (1 * 0.05 + 2 * 0.365 + 1 * 0.85 + 2 * 0.025) / 6
    assert expected_calibration_error("binary", labels, outputs) == pytest.approx(expected)
    bins = reliability_bins(*calibration_pairs("binary", labels, outputs))
    assert [b.count for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 1, 2]
    assert bins[1].confidence == pytest.approx(0.135) and bins[1].frequency == pytest.approx(0.5)


def test_ece_multiclass_uses_the_top_label_confidence():
    outputs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25]])
    labels = np.array([0, 2, 1])  # right at 0.6, wrong at 0.7, wrong at 0.4
    assert expected_calibration_error("multiclass", labels, outputs) == pytest.approx((0.4 + 0.7 + 0.4) / 3)


def test_ece_multilabel_pools_every_label_and_two_bin_counts():
    labels = np.array([[1, 0], [0, 1]])
    outputs = np.array([[0.9, 0.2], [0.3, 0.8]])
    assert expected_calibration_error("multilabel", labels, outputs) == pytest.approx((0.1 + 0.2 + 0.3 + 0.2) / 4)
    # Two bins: [0, 0.5) holds 0.2 and 0.3 (none present), [0.5, 1] holds 0.9 and 0.8 (both).
    assert expected_calibration_error("multilabel", labels, outputs, bins=2) == pytest.approx((2 * 0.25 + 2 * 0.15) / 4)
    assert expected_calibration_error("multilabel", labels, (labels == 1).astype(float)) == 0.0  # certain and right


def test_mean_modality_weight_per_class():
    weights = {"image": np.array([0.2, 0.6, 0.8, 0.5]), "text": np.array([0.8, 0.4, 0.2, 0.5])}
    means = mean_weights_per_class("multiclass", np.array([0, 1, 1, 2]), weights, ["a", "b", "c", "d"])
    np.testing.assert_allclose(means[:3], [[0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    assert np.isnan(means[3]).all()  # no item of class d
    labels = np.array([[1, 0], [1, 1], [0, 0]])
    means = mean_weights_per_class("multilabel", labels, {"image": np.array([0.1, 0.3, 0.9])}, ["x", "y"])
    np.testing.assert_allclose(means, [[0.2], [0.3]])


def test_model_plots_are_pngs(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 40)
    weights = {"efficientnet-lite0": rng.random(40), "minilm": rng.random(40)}
    assert_png(modality_weights("multiclass", labels, weights, ["a", "b", "c"], tmp_path / "w.png", "task"))
    outputs, queries = rng.normal(size=(40, 3, 8)), rng.normal(size=(3, 8))
    for method in ("pca", "tsne"):
        assert_png(class_query_projection("multiclass", labels, outputs, queries, ["a", "b", "c"], tmp_path / f"{method}.png", "t", method=method))
    binary = rng.integers(0, 2, 40)
    assert_png(class_query_projection("binary", binary, outputs[:, :1], queries[:1], ["0", "1"], tmp_path / "b.png", "t"))


def test_learning_curves_series_cover_every_term_and_metric():
    entries = [
        {"epoch": 1, "train_terms": {"task.a": 1.0, "aux.align": 0.2, "total": 1.2}, "val_terms": {"task.a": 0.9, "total": 0.9},
         "val_metrics": {"n": 4, "tasks": {"a": {"task": "a", "n": 4, "metrics": {"accuracy": 0.5}},
                                             "b": {"task": "b", "n": 4, "metrics": {"accuracy": 0.25, "roc_auc": 0.5}}}}},
        {"epoch": 2, "train_terms": {"task.a": 0.5, "aux.align": 0.1, "total": 0.6}, "val_terms": {"task.a": 0.7, "total": 0.7},
         "val_metrics": {"n": 4, "tasks": {"a": {"task": "a", "n": 4, "metrics": {"accuracy": 0.75}},
                                             "b": {"task": "b", "n": 4, "metrics": {"accuracy": 0.5}}}}},
    ]
    assert loss_series(entries) == {
        ("task.a", "train"): [1.0, 0.5], ("task.a", "val"): [0.9, 0.7], ("aux.align", "train"): [0.2, 0.1],
        ("total", "train"): [1.2, 0.6], ("total", "val"): [0.9, 0.7],
    }
    series = validation_series(entries)
    assert series["a.accuracy"] == [0.5, 0.75] and series["b.accuracy"] == [0.25, 0.5]
    assert series["b.roc_auc"][0] == 0.5 and np.isnan(series["b.roc_auc"][1])  # missing in epoch 2


def test_train_plots_writes_learning_curves_beside_the_log(tmp_path):
    store = FeatureStore(tmp_path / "store")  # the suite's MMTK_STORE
    xor_split(tmp_path, store, n_train=80, n_test=20)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", str(tmp_path / "train.jsonl"), "--features", ",".join(FEATURES), "--model", "gmu", "--task", "label",
        "--epochs", "2", "--out", str(run), "--device", "cpu", "--plots", "--json",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["plots"] == [str(run / "learning_curves.png")]
    assert_png(run / "learning_curves.png")
    entries = read_log(run / "train_log.jsonl")
    assert len(entries) == 2
    assert set(loss_series(entries)) == {("task.label", "train"), ("task.label", "val"), ("total", "train"), ("total", "val")}
    assert set(validation_series(entries)) == {"accuracy", "macro_f1", "micro_f1", "weighted_f1", "f1", "roc_auc"}
    plain = CliRunner().invoke(app, [
        "train", str(tmp_path / "train.jsonl"), "--features", ",".join(FEATURES), "--model", "gmu", "--task", "label",
        "--epochs", "1", "--out", str(tmp_path / "plain"), "--device", "cpu", "--quiet",
    ])
    assert plain.exit_code == 0, plain.output
    assert not (tmp_path / "plain" / "learning_curves.png").exists()  # only with --plots


def test_learning_curves_refuse_a_damaged_log(tmp_path):
    (tmp_path / "train_log.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "train\n')
    with pytest.raises(DataError, match=r"train_log.jsonl:2: not a JSON object"):
        plot_learning_curves(tmp_path)
    with pytest.raises(DataError, match="has no train_log.jsonl"):
        plot_learning_curves(tmp_path / "nothing")


def test_plot_predictions_draws_from_the_extras_it_finds(tmp_path):
    from mmtk.evaluate import RunPredictions, TaskPredictions
    from mmtk.plots import plot_predictions

    def predictions(n: int) -> RunPredictions:
        y, outputs, classes = task_data("multiclass", n)
        values, predicted, _ = task_data("regression", n)
        rng = np.random.default_rng(2)
        extras = {
            "explain": {"image": rng.random(n), "text": rng.random(n)},
            "class_queries": {"outputs": {"sentiment": rng.normal(size=(n, 3, 8))}, "queries": {"sentiment": rng.normal(size=(3, 8))}},
        }
        tasks = {
            "sentiment": TaskPredictions("sentiment", "multiclass", classes, y, outputs),
            "memes/score": TaskPredictions("memes/score", "regression", [], values, predicted),
        }
        return RunPredictions(run=None, dataset=None, ids=[str(i) for i in range(n)], tasks=tasks, extras=extras)

    names = [p.name for p in plot_predictions(predictions(30), tmp_path / "many")]
    assert "sentiment_modality_weights.png" in names and "sentiment_class_queries.png" in names
    assert [n for n in names if n.startswith("memes_score_")] == ["memes_score_predicted_vs_true.png"]  # nothing by class
    few = [p.name for p in plot_predictions(predictions(2), tmp_path / "few")]
    assert "sentiment_modality_weights.png" in few and "sentiment_class_queries.png" not in few  # no plane to project onto
