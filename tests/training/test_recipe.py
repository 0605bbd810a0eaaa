"""train() on the training layer end to end: a sequence model through both batch sources,
missing modalities trained and predicted, --model-arg, --task-weight and standardisation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mmtk.data import read_dataset
from mmtk.errors import DataError, UsageError
from mmtk.evaluate import evaluate
from mmtk.predict import predict
from mmtk.store import FeatureStore
from mmtk.train import train
from sequence_data import SEQ_FEATURES, sequence_dataset
from synthetic_features import FEATURES, xor_split

FAST = {"epochs": 15, "lr": 1e-2, "patience": 15, "batch_size": 16, "device": "cpu"}


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "store")


def weights(run):
    return load_file(str(run / "model.safetensors"))


def test_a_sequence_model_trains_through_both_batch_sources_to_the_same_weights(tmp_path, store):
    dataset = sequence_dataset(tmp_path, store, n=120)
    runs = {}
    for budget in ("1G", "1K"):
        report = train(dataset, features=SEQ_FEATURES, model="attention-pool", tasks=["label"], out=tmp_path / budget,
                       store=store, max_memory=budget, standardize=True, **FAST)
        runs[report.batch_source] = report
    assert set(runs) == {"memory", "store"}
    assert runs["memory"].val_metrics["metrics"]["accuracy"] > 0.8
    a, b = weights(runs["memory"].run), weights(runs["store"].run)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    config = json.loads((runs["store"].run / "config.json").read_text())
    assert config["training"]["batch_source"] == "store"
    assert config["model"]["inputs"][0] == {"name": "minilm:seq", "dim": 6, "kind": "sequence", "max_len": 9}
    assert config["preprocessing"]["pool"] is None
    # evaluate and predict read the sequences the same way.
    result = evaluate(runs["store"].run, dataset, store=store, device="cpu")
    assert result["metrics"]["accuracy"] > 0.8


def test_missing_modalities_train_and_predict(tmp_path, store):
    dataset = sequence_dataset(tmp_path, store, n=120, blank_texts=20)
    with pytest.raises(DataError, match=r"data.jsonl:1 \(item '0'\): no text value for feature minilm:seq \(20 such items\); .*--missing-modality"):
        train(dataset, features=["minilm:seq"], model="gmu", tasks=["label"], out=tmp_path / "refused", store=store, **FAST)
    runs = {}
    for policy in ("skip", "zero", "mask"):
        runs[policy] = train(dataset, features=SEQ_FEATURES, model="gmu", tasks=["label"], out=tmp_path / policy, store=store,
                             missing_modality=policy, standardize=True, **FAST)
    assert runs["skip"].train_items + runs["skip"].val_items == 100
    assert json.loads((runs["skip"].run / "config.json").read_text())["training"]["dataset_items"] == 100
    assert [bad.item for bad in runs["skip"].skipped] == [str(i) for i in range(20)]
    assert "no minilm:seq input" in runs["skip"].skipped[0].reason
    assert runs["mask"].train_items + runs["mask"].val_items == 120
    unread = read_dataset(tmp_path / "data.jsonl", optional=["text"])
    for policy in ("zero", "mask"):
        records = predict(runs[policy].run, unread, store=store, device="cpu", explain=True)
        assert len(records) == 120
    masked = predict(runs["mask"].run, unread, store=store, device="cpu", explain=True)
    # The gate gives an absent modality weight 0: all of it goes to the image.
    assert all(r["explain"]["minilm:seq"] == 0.0 and r["explain"]["efficientnet-lite0"] == pytest.approx(1.0) for r in masked[:20])
    assert all(r["explain"]["minilm:seq"] > 0.0 for r in masked[20:])
    # skip leaves the items without text out of the predictions too.
    assert len(predict(runs["skip"].run, str(tmp_path / "data.jsonl"), store=store, device="cpu")) == 100


def test_model_args_are_checked_against_the_builder_and_recorded(tmp_path, store):
    train_ds, test_ds = xor_split(tmp_path, store, n_train=80, n_test=40)
    with pytest.raises(UsageError, match=r"model 'gmu' has no parameter 'width'.*valid --model-arg keys: hidden \(default 256\), dropout"):
        train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "x", store=store, model_args={"width": "8"})
    with pytest.raises(UsageError, match="wants a int for hidden"):
        train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "x", store=store, model_args={"hidden": "wide"})
    report = train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "run", store=store,
                   val_dataset=test_ds, model_args={"hidden": "12"}, epochs=2)
    config = json.loads((report.run / "config.json").read_text())
    assert config["model"]["params"] == {"hidden": 12, "dropout": 0.2}
    assert weights(report.run)["projections.0.weight"].shape[0] == 12


def test_task_weights_weight_each_task_in_the_total(tmp_path, store):
    train_ds, test_ds = xor_split(tmp_path, store, n_train=80, n_test=40)
    common = {"features": FEATURES, "model": "concat", "tasks": ["label", "q:regression"], "store": store,
              "val_dataset": test_ds, "epochs": 1, "hidden": 8}
    plain = train(train_ds, out=tmp_path / "plain", **common).log[0]
    weighted = train(train_ds, out=tmp_path / "weighted", task_weights={"label": 0.25, "q": 2.0}, **common).log[0]
    terms = weighted["val_terms"]
    assert terms["total"] == pytest.approx(0.25 * terms["task.label"] + 2.0 * terms["task.q"], rel=1e-5)
    assert plain["val_terms"]["total"] == pytest.approx(plain["val_terms"]["task.label"] + plain["val_terms"]["task.q"], rel=1e-5)
    with pytest.raises(UsageError, match="--task-weight names no task 'sentiment'"):
        train(train_ds, out=tmp_path / "bad", task_weights={"sentiment": 1.0}, **common)


def test_standardisation_is_saved_and_applied_at_prediction(tmp_path, store):
    train_ds, test_ds = xor_split(tmp_path, store, n_train=80, n_test=40)
    report = train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "run", store=store,
                   val_dataset=test_ds, standardize=True, epochs=3, hidden=8)
    stats = json.loads((report.run / "config.json").read_text())["preprocessing"]["standardize"]
    assert set(stats) == set(FEATURES) and len(stats["minilm"]["mean"]) == 8
    # Evaluation on the validation set reproduces the best epoch's validation metrics.
    assert evaluate(report.run, test_ds, store=store, device="cpu")["metrics"] == pytest.approx(report.val_metrics["metrics"])


def test_the_cli_trains_and_predicts_items_without_a_modality(tmp_path, store):
    import subprocess
    import sys

    sequence_dataset(tmp_path, store, n=60, blank_texts=10)
    common = ["--store", str(tmp_path / "store"), "--device", "cpu", "--quiet"]
    data = str(tmp_path / "data.jsonl")
    refused = subprocess.run([sys.executable, "-m", "mmtk", "train", data, "--features", ",".join(SEQ_FEATURES), "--model", "gmu",
                              "--task", "label", "--out", str(tmp_path / "r0"), *common], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "empty text" in refused.stderr
    trained = subprocess.run([sys.executable, "-m", "mmtk", "train", data, "--features", ",".join(SEQ_FEATURES), "--model", "gmu",
                              "--task", "label", "--out", str(tmp_path / "run"), "--missing-modality", "mask", "--epochs", "2",
                              *common], capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    predicted = subprocess.run([sys.executable, "-m", "mmtk", "predict", str(tmp_path / "run"), data, "--explain", *common],
                               capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(records) == 60 and records[0]["explain"]["minilm:seq"] == 0.0


def test_a_runs_outputs_are_a_feature_source(tmp_path, store):
    train_ds, test_ds = xor_split(tmp_path, store, n_train=200, n_test=60)
    member = train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "member", store=store,
                   val_dataset=test_ds, epochs=40, hidden=16, lr=1e-2, patience=40)
    ref = f"run:{member.run}"
    stacked = train(train_ds, features=[ref], model="concat", tasks=["label"], out=tmp_path / "stacked", store=store,
                    val_dataset=test_ds, epochs=20, hidden=8, lr=1e-2)
    config = json.loads((stacked.run / "config.json").read_text())
    assert config["features"][0]["modality"] == "run" and config["model"]["input_dims"] == {ref: 1}  # p(positive)
    result = evaluate(stacked.run, test_ds, store=store, device="cpu")
    assert result["metrics"]["accuracy"] >= member.val_metrics["metrics"]["accuracy"] - 0.05
