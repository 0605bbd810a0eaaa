"""Regression on text + tabular columns from the shell, with the real offline minilm:
extract-features -> train --task price:regression -> evaluate (rmse/mae) -> predict
("value"), and train --columns column_info.json taking roles and label from the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tabular_listings import listing_rows, write_column_info, write_csv

pytestmark = pytest.mark.slow


def mmtk(*args: str, store: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MMTK_STORE=str(store))
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def listings(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    store = work / "store"
    train = write_csv(work / "train.csv", listing_rows(160, seed=1, missing_every=9))
    test = write_csv(work / "test.csv", listing_rows(60, seed=2, missing_every=9))
    for data in (train, test):
        result = mmtk("extract-features", str(data), "--backbone", "minilm", "--json", store=store)
        assert result.returncode == 0, result.stderr
    return work, store, train, test


def test_regression_end_to_end_beats_the_mean(listings):
    work, store, train, test = listings
    run = work / "price"
    result = mmtk(
        "train", str(train), "--features", "minilm,tabular", "--cat-cols", "kind", "--num-cols", "age,fee",
        "--scaling", "standard", "--model", "gmu", "--task", "price:regression", "--out", str(run),
        "--epochs", "80", "--lr", "0.01", "--hidden", "32", "--json", store=store,
    )
    assert result.returncode == 0, result.stderr
    result = mmtk("evaluate", str(run), str(test), "--json", store=store)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    train_mean = float(np.mean([float(row["price"]) for row in _rows(train)]))
    prices = np.array([float(row["price"]) for row in _rows(test)])
    assert metrics["rmse"] < 0.6 * float(np.sqrt(np.mean((prices - train_mean) ** 2)))
    assert metrics["mae"] <= metrics["rmse"]

    result = mmtk("predict", str(run), str(test), store=store)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == [row["id"] for row in _rows(test)]
    values = np.array([r["value"] for r in records])
    assert np.sqrt(np.mean((values - prices) ** 2)) == pytest.approx(metrics["rmse"], rel=1e-5)


def test_columns_file_names_roles_and_label(listings):
    work, store, train, test = listings
    info = write_column_info(work / "column_info.json", label="price")
    run = work / "from-file"
    result = mmtk(
        "train", str(train), "--features", "minilm,tabular", "--columns", str(info), "--model", "gmu",
        "--out", str(run), "--epochs", "80", "--lr", "0.01", "--hidden", "32", "--json", store=store,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "config.json").read_text())
    # label_col is the task; fractional prices make it a regression without ':regression'.
    assert [(t["name"], t["kind"]) for t in config["tasks"]] == [("price", "regression")]
    assert config["tabular"]["spec"]["cat_cols"] == ["kind"] and config["tabular"]["spec"]["num_cols"] == ["age", "fee"]
    result = mmtk("evaluate", str(run), str(test), "--json", store=store)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["r2"] > 0.5


def test_tabular_is_not_an_extracted_backbone(listings):
    _, store, train, _ = listings
    result = mmtk("extract-features", str(train), "--backbone", "tabular", store=store)
    assert result.returncode == 2
    assert "fitted on the training split" in result.stderr and "--features BACKBONE,tabular" in result.stderr


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
