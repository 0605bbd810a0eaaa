"""Runs written before the training layer (tests/training/fixtures, see its README) still
load and predict exactly as they did, and the new loop with the old settings trains the
same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmtk.predict import predict
from mmtk.runs import load_run
from mmtk.store import FeatureStore
from mmtk.train import train
from synthetic_features import FEATURES, xor_split

FIXTURES = Path(__file__).parent / "fixtures"
MADE_WITH = {"epochs": 3, "hidden": 8, "dropout": 0.1, "lr": 1e-2, "seed": 5}
TASKS = {"gmu": ["label", "q:regression"], "concat": ["label"]}


@pytest.fixture
def data(tmp_path):
    store = FeatureStore(tmp_path / "store")
    return (*xor_split(tmp_path, store, n_train=60, n_test=30), store)


@pytest.mark.parametrize("model", ["gmu", "concat"])
def test_a_previous_run_predicts_what_it_predicted(data, model):
    _, test_ds, store = data
    records = predict(FIXTURES / f"previous_{model}", test_ds, store=store, explain=model == "gmu", device="cpu")
    expected = [json.loads(line) for line in (FIXTURES / f"previous_{model}.predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [e["id"] for e in expected]
    assert json.dumps(records) == json.dumps(expected)  # every probability, to the last digit


@pytest.mark.parametrize("model", ["gmu", "concat"])
def test_the_new_loop_with_the_old_settings_trains_the_same_weights(tmp_path, data, model):
    train_ds, test_ds, store = data
    report = train(train_ds, features=FEATURES, model=model, tasks=TASKS[model], out=tmp_path / "run", store=store,
                   val_dataset=test_ds, device="cpu", schedule="constant", standardize=False, **MADE_WITH)
    old, new = load_run(FIXTURES / f"previous_{model}"), load_run(report.run)
    old_state, new_state = old.model.state_dict(), new.model.state_dict()
    assert old_state.keys() == new_state.keys()
    assert all(torch.equal(old_state[k], new_state[k]) for k in old_state)
    previous_log = [json.loads(line) for line in (FIXTURES / f"previous_{model}" / "train_log.jsonl").read_text().splitlines()]
    assert [(e["train_loss"], e["val_loss"]) for e in report.log] == [(e["train_loss"], e["val_loss"]) for e in previous_log]
