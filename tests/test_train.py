"""train: fusion on stored features, the run directory it writes, early stopping, class
weights, seeds, splits, and refusing what it must refuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmtk.errors import DataError, StoreError, UsageError
from mmtk.models.objectives import balancing_weights
from mmtk.training import TaskLoss
from mmtk.store import FeatureStore
from mmtk.train import split_indices, train
from synthetic_features import FEATURES, IMAGE_DIM, TEXT_DIM, xor_split

FAST = {"epochs": 40, "hidden": 32, "dropout": 0.1, "lr": 1e-2, "patience": 40}


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "store")


@pytest.fixture
def data(tmp_path, store):
    return xor_split(tmp_path, store)


def test_gmu_learns_the_xor_label_and_one_modality_cannot(tmp_path, store, data):
    from mmtk.evaluate import evaluate

    # Scored on test items that early stopping never saw: the best of 40 epochs on the
    # validation set itself would flatter the text-only model (a chance-level metric's
    # maximum over epochs).
    train_ds, test_ds = data
    accuracy = {}
    for name, features in (("both", FEATURES), ("text", ["minilm"])):
        train(train_ds, features=features, model="gmu", tasks=["label"], out=tmp_path / name, store=store, **FAST)
        accuracy[name] = evaluate(tmp_path / name, test_ds, store=store, device="cpu")["metrics"]["accuracy"]
    assert accuracy["both"] > 0.9
    assert accuracy["text"] < 0.65


def test_run_directory_holds_config_weights_metrics_and_log(tmp_path, store, data):
    train_ds, _ = data
    report = train(train_ds, features=FEATURES, model="concat", tasks=["label:binary"], out=tmp_path / "run", store=store, seed=3, **FAST)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "train_log.jsonl"]
    config = json.loads((run / "config.json").read_text())
    assert config["mmtk_version"] and config["format"] == "mmtk-run/1"
    assert config["model"] == {
        "name": "concat", "params": {"hidden": 32, "dropout": 0.1}, "hyperparameters": {"hidden": 32, "dropout": 0.1},
        "input_dims": {"efficientnet-lite0": IMAGE_DIM, "minilm": TEXT_DIM}, "heads": {"label": 1},
        "inputs": [
            {"name": "efficientnet-lite0", "dim": IMAGE_DIM, "kind": "vector", "max_len": None},
            {"name": "minilm", "dim": TEXT_DIM, "kind": "vector", "max_len": None},
        ],
    }
    image, text = config["features"]
    assert (image["ref"], image["modality"], image["dataset_column"], image["column"]) == ("efficientnet-lite0", "image", "img", None)
    assert (text["ref"], text["modality"], text["dataset_column"]) == ("minilm", "text", "text")
    assert len(image["fingerprint"]) == 64
    (task,) = config["tasks"]
    assert task["kind"] == "binary" and task["encoder"]["classes"] == [0, 1]
    training = config["training"]
    assert (training["seed"], training["dataset_items"], training["train_items"] + training["val_items"]) == (3, 400, 400)
    assert training["val_items"] == 80  # a stratified 0.2 split
    assert training["best_epoch"] == report.best_epoch
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"task", "n", "metrics"} and metrics["n"] == 80
    assert metrics == report.val_metrics
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == report.epochs_run == 40
    assert set(log[0]) == {"epoch", "train_loss", "val_loss", "val_metrics", "train_terms", "val_terms", "lr", "seconds"}
    assert set(log[0]["train_terms"]) == {"task.label", "total"} and log[0]["train_terms"]["total"] == log[0]["train_loss"]
    # --monitor auto on a binary task: the best validation macro-F1, ties to the lower loss.
    assert (training["monitor"], training["monitor_option"], report.monitor) == ("macro_f1", "auto", "macro_f1")
    best = max(log, key=lambda entry: (entry["val_metrics"]["metrics"]["macro_f1"], -entry["val_loss"]))
    assert best["epoch"] == report.best_epoch and best["val_metrics"] == metrics


def test_early_stopping_stops_on_a_plateau_and_keeps_the_best_epoch(tmp_path, store, data):
    train_ds, _ = data
    # Label "p" lives in the image features only; with text alone validation loss
    # cannot improve for long, so training stops well before the epoch limit.
    report = train(train_ds, features=["minilm"], model="concat", tasks=["p"], out=tmp_path / "run", store=store,
                   epochs=200, patience=3, hidden=16, lr=1e-2)
    assert report.epochs_run < 200
    assert report.epochs_run == report.best_epoch + 3
    log = report.log
    assert all(entry["val_loss"] >= log[report.best_epoch - 1]["val_loss"] for entry in log[report.best_epoch:])


def test_class_weights_change_the_loss():
    targets = np.array([0, 0, 0, 1])
    assert balancing_weights("binary", targets, 2).tolist() == [3.0]
    assert balancing_weights("multiclass", np.array([0, 0, 0, 1, 2, 2]), 3).tolist() == pytest.approx([2 / 3, 2, 1])
    assert balancing_weights("multilabel", np.array([[1, 0], [0, 0], [1, 0], [1, 1]]), 2).tolist() == pytest.approx([1 / 3, 3])
    logits = torch.tensor([[0.2], [-0.3], [0.1], [-0.4]])
    y = torch.tensor(targets, dtype=torch.float32)
    plain = TaskLoss("binary")(logits, y)
    weighted = TaskLoss("binary", torch.tensor([3.0]))(logits, y)
    assert weighted > plain
    multi_logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    multi_y = torch.tensor([0, 0, 0, 1, 2, 2])
    assert TaskLoss("multiclass")(multi_logits, multi_y) != TaskLoss(
        "multiclass", torch.tensor(balancing_weights("multiclass", multi_y.numpy(), 3))
    )(multi_logits, multi_y)


def test_class_weighted_training_differs(tmp_path, store, data):
    train_ds, _ = data
    runs = [train(train_ds, features=FEATURES, model="concat", tasks=["p"], out=tmp_path / f"r{w}", store=store,
                  class_weights=w, epochs=2, hidden=8) for w in (False, True)]
    assert runs[0].log[0]["train_loss"] != runs[1].log[0]["train_loss"]
    assert json.loads((tmp_path / "rTrue" / "config.json").read_text())["training"]["class_weights"] is True


def test_same_seed_gives_identical_weights(tmp_path, store, data):
    from safetensors.torch import load_file

    train_ds, _ = data
    for name in ("a", "b"):
        train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / name, store=store, epochs=3, hidden=8, seed=7)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("a", "b"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("tasks, monitor, used", [
    (["label", "q:regression"], "auto", "val_loss"),  # a regression task: no single decision score, the loss
    (["label"], "val_loss", "val_loss"),  # the previous default, still chosen by name
    (["label"], "accuracy", "accuracy"),
])
def test_monitor_auto_keeps_the_loss_for_regression_and_a_named_monitor_is_used(tmp_path, store, data, tasks, monitor, used):
    train_ds, _ = data
    report = train(train_ds, features=FEATURES, model="concat", tasks=tasks, out=tmp_path / "run", store=store, monitor=monitor, **{**FAST, "epochs": 2})
    training = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert report.monitor == training["monitor"] == used and training["monitor_option"] == monitor


def test_a_monitor_no_task_reports_is_refused_naming_the_valid_ones(tmp_path, store, data):
    train_ds, _ = data
    with pytest.raises(UsageError, match="'rmse' is no validation metric") as raised:
        train(train_ds, features=FEATURES, model="concat", tasks=["label"], out=tmp_path / "run", store=store, monitor="rmse", **FAST)
    assert "macro_f1" in raised.value.hint and "val_loss" in raised.value.hint
    assert not (tmp_path / "run").exists()


def test_multi_task_and_regression(tmp_path, store, data):
    train_ds, _ = data
    report = train(train_ds, features=FEATURES, model="gmu", tasks=["label", "q:regression"], out=tmp_path / "run", store=store, **FAST)
    assert set(report.val_metrics) == {"n", "tasks"}
    assert set(report.val_metrics["tasks"]["q"]["metrics"]) == {"rmse", "mae", "r2"}
    assert report.val_metrics["tasks"]["q"]["metrics"]["r2"] > 0.8
    stats = json.loads((tmp_path / "run" / "config.json").read_text())["tasks"][1]["target_stats"]
    # q is a fair 0/1 bit: standardisation statistics of the training part.
    assert 0.4 < stats["mean"] < 0.6 and stats["std"] == pytest.approx(0.5, abs=0.01)


def test_retraining_replaces_a_run_but_never_a_foreign_directory(tmp_path, store, data):
    train_ds, _ = data
    out = tmp_path / "run"
    train(train_ds, features=["minilm"], model="concat", tasks=["label"], out=out, store=store, epochs=1, hidden=4)
    (out / "stale.txt").write_text("left from before")
    train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=out, store=store, epochs=1, hidden=4)
    assert json.loads((out / "config.json").read_text())["model"]["name"] == "gmu"
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run")] == []
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="not an mmtk run"):
        train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=foreign, store=store, epochs=1)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_bad_requests_fail_before_training(tmp_path, store, data):
    train_ds, _ = data
    with pytest.raises(UsageError, match="unknown model 'mlp'; choose one of: .*concat, concat-mlp, gating, gmu"):
        train(train_ds, features=FEATURES, model="mlp", tasks=["label"], out=tmp_path / "x", store=store)
    with pytest.raises(UsageError, match="listed twice"):
        train(train_ds, features=["minilm", "minilm"], model="gmu", tasks=["label"], out=tmp_path / "x", store=store)
    with pytest.raises(UsageError, match="--val-split 0"):
        train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "x", store=store, val_split=0.0)
    with pytest.raises(UsageError, match="no column 'sentiment'"):
        train(train_ds, features=FEATURES, model="gmu", tasks=["sentiment"], out=tmp_path / "x", store=store)
    assert not (tmp_path / "x").exists()


def test_missing_features_say_which_command_fills_them(tmp_path, store, data):
    train_ds, _ = data
    with pytest.raises(StoreError, match="extract-features"):
        train(train_ds, features=["clip@text"], model="gmu", tasks=["label"], out=tmp_path / "x", store=store)


def test_stratified_split_keeps_proportions_and_rare_classes_in_training():
    strata = ["a"] * 50 + ["b"] * 20 + ["c"]
    train_idx, val_idx = split_indices(strata, 0.2, seed=0)
    assert sorted(train_idx + val_idx) == list(range(71))
    assert [strata[i] for i in val_idx].count("a") == 10
    assert [strata[i] for i in val_idx].count("b") == 4
    assert 70 in train_idx  # the single "c" never lands in validation only
    assert split_indices(strata, 0.2, seed=0) == (train_idx, val_idx)
    assert split_indices(strata, 0.2, seed=1) != (train_idx, val_idx)
    with pytest.raises(DataError, match="validation split .* is empty"):
        split_indices(["a", "b"], 0.2, seed=0)


def test_learning_rate_and_epochs_default_to_the_models_own(tmp_path, store, data):
    import json

    from mmtk.models import MODELS
    from mmtk.models.catalog.fusion import build_concat

    train_ds, _ = data
    MODELS.add("concat-slow", build_concat, "concat with its own learning rate", missing=True, lr=2e-4, epochs=3)
    try:
        cases = (("concat", None, 1, 1e-3, 1), ("concat-slow", None, None, 2e-4, 3), ("concat-slow", 5e-3, 2, 5e-3, 2))
        for name, lr, epochs, expected_lr, expected_epochs in cases:
            out = tmp_path / f"{name}-{lr}"
            train(train_ds, features=FEATURES, model=name, tasks=["label"], out=out, store=store, epochs=epochs, lr=lr, patience=1000)
            training = json.loads((out / "config.json").read_text())["training"]
            assert (training["lr"], training["epochs"]) == (expected_lr, expected_epochs), name
            if name == "concat-slow":
                assert training["epochs_run"] == expected_epochs
    finally:
        MODELS.remove("concat-slow")


def test_monitor_auto_keeps_the_loss_on_a_small_validation_set(tmp_path, store, data):
    """Under 50 validation items a decision metric is too coarse to pick an epoch by (one
    item is 2+ points): auto watches the loss there, the metric from 50 items on."""
    from mmtk.train import MIN_METRIC_VAL_ITEMS, auto_monitor

    assert auto_monitor({"label": "binary"}, MIN_METRIC_VAL_ITEMS - 1) == "val_loss"
    assert auto_monitor({"label": "binary"}, MIN_METRIC_VAL_ITEMS) == "macro_f1"
    assert auto_monitor({"label": "binary"}) == "macro_f1"  # size not given
    train_ds, _ = data
    report = train(train_ds, features=FEATURES, model="concat", tasks=["label"], out=tmp_path / "run", store=store,
                   val_split=0.1, **{**FAST, "epochs": 2})  # 40 of the 400 items
    training = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert training["val_items"] == 40
    assert (report.monitor, training["monitor"], training["monitor_option"]) == ("val_loss", "val_loss", "auto")
