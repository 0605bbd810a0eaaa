"""Training on several datasets at once: per-dataset heads over one trunk, target masks,
a split per dataset, resume, evaluate/predict choosing heads, the CLI, and one dataset
behaving as before."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmtk.data import read_dataset
from mmtk.errors import UsageError
from mmtk.evaluate import evaluate
from mmtk.models import MODELS
from mmtk.multidata import bind_tasks, name_datasets, task_weights_for
from mmtk.predict import predict
from mmtk.runs import load_run
from mmtk.store import FeatureStore
from mmtk.train import train
from mmtk.training import Batch, SupervisedObjective, TaskLoss
from mmtk.training.inputs import InputSpec
from synthetic_features import FEATURES, store_xor_features, write_xor_dataset

FAST = {"epochs": 30, "hidden": 32, "dropout": 0.1, "lr": 1e-2, "patience": 30, "device": "cpu"}


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "store")


@pytest.fixture
def two(tmp_path, store):
    """``hateful`` (label = p XOR q, 240 items) and ``mami`` (misogynous = p AND q, 100
    items): different label columns, features stored."""
    hateful = read_dataset(write_xor_dataset(tmp_path, "hateful", 240, seed=1))
    mami = read_dataset(write_xor_dataset(tmp_path, "mami", 100, seed=2, label_column="misogynous", rule=operator.and_))
    store_xor_features(hateful, store, seed=3)
    store_xor_features(mami, store, seed=4)
    return {"hateful": hateful, "mami": mami}


def test_each_dataset_gets_its_heads_split_and_metrics_recorded_in_the_run(tmp_path, store, two):
    report = train(two, features=FEATURES, model="gmu", tasks=["label", "misogynous"], out=tmp_path / "run", store=store, **FAST)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["heads"] == {"hateful/label": 1, "mami/misogynous": 1}
    assert [t["name"] for t in config["tasks"]] == ["hateful/label", "mami/misogynous"]
    assert [t["columns"] for t in config["tasks"]] == [["label"], ["misogynous"]]
    assert config["datasets"] == [
        {"name": "hateful", "source": str(two["hateful"].source), "items": 240, "train_items": 192, "val_items": 48,
         "tasks": {"hateful/label": "label"}},
        {"name": "mami", "source": str(two["mami"].source), "items": 100, "train_items": 80, "val_items": 20,
         "tasks": {"mami/misogynous": "misogynous"}},
    ]
    assert config["training"]["mix"] == "proportional" and (report.train_items, report.val_items) == (272, 68)
    metrics = report.val_metrics
    assert metrics["n"] == 68 and {t: e["n"] for t, e in metrics["tasks"].items()} == {"hateful/label": 48, "mami/misogynous": 20}
    assert metrics["tasks"]["hateful/label"]["metrics"]["accuracy"] > 0.85
    assert metrics["tasks"]["mami/misogynous"]["metrics"]["accuracy"] > 0.85
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert set(log[0]["train_terms"]) == {"task.hateful/label", "task.mami/misogynous", "total"}


def test_one_column_meaning_two_things_gets_one_head_per_dataset(tmp_path, store):
    """Both datasets call their label ``label``: XOR in one, AND in the other. A shared
    head could not fit both; one head each does."""
    xor = read_dataset(write_xor_dataset(tmp_path, "xor", 240, seed=1))
    both = read_dataset(write_xor_dataset(tmp_path, "and", 240, seed=2, rule=operator.and_))
    store_xor_features(xor, store, seed=3)
    store_xor_features(both, store, seed=4)
    report = train({"xor": xor, "and": both}, features=FEATURES, model="concat", tasks=["label"], out=tmp_path / "run", store=store,
                   mix="round-robin", **FAST)
    assert set(report.val_metrics["tasks"]) == {"xor/label", "and/label"}
    assert all(entry["metrics"]["accuracy"] > 0.85 for entry in report.val_metrics["tasks"].values())


def test_a_dataset_never_enters_the_other_datasets_task_loss():
    """A hand-built batch: items 0-2 from dataset a (task a/y), 3-4 from dataset b
    (task b/y). Whatever targets b's items carry for a/y, and a's items for b/y, the
    loss terms and every gradient are the same."""
    torch.manual_seed(0)
    model = MODELS.get("concat")({"x": InputSpec("x", 4)}, {"a/y": 1, "b/y": 3}, hidden=8, dropout=0.0)
    objective = SupervisedObjective({"a/y": TaskLoss("binary"), "b/y": TaskLoss("multiclass")})
    features = {"x": torch.randn(5, 4)}
    masks = {"a/y": torch.tensor([True, True, True, False, False]), "b/y": torch.tensor([False, False, False, True, True])}

    def terms_and_grads(a_targets, b_targets):
        model.zero_grad()
        terms = objective(model, Batch(features=features, targets={"a/y": a_targets, "b/y": b_targets}, target_masks=masks))
        terms["total"].backward()
        return {k: float(v.detach()) for k, v in terms.items()}, [p.grad.clone() for p in model.parameters()]

    base = terms_and_grads(torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0]), torch.tensor([0, 0, 0, 2, 1]))
    other = terms_and_grads(torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0]), torch.tensor([2, 1, 2, 2, 1]))
    assert base[0] == other[0]
    assert all(torch.equal(g, h) for g, h in zip(base[1], other[1]))
    # A batch of dataset a alone gives b's head no gradient at all.
    model.zero_grad()
    only_a = {k: m[:3] for k, m in masks.items()}
    terms = objective(model, Batch(features={"x": features["x"][:3]}, targets={"a/y": torch.ones(3), "b/y": torch.zeros(3, dtype=torch.long)},
                                   target_masks=only_a))
    assert float(terms["task.b/y"].detach()) == 0.0
    terms["total"].backward()
    assert float(model.heads.layers[1].weight.grad.abs().sum()) == 0.0


def test_regression_statistics_come_from_the_labelled_rows_only(tmp_path, store, two):
    """mami adds ``score`` = 3p + q (a regression target only it has): its statistics
    are those of mami's training labels, not diluted by hateful's masked zeros."""
    scored = read_dataset(write_xor_dataset(tmp_path, "scored", 100, seed=2, label_column="score", rule=lambda p, q: 3 * p + q + 1))
    store_xor_features(scored, store, seed=5)
    report = train({"hateful": two["hateful"], "scored": scored}, features=FEATURES, model="concat", tasks=["label", "score:regression"],
                   out=tmp_path / "run", store=store, **{**FAST, "epochs": 1})
    config = json.loads((report.run / "config.json").read_text())
    stats = next(t["target_stats"] for t in config["tasks"] if t["name"] == "scored/score")
    entry = next(d for d in config["datasets"] if d["name"] == "scored")
    assert entry["train_items"] == 80
    from mmtk.train import _strata, split_indices

    train_idx, _ = split_indices(_strata(scored, []), 0.2, 0, scored.source)
    labels = np.array([scored.records[i].values["score"] for i in train_idx], dtype=np.float32)
    assert stats["mean"] == pytest.approx(float(labels.mean())) and stats["std"] == pytest.approx(float(labels.std()))


def test_a_dataset_with_none_of_the_tasks_is_refused(tmp_path, store, two):
    with pytest.raises(UsageError, match="dataset 'mami' has none of the tasks"):
        train(two, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "run", store=store, **FAST)


def test_the_recipe_masks_each_head_to_its_datasets_rows(tmp_path, store, two):
    from mmtk.data import parse_task
    from mmtk.features import GatherContext, parse_feature_refs
    from mmtk.multidata import prepare

    bindings = bind_tasks(two, [parse_task("label"), parse_task("misogynous")])
    prepared = prepare(two, parse_feature_refs(FEATURES), bindings, GatherContext(store=store), val_split=0.2, seed=0)
    assert [len(g) for g in prepared.train_groups] == [192, 80]
    hateful_rows, mami_rows = (np.asarray(g) for g in prepared.train_groups)
    assert prepared.train_masks["hateful/label"][hateful_rows].all() and not prepared.train_masks["hateful/label"][mami_rows].any()
    assert prepared.train_masks["mami/misogynous"][mami_rows].all() and not prepared.train_masks["mami/misogynous"][hateful_rows].any()
    assert prepared.train_x["minilm"].values.shape == (272, 8)


def test_a_killed_several_dataset_run_resumes_to_the_uninterrupted_weights(tmp_path, store, two):
    settings = dict(features=FEATURES, model="gmu", tasks=["label", "misogynous"], store=store, mix="round-robin",
                    checkpoint_every=0, **{**FAST, "epochs": 8, "patience": 8})
    whole = train(two, out=tmp_path / "whole", **settings)

    class Killed(Exception):
        pass

    def kill_at_epoch_5(epoch, _total):
        if epoch == 5:
            raise Killed

    with pytest.raises(Killed):
        train(two, out=tmp_path / "killed", progress=kill_at_epoch_5, **settings)
    resumed = train(two, out=tmp_path / "killed", resume=True, **settings)
    a, b = load_run(whole.run).model.state_dict(), load_run(resumed.run).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["val_loss"] for e in whole.log] == [e["val_loss"] for e in resumed.log]
    with pytest.raises(Killed):
        train(two, out=tmp_path / "other", progress=kill_at_epoch_5, **settings)
    with pytest.raises(UsageError, match="mix"):
        train(two, out=tmp_path / "other", resume=True, **{**settings, "mix": "proportional"})


def test_evaluate_and_predict_pick_the_heads_of_a_dataset(tmp_path, store, two):
    train({**two, "again": two["hateful"]}, features=FEATURES, model="concat", tasks=["label", "misogynous"], out=tmp_path / "run",
          store=store, **{**FAST, "epochs": 3})
    mami = evaluate(tmp_path / "run", two["mami"], store=store, device="cpu")
    assert mami["task"] == "mami/misogynous" and mami["n"] == 100
    # hateful's label column is a label of two datasets of this run: ambiguous.
    with pytest.raises(UsageError, match="--dataset-name"):
        evaluate(tmp_path / "run", two["hateful"], store=store, device="cpu")
    again = evaluate(tmp_path / "run", two["hateful"], store=store, device="cpu", dataset_name="again")
    assert again["task"] == "again/label" and set(again["metrics"]) >= {"accuracy", "macro_f1"}
    with pytest.raises(UsageError, match="hateful, mami, again"):
        evaluate(tmp_path / "run", two["hateful"], store=store, device="cpu", dataset_name="nope")

    every = predict(tmp_path / "run", two["mami"], store=store, device="cpu")
    assert set(every[0]["tasks"]) == {"hateful/label", "mami/misogynous", "again/label"}
    one = predict(tmp_path / "run", two["mami"], store=store, device="cpu", dataset_name="mami")
    assert set(one[0]) == {"id", "label", "probs"}
    assert one[0]["probs"] == every[0]["tasks"]["mami/misogynous"]["probs"]


def test_task_names_datasets_and_weights():
    assert name_datasets(["a/train.jsonl", "b/train.jsonl", "mami.csv"]) == [
        ("train", "a/train.jsonl"), ("train-2", "b/train.jsonl"), ("mami", "mami.csv")
    ]
    assert name_datasets(["x/train.jsonl"], ["train=y.jsonl"]) == [("train-2", "x/train.jsonl"), ("train", "y.jsonl")]
    for bad in (["noequals"], ["a b=x.jsonl"], ["a=x.jsonl", "a=y.jsonl"]):
        with pytest.raises(UsageError):
            name_datasets([], bad)


def test_task_weights_apply_to_every_head_of_a_task_or_to_one(two):
    from mmtk.data import parse_task

    bindings = bind_tasks({"h": two["hateful"], "m": two["hateful"]}, [parse_task("label")])
    assert task_weights_for(bindings, {"label": 0.5, "m/label": 2.0}) == {"h/label": 0.5, "m/label": 2.0}
    with pytest.raises(UsageError, match="h/label, m/label"):
        task_weights_for(bindings, {"sarcasm": 1.0})


def test_a_task_no_dataset_has_val_and_whole_fitted_models_with_several_are_refused(tmp_path, store, two):
    with pytest.raises(UsageError, match="'sarcasm'.*none of the datasets"):
        train(two, features=FEATURES, model="gmu", tasks=["label", "sarcasm"], out=tmp_path / "run", store=store, **FAST)
    with pytest.raises(UsageError, match="--val"):
        train(two, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "run", store=store, val_dataset=two["mami"], **FAST)
    with pytest.raises(UsageError, match="--mix"):
        train(two, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "run", store=store, mix="zipped", **FAST)
    # svm/logreg fit whole arrays of one dataset; their fit knows no target masks.
    with pytest.raises(UsageError, match="'logreg' \\(fitted whole\\) trains on one dataset"):
        train(two, features=FEATURES, model="logreg", tasks=["label", "misogynous"], out=tmp_path / "run", store=store, device="cpu")


def test_one_dataset_in_a_mapping_trains_exactly_as_a_plain_dataset(tmp_path, store, two):
    settings = dict(features=FEATURES, model="gmu", tasks=["label"], store=store, **{**FAST, "epochs": 3})
    plain = train(two["hateful"], out=tmp_path / "plain", **settings)
    mapped = train({"hateful": two["hateful"]}, out=tmp_path / "mapped", **settings)
    a, b = load_run(plain.run), load_run(mapped.run)
    assert "datasets" not in b.config and b.tasks == ["label"]
    assert all(torch.equal(a.model.state_dict()[k], b.model.state_dict()[k]) for k in a.model.state_dict())


def mmtk(*args, env):
    return subprocess.run([sys.executable, "-m", "mmtk", *map(str, args)], capture_output=True, text=True, env=env)


def test_the_cli_trains_evaluates_and_predicts_on_several_datasets(tmp_path, store, two):
    env = {**os.environ, "MMTK_STORE": str(tmp_path / "store")}
    hateful, mami = two["hateful"].source, two["mami"].source
    common = ["--features", ",".join(FEATURES), "--model", "gmu", "--task", "label", "--task", "misogynous", "--epochs", "3", "--device", "cpu"]
    made = mmtk("train", hateful, "--dataset", f"memes={mami}", *common, "--mix", "round-robin", "--out", tmp_path / "run", "--json", env=env)
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert set(summary["val_metrics"]["tasks"]) == {"hateful/label", "memes/misogynous"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [d["name"] for d in config["datasets"]] == ["hateful", "memes"] and config["training"]["mix"] == "round-robin"

    scored = mmtk("evaluate", tmp_path / "run", mami, "--json", env=env)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["task"] == "memes/misogynous"
    picked = mmtk("predict", tmp_path / "run", mami, "--dataset-name", "hateful", env=env)
    assert picked.returncode == 0, picked.stderr
    assert set(json.loads(picked.stdout.splitlines()[0])) == {"id", "label", "probs"}

    missing = mmtk("train", hateful, mami, *common, "--task", "sarcasm", "--out", tmp_path / "bad", env=env)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "sarcasm" in missing.stderr and "none of the datasets" in missing.stderr
    bad_mix = mmtk("train", hateful, mami, *common, "--mix", "zipped", "--out", tmp_path / "bad", env=env)
    assert bad_mix.returncode == 2 and "--mix" in bad_mix.stderr
