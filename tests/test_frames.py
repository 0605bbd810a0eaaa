"""mmtk.frames: predictions, metrics and features as DataFrames, and DataFrames as the
datasets of train / evaluate / predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmtk.data import read_dataset
from mmtk.evaluate import evaluate
from mmtk.frames import features_frame, metrics_frame, predictions_frame
from mmtk.predict import predict
from mmtk.store import FeatureStore
from mmtk.train import train
from synthetic_features import FEATURES, IMAGE_DIM, TEXT_DIM, xor_split

TINY = {"epochs": 3, "hidden": 8, "dropout": 0.1, "patience": 3}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    store = FeatureStore(folder / "store")
    train_ds, test_ds = xor_split(folder, store, n_train=40, n_test=10)
    train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=folder / "gmu", store=store, **TINY)
    train(train_ds, features=FEATURES, model="concat", tasks=["label", "bits=p,q:multilabel"], out=folder / "mt", store=store, **TINY)
    return folder, store, test_ds


def test_predictions_frame_has_one_row_per_record(made):
    folder, store, test_ds = made
    records = predict(folder / "gmu", test_ds, store=store, explain=True)
    frame = predictions_frame(records)
    assert list(frame.index) == test_ds.ids and frame.index.name == "id"
    assert list(frame.columns) == ["label", "prob_0", "prob_1", "explain_efficientnet-lite0", "explain_minilm"]
    assert frame["label"].tolist() == [record["label"] for record in records]
    assert frame["prob_1"].tolist() == [record["probs"]["1"] for record in records]


def test_predictions_frame_keeps_multi_label_lists_per_task(made):
    folder, store, test_ds = made
    records = predict(folder / "mt", test_ds, store=store)
    frame = predictions_frame(records)
    assert {"label.label", "label.prob_1", "bits.labels", "bits.prob_p", "bits.prob_q"} <= set(frame.columns)
    assert frame["bits.labels"].tolist() == [record["tasks"]["bits"]["labels"] for record in records]


def test_metrics_frame_one_row_per_task(made):
    folder, store, test_ds = made
    single = evaluate(folder / "gmu", test_ds, store=store)
    frame = metrics_frame(single)
    assert list(frame.index) == ["label"] and frame.loc["label", "n"] == 10
    assert frame.loc["label"].drop("n").to_dict() == single["metrics"]
    several = metrics_frame(evaluate(folder / "mt", test_ds, store=store))
    assert list(several.index) == ["label", "bits"]
    assert np.isnan(several.loc["bits", "roc_auc"]) and np.isnan(several.loc["label", "samples_ap"])
    assert not np.isnan(several.loc["bits", "samples_ap"])


def test_features_frame_is_the_gathered_arrays_by_id(made):
    _, store, test_ds = made
    frame = features_frame(test_ds, FEATURES, store)
    assert frame.shape == (10, IMAGE_DIM + TEXT_DIM) and list(frame.index) == test_ds.ids
    assert list(frame.columns[:2]) == ["efficientnet-lite0_0", "efficientnet-lite0_1"] and frame.columns[-1] == f"minilm_{TEXT_DIM - 1}"
    from mmtk.features import load_features

    arrays = load_features(test_ds, FEATURES, store)
    np.testing.assert_array_equal(frame.to_numpy(), np.concatenate([arrays["efficientnet-lite0"], arrays["minilm"]], axis=1))


def test_a_dataframe_is_a_dataset_for_predict_and_evaluate(made, monkeypatch):
    folder, store, test_ds = made
    frame = pd.read_json(test_ds.source, lines=True)
    from_file = predict(folder / "gmu", test_ds, store=store)
    monkeypatch.chdir(folder)  # the frame's image paths are relative to the data folder
    assert predict(folder / "gmu", frame, store=store) == from_file
    assert evaluate(folder / "gmu", read_dataset(frame, root=folder), store=store) == evaluate(folder / "gmu", test_ds, store=store)
