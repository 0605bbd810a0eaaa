"""evaluate and predict on a trained run: the JSON shapes scripts rely on (docs/ARCHITECTURE.md, "Evaluate and predict"),
plots, explain, CSV output, round trips through the run directory, and refusals."""

from __future__ import annotations

import csv
import json
import pickle
import shutil

import numpy as np
import pytest

from mmtk.errors import DataError, UsageError
from mmtk.evaluate import evaluate
from mmtk.metrics import METRICS, check_thresholds, parse_fail_under
from mmtk.plots import plot_task
from mmtk.predict import flatten_record, predict, write_predictions
from mmtk.runs import load_run
from mmtk.store import FeatureStore
from mmtk.train import train
from synthetic_features import FEATURES, store_xor_features, write_xor_dataset, xor_split

FAST = {"epochs": 40, "hidden": 32, "dropout": 0.1, "lr": 1e-2, "patience": 40}


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "store")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One GMU run for the module (trained with the test set as validation set), its
    store and datasets. Tests that change the run work on a copy (see ``trained``)."""
    folder = tmp_path_factory.mktemp("gmu")
    shared_store = FeatureStore(folder / "store")
    train_ds, test_ds = xor_split(folder, shared_store)
    train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=folder / "gmu", store=shared_store, val_dataset=test_ds, **FAST)
    return folder, shared_store, train_ds, test_ds


@pytest.fixture
def shared_store(shared):
    return shared[1]


@pytest.fixture
def trained(shared, tmp_path):
    """(a copy of the shared run in this test's tmp_path, train set, test set)."""
    folder, _, train_ds, test_ds = shared
    shutil.copytree(folder / "gmu", tmp_path / "gmu")
    return tmp_path / "gmu", train_ds, test_ds


def test_evaluate_json_shape_and_values(trained, shared_store, tmp_path):
    run, _, test_ds = trained
    result = evaluate(run, test_ds, store=shared_store, device="cpu")
    assert list(result) == ["task", "n", "metrics"]
    assert result["task"] == "label" and result["n"] == 200
    assert list(result["metrics"]) == list(METRICS["binary"])
    assert result["metrics"]["accuracy"] > 0.9
    # Round trip: the reloaded run scores the validation set exactly as training did.
    assert result == json.loads((run / "metrics.json").read_text())
    json.dumps(result)  # plain JSON types only
    assert check_thresholds(result, [parse_fail_under("macro_f1=0.8")]) == []
    assert check_thresholds(result, [parse_fail_under("accuracy=0.999")])[0].startswith("accuracy = ")


def test_evaluate_multi_task_nests_one_object_per_task(tmp_path, store):
    train_ds, test_ds = xor_split(tmp_path, store)
    train(train_ds, features=FEATURES, model="concat", tasks=["label", "bits=p,q:multilabel"], out=tmp_path / "mt", store=store, **FAST)
    result = evaluate(tmp_path / "mt", test_ds, store=store)
    assert list(result) == ["n", "tasks"] and result["n"] == 200
    assert list(result["tasks"]) == ["label", "bits"]
    for name, entry in result["tasks"].items():
        assert list(entry) == ["task", "n", "metrics"] and entry["task"] == name and entry["n"] == 200
    assert set(result["tasks"]["bits"]["metrics"]) == set(METRICS["multilabel"])
    assert result["tasks"]["bits"]["metrics"]["macro_ap"] > 0.9
    with pytest.raises(UsageError, match="several tasks"):
        check_thresholds(result, [parse_fail_under("macro_f1=0.5")])
    assert check_thresholds(result, [parse_fail_under("bits.micro_f1=0.8")]) == []

    (record,) = predict(tmp_path / "mt", test_ds.subset([0]), store=store)
    assert list(record) == ["id", "tasks"]
    assert list(record["tasks"]["label"]) == ["label", "probs"]
    assert list(record["tasks"]["bits"]) == ["labels", "probs"]
    assert set(record["tasks"]["bits"]["probs"]) == {"p", "q"}
    truth = [b for b in ("p", "q") if test_ds.records[0].values[b]]
    assert record["tasks"]["bits"]["labels"] == truth
    assert list(flatten_record(record)) == [
        "id", "label.label", "label.prob_0", "label.prob_1", "bits.labels", "bits.prob_p", "bits.prob_q",
    ]
    assert flatten_record(record)["bits.labels"] == "|".join(truth)


def test_evaluate_writes_plots(trained, shared_store, tmp_path):
    run, _, test_ds = trained
    result = evaluate(run, test_ds, store=shared_store, plots_dir=tmp_path / "plots")
    names = sorted(p.rsplit("/", 1)[-1] for p in result["plots"])
    assert names == [
        "confusion_matrix.png", "confusion_matrix_normalized.png", "modality_weights.png", "per_class_f1.png", "pr_curve.png",
        "reliability.png", "roc_curve.png",
    ]
    for path in result["plots"]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_needs_labels(trained, shared_store, tmp_path):
    run, _, test_ds = trained
    unlabelled = write_xor_dataset(tmp_path, "new", 5, seed=9, labels=False)
    with pytest.raises(DataError, match="evaluation needs the label column label"):
        evaluate(run, unlabelled, store=shared_store)


def test_predict_records_and_explain(trained, shared_store, tmp_path):
    run, _, _ = trained
    path = write_xor_dataset(tmp_path, "new", 20, seed=9, labels=False)
    from mmtk.data import read_dataset

    store_xor_features(read_dataset(path), shared_store, seed=10)
    records = predict(run, path, store=shared_store, explain=True)
    assert len(records) == 20
    first = records[0]
    assert list(first) == ["id", "label", "probs", "explain"]
    assert first["id"] == "new-0"
    assert first["label"] in (0, 1)
    assert set(first["probs"]) == {"0", "1"} and sum(first["probs"].values()) == pytest.approx(1)
    assert first["label"] == max((0, 1), key=lambda c: first["probs"][str(c)])
    assert set(first["explain"]) == set(FEATURES) and sum(first["explain"].values()) == pytest.approx(1)
    correct = [r["label"] == (row.values["p"] ^ row.values["q"]) for r, row in zip(records, read_dataset(path).records)]
    assert sum(correct) >= 16
    assert "explain" not in predict(run, path, store=shared_store)[0]


def test_predictions_as_jsonl_and_csv(trained, shared_store, tmp_path):
    run, _, test_ds = trained
    records = predict(run, test_ds.subset(range(3)), store=shared_store, explain=True)
    write_predictions(records, tmp_path / "p.jsonl", fmt="jsonl")
    assert [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()] == records
    write_predictions(records, tmp_path / "p.csv", fmt="csv")
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert list(rows[0]) == ["id", "label", "prob_0", "prob_1", "explain_efficientnet-lite0", "explain_minilm"]
    assert rows[1]["id"] == records[1]["id"] and float(rows[1]["prob_1"]) == pytest.approx(records[1]["probs"]["1"])
    with pytest.raises(UsageError, match="unknown prediction format"):
        write_predictions(records, tmp_path / "p.xml", fmt="xml")


def test_predict_to_stdout(trained, shared_store, capsys):
    run, _, test_ds = trained
    write_predictions(predict(run, test_ds.subset([0, 1]), store=shared_store), "-")
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["test-0", "test-1"]


def test_explain_needs_a_model_with_modality_weights(tmp_path, store):
    train_ds, test_ds = xor_split(tmp_path, store, n_train=60, n_test=10)
    train(train_ds, features=FEATURES, model="concat", tasks=["label"], out=tmp_path / "c", store=store, epochs=1, hidden=4)
    with pytest.raises(UsageError, match="model 'concat'.*has no per-modality weights.*gmu"):
        predict(tmp_path / "c", test_ds, store=store, explain=True)


def test_a_copied_run_predicts_identically_without_unpickling(trained, shared_store, tmp_path, monkeypatch):
    import torch

    run, _, test_ds = trained
    before = predict(run, test_ds, store=shared_store)
    shutil.copytree(run, tmp_path / "copy")
    shutil.rmtree(run)

    def refuse(*args, **kwargs):
        raise AssertionError("a run must load without pickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert predict(tmp_path / "copy", test_ds, store=shared_store) == before


def test_a_changed_backbone_fingerprint_is_refused(trained, shared_store):
    run, _, test_ds = trained
    config = json.loads((run / "config.json").read_text())
    config["features"][1]["fingerprint"] = "0" * 64
    (run / "config.json").write_text(json.dumps(config))
    for call in (lambda: predict(run, test_ds, store=shared_store), lambda: evaluate(run, test_ds, store=shared_store)):
        with pytest.raises(UsageError, match="minilm features with backbone fingerprint 000000000000.*retrain"):
            call()


def test_not_a_run_directory(tmp_path, store):
    with pytest.raises(UsageError, match=f"{tmp_path / 'nope'} is not an mmtk run directory.*mmtk train .*--out"):
        load_run(tmp_path / "nope")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot be read as JSON"):
        load_run(tmp_path / "broken")


def test_regression_runs_predict_values_in_target_units(tmp_path, store):
    train_ds, test_ds = xor_split(tmp_path, store)
    train(train_ds, features=FEATURES, model="gmu", tasks=["q:regression"], out=tmp_path / "reg", store=store, **FAST)
    records = predict(tmp_path / "reg", test_ds, store=store)
    assert list(records[0]) == ["id", "value"]
    errors = [abs(r["value"] - row.values["q"]) for r, row in zip(records, test_ds.records)]
    assert np.mean(errors) < 0.2  # standardised for training, back in 0/1 units here
    result = evaluate(tmp_path / "reg", test_ds, store=store, plots_dir=tmp_path / "plots")
    assert list(result["metrics"]) == ["rmse", "mae", "r2"]
    assert [p.rsplit("/", 1)[-1] for p in result["plots"]] == ["predicted_vs_true.png"]


def test_multilabel_plots_per_label_average_precision(tmp_path):
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.7], [0.1, 0.4]])
    path, *others = plot_task("multilabel", y, probs, ["shaming", "violence"], tmp_path, prefix="hate_")
    assert path.name == "hate_average_precision.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert all(other.name.startswith("hate_") for other in others)  # the rest: tests/test_plots.py
