"""The tabular feature through train -> run directory -> evaluate/predict, with text
features that carry no signal, so every correct answer comes from the tabular columns."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mmtk.data import read_dataset
from mmtk.errors import UsageError
from mmtk.evaluate import evaluate
from mmtk.predict import predict
from mmtk.runs import load_run
from mmtk.store import FeatureStore
from mmtk.tabular import TabularSpec, fit_tabular
from mmtk.train import split_indices, train
from tabular_listings import listing_rows, store_noise_text_features, write_csv

FAST = {"epochs": 60, "hidden": 32, "dropout": 0.0, "lr": 1e-2, "patience": 60, "device": "cpu"}
SPEC = TabularSpec(cat_cols=("kind",), num_cols=("age", "fee"), scaling="quantile")


@pytest.fixture(scope="module")
def listings(tmp_path_factory):
    """Train / validation / test listings with stored (noise) text features. The
    validation set holds an outlier age and a kind that training never sees."""
    folder = tmp_path_factory.mktemp("listings")
    store = FeatureStore(folder / "store")
    val_rows = listing_rows(80, seed=2)
    val_rows[0].update(age="250", kind="castle")
    sets = {
        "train": read_dataset(write_csv(folder / "train.csv", listing_rows(300, seed=1, missing_every=10))),
        "val": read_dataset(write_csv(folder / "val.csv", val_rows)),
        "test": read_dataset(write_csv(folder / "test.csv", listing_rows(120, seed=3, kinds=("flat", "house", "loft", "castle"), missing_every=7))),
    }
    for seed, dataset in enumerate(sets.values()):
        store_noise_text_features(dataset, store, seed)
    return folder, store, sets


def test_preprocessor_is_fitted_on_the_training_split_only(listings, tmp_path):
    _, store, sets = listings
    train(sets["train"], features=["minilm", "tabular"], model="concat", tasks=["label"], out=tmp_path / "run",
          store=store, val_dataset=sets["val"], tabular=SPEC, **FAST)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["tabular"]
    assert recorded == fit_tabular(SPEC, sets["train"]).to_json()
    age = recorded["numerical"][0]
    assert max(age["params"]["quantiles"]) <= 10  # the validation outlier (250) is not in
    assert "castle" not in recorded["categorical"][0]["categories"]
    # With an internal split too: exactly the training part is fitted.
    spec = TabularSpec(num_cols=("age",), scaling="minmax")
    train(sets["train"], features=["minilm", "tabular"], model="concat", tasks=["label"], out=tmp_path / "split",
          store=store, val_split=0.5, tabular=spec, **{**FAST, "epochs": 2})
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    labels = [r.values["label"] for r in sets["train"].records]
    train_idx, val_idx = split_indices(labels, 0.5, FAST.get("seed", 0), "train.csv")  # train()'s stratified split
    assert config["training"]["train_items"] == len(train_idx) == 150
    assert config["tabular"] == fit_tabular(spec, sets["train"].subset(train_idx)).to_json()
    assert config["tabular"] != fit_tabular(spec, sets["train"]).to_json()


def test_run_round_trip_predicts_identically_without_training_data(listings, tmp_path):
    folder, store, sets = listings
    run = tmp_path / "run"
    report = train(sets["train"], features=["minilm", "tabular"], model="gmu", tasks=["label"], out=run, store=store,
                   val_dataset=sets["val"], tabular=SPEC, **FAST)
    config = json.loads((run / "config.json").read_text())
    assert [f["ref"] for f in config["features"]] == ["minilm", "tabular"]
    assert config["model"]["input_dims"]["tabular"] == 2 + 2 + 4 == load_run(run).tabular.dim
    # Validation metrics recorded at training time are reproduced from the run alone.
    assert evaluate(run, sets["val"], store=store, device="cpu") == report.val_metrics
    before = predict(run, folder / "test.csv", store=store, device="cpu", explain=True)

    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    (folder / "train.csv").rename(folder / "train.csv.hidden")
    try:
        after = predict(moved, folder / "test.csv", store=store, device="cpu", explain=True)
    finally:
        (folder / "train.csv.hidden").rename(folder / "train.csv")
    assert after == before
    assert set(before[0]["explain"]) == {"minilm", "tabular"}
    # The label depends on the tabular columns only, and castles were never seen.
    result = evaluate(moved, sets["test"], store=store, device="cpu")
    assert result["metrics"]["accuracy"] > 0.85


def test_regression_with_tabular_beats_the_mean(listings, tmp_path):
    _, store, sets = listings
    train(sets["train"], features=["minilm", "tabular"], model="concat", tasks=["price:regression"], out=tmp_path / "run",
          store=store, val_dataset=sets["val"], tabular=SPEC, **FAST)
    result = evaluate(tmp_path / "run", sets["test"], store=store, device="cpu")
    prices = np.array([float(r.values["price"]) for r in sets["test"].records])
    mean_rmse = float(np.sqrt(np.mean((prices - np.mean([float(r.values["price"]) for r in sets["train"].records])) ** 2)))
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    assert result["metrics"]["rmse"] < mean_rmse
    values = predict(tmp_path / "run", sets["test"], store=store, device="cpu")
    assert all(set(record) == {"id", "value"} for record in values)
    # Where the age is given and the kind known, the price is all but determined.
    errors = np.array([record["value"] for record in values]) - prices
    complete = np.array([bool(r.values["age"]) and r.values["kind"] != "castle" for r in sets["test"].records])
    assert float(np.sqrt(np.mean(errors[complete] ** 2))) < 0.3 * mean_rmse


def test_tabular_needs_its_columns_and_keeps_labels_out(listings, tmp_path):
    _, store, sets = listings
    common = {"model": "concat", "out": tmp_path / "run", "store": store, **FAST}
    with pytest.raises(UsageError, match="feature tabular needs its columns"):
        train(sets["train"], features=["minilm", "tabular"], tasks=["label"], **common)
    with pytest.raises(UsageError, match="does not list tabular"):
        train(sets["train"], features=["minilm"], tasks=["label"], tabular=SPEC, **common)
    with pytest.raises(UsageError, match="both a tabular input and a label"):
        train(sets["train"], features=["tabular"], tasks=["price:regression"], tabular=TabularSpec(num_cols=("price",)), **common)
