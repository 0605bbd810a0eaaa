"""Stacking ensembles end to end (``mmtk.stacking``, ``mmtk train --model stack``): members
trained per feature or given as runs (retrained per fold), a self-contained run that
evaluates and predicts like any other (features missing from the store extracted,
``--explain`` per member), saved without pickle, and one-line refusals of bad input."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.evaluate import evaluate
from mmtk.predict import predict
from mmtk.runs import load_run
from mmtk.stacking import train_stack
from mmtk.store import FeatureStore
from mmtk.train import train
from synthetic_features import FEATURES, xor_split

TASKS = ["label", "p"]
STACK = {"device": "cpu", "seed": 0, "model_args": {"meta": "logreg", "folds": 3}}
runner = CliRunner()


@pytest.fixture(scope="module")
def xor(tmp_path_factory):
    """XOR data with stored features, two logreg runs (one per feature) trained on its
    training file, and a stack trained with one member per feature."""
    root = tmp_path_factory.mktemp("stack")
    store = FeatureStore(root / "store")
    train_ds, test_ds = xor_split(root, store, n_train=240, n_test=80)
    given = {}
    for feature in FEATURES:
        given[feature] = train(train_ds, features=[feature], model="logreg", tasks=TASKS, out=root / "given" / feature,
                               store=store, val_dataset=test_ds, device="cpu", seed=0).run
    report = train(train_ds, features=FEATURES, model="stack", tasks=TASKS, out=root / "stack", store=store, val_dataset=test_ds, **STACK)
    return {"root": root, "store": store, "train": train_ds, "test": test_ds, "given": given, "report": report}


def probabilities(records: list[dict]) -> np.ndarray:
    return np.array([[p for task in TASKS for p in r["tasks"][task]["probs"].values()] for r in records])


def test_given_runs_are_retrained_per_fold_like_members_trained_per_feature(xor, tmp_path):
    # The given runs were trained as the stack trains its members (same data, validation
    # set, model and seed), so retraining each per fold from its config.json gives the
    # same out-of-fold scores, the same meta-estimators and the same predictions.
    members = [f"run:{xor['given'][f]}" for f in FEATURES]
    given = train(xor["train"], features=members, model="stack", tasks=TASKS, out=tmp_path / "given", store=xor["store"],
                  val_dataset=xor["test"], **STACK)
    config = json.loads((given.run / "config.json").read_text())
    assert [m["run"] for m in config["stack"]["members"]] == [str(xor["given"][f]) for f in FEATURES]
    ours = predict(xor["report"].run, xor["test"], store=xor["store"], device="cpu")
    theirs = predict(given.run, xor["test"], store=xor["store"], device="cpu")
    np.testing.assert_allclose(probabilities(theirs), probabilities(ours), atol=1e-6)
    assert given.val_metrics == xor["report"].val_metrics
    # The members' own predictions on their training items are in-sample: fitting the
    # meta-estimator on them would give another model.
    from mmtk.models import MODELS
    from mmtk.stacking import fit_meta, member_scores

    in_sample = np.concatenate([member_scores(xor["given"][f], xor["train"], xor["store"]) for f in FEATURES], axis=1)
    leaky = MODELS.get("stack")({"a": 2, "b": 2}, {"label": 1, "p": 1})
    parts, _ = fit_meta(leaky, in_sample, {t: enc.encode(xor["train"]) for t, enc in load_run(given.run).encoders.items()},
                        {"label": "binary", "p": "binary"}, "logreg", 3, 0)
    honest = load_run(given.run).model
    assert not np.allclose(parts["label"][0].coef.numpy(), honest.parts[0][0].coef.numpy())


def test_the_run_holds_its_members_and_works_after_a_move_without_unpickling(xor, tmp_path, monkeypatch):
    report = xor["report"]
    moved = tmp_path / "elsewhere" / "stack"
    shutil.copytree(report.run, moved)
    assert sorted(p.name for p in (moved / "members").iterdir()) == sorted(FEATURES)
    assert {p.suffix for p in moved.rglob("*") if p.is_file()} <= {".json", ".jsonl", ".safetensors"}
    config = json.loads((moved / "config.json").read_text())
    assert [f["ref"] for f in config["features"]] == [f"run:members/{f}" for f in FEATURES]
    assert config["stack"]["meta"] == {"label": {"meta": "logreg"}, "p": {"meta": "logreg"}}

    def refuse(*args, **kwargs):
        raise AssertionError("a stack run was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    evaluated = evaluate(moved, xor["test"], store=xor["store"], device="cpu")
    for task in TASKS:
        assert evaluated["tasks"][task]["metrics"] == pytest.approx(report.val_metrics["tasks"][task]["metrics"], rel=1e-6)
    assert evaluated["tasks"]["p"]["metrics"]["accuracy"] > 0.9  # the image member carries p


def test_explain_gives_each_members_probability_of_the_stacks_label(xor):
    run = xor["report"].run
    records = predict(run, xor["test"], store=xor["store"], device="cpu", explain=True)
    members = {f: predict(run / "members" / f, xor["test"], store=xor["store"], device="cpu") for f in FEATURES}
    for row, record in enumerate(records):
        assert set(record["explain"]) == {f"run:members/{f}" for f in FEATURES}
        for feature, member in members.items():
            support = np.mean([member[row]["tasks"][t]["probs"][str(record["tasks"][t]["label"])] for t in TASKS])
            assert record["explain"][f"run:members/{feature}"] == pytest.approx(support, abs=1e-5)


@pytest.fixture
def cli_env(xor, monkeypatch):
    monkeypatch.setenv("MMTK_STORE", str(xor["store"].root))
    return [str(xor["train"].source), "--task", "label", "--task", "p", "--val", str(xor["test"].source), "--device", "cpu"]


def test_cli_trains_evaluates_and_predicts_a_stack(xor, cli_env, tmp_path):
    out = tmp_path / "stack"
    made = runner.invoke(app, ["train", *cli_env, "--features", ",".join(FEATURES), "--model", "stack", "--meta", "auto",
                               "--folds", "3", "--class-weights", "--out", str(out), "--json"])
    assert made.exit_code == 0, made.output
    summary = json.loads(made.stdout)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["params"] == {"meta": "auto", "folds": 3, "member": "logreg"}
    assert {entry["meta"] for entry in config["stack"]["meta"].values()} <= {"soft-vote", "hard-vote", "logreg", "tree", "forest"}
    member = json.loads((out / "members" / "minilm" / "config.json").read_text())
    assert member["training"]["class_weights"] is True and member["model"]["name"] == "logreg"
    evaluated = runner.invoke(app, ["evaluate", str(out), str(xor["test"].source), "--json", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["tasks"]["p"]["metrics"] == pytest.approx(summary["val_metrics"]["tasks"]["p"]["metrics"])
    predicted = runner.invoke(app, ["predict", str(out), str(xor["test"].source), "--explain", "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    lines = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(lines) == len(xor["test"]) and set(lines[0]["explain"]) == {f"run:members/{f}" for f in FEATURES}


def test_predict_extracts_features_missing_from_the_store(tmp_path):
    from PIL import Image

    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset
    from mmtk.extract import extract_features
    from mmtk.tabular import TabularSpec

    rng = np.random.default_rng(0)

    def write(name: str, n: int):
        rows = []
        for i in range(n):
            bright, size = int(rng.integers(0, 2)), float(rng.normal())
            label = int(bright if i % 4 else size > 0)
            pixels = np.full((8, 8, 3), 200 if bright else 40, dtype=np.uint8) + rng.integers(0, 30, (8, 8, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / f"{name}{i}.png")
            rows.append({"id": f"{name}{i}", "image": f"{name}{i}.png", "size": size, "label": label})
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return read_dataset(path)

    store = FeatureStore(tmp_path / "store")
    train_ds, new = write("train", 60), write("new", 12)
    extract_features(train_ds, "pixels:4", store=store, device="cpu")
    report = train_stack(train_ds, features=["pixels:4", "tabular"], tasks=["label"], out=tmp_path / "stack", store=store,
                         tabular=TabularSpec(num_cols=("size",)), device="cpu", meta="soft-vote", folds=2)
    fingerprint = resolve_backbone("pixels:4", "image").fingerprint
    keys = content_keys(new.values("image"), "image")
    assert len(store.missing(fingerprint, keys)) == len(new)
    records = predict(report.run, new, store=store, device="cpu")
    assert [r["id"] for r in records] == new.ids and all(set(r["probs"]) == {"0", "1"} for r in records)
    assert store.missing(fingerprint, keys) == []


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (result.exit_code, result.output)
    return lines[0]


def test_bad_input_is_refused_with_one_line(xor, cli_env, tmp_path):
    label_only = train(xor["train"], features=["minilm"], model="logreg", tasks=["label"], out=tmp_path / "label-only",
                       store=xor["store"], val_dataset=xor["test"], device="cpu").run
    stack = ["--model", "stack", "--out", str(tmp_path / "s")]
    features = ["--features", ",".join(FEATURES)]
    cases = [
        (["--members", f"{tmp_path / 'nowhere'},{xor['given']['minilm']}"], "nowhere/config.json cannot be read"),
        (["--members", f"{label_only},{xor['given']['minilm']}"], "label-only predicts label (binary: 0, 1), but the stack's members"),
        (["--members", f"{xor['report'].run},{xor['given']['minilm']}"], "it is a stack itself, so it cannot be retrained per fold"),
        ([*features, "--meta", "boost"], "unknown --meta 'boost'; choose one of: forest, hard-vote, logreg, soft-vote, tree, auto"),
        ([*features, "--folds", "1"], "--folds 1 must be at least 2"),
        ([*features, "--folds", "500"], "--folds 500 is more than the"),
        ([*features, "--finetune", "text"], "--finetune does not apply to --model stack"),
    ]
    for args, says in cases:
        assert says in one_error_line(runner.invoke(app, ["train", *cli_env, *stack, *args])), args
    other = runner.invoke(app, ["train", *cli_env, *features, "--model", "gmu", "--meta", "logreg", "--out", str(tmp_path / "g")])
    assert "--meta belongs to --model stack, not --model gmu" in one_error_line(other)
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.*"))
