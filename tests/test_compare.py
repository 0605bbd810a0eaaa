"""Comparing models (``mmtk train --model a,b``): every model on the same split and seed,
one row each in the table, the JSON and comparison.csv, and a model that cannot train on
these inputs reported, with exit 2, while the others still train."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.compare import compare_models, count_parameters, parse_models, train_many
from mmtk.errors import UsageError
from mmtk.models import MODELS
from mmtk.store import FeatureStore
from synthetic_features import FEATURES, store_xor_features, write_xor_dataset, xor_split

FAST = {"epochs": 3, "hidden": 16, "lr": 1e-2, "patience": 3, "batch_size": 32, "device": "cpu"}
SEQUENCE_ONLY = "needs-sequences"


@pytest.fixture
def sequence_only_model():
    """A registered model that refuses vector inputs, as a sequence-only model does."""

    def build(inputs, heads, *, hidden: int = 8, dropout: float = 0.0):
        raise UsageError(f"model {SEQUENCE_ONLY!r} needs sequence features", "give BACKBONE:seq features")

    MODELS.add(SEQUENCE_ONLY, build, "test model", sequences=True)
    yield SEQUENCE_ONLY
    MODELS.remove(SEQUENCE_ONLY)


@pytest.fixture
def data(tmp_path):
    store = FeatureStore(tmp_path / "store")
    train_ds, _ = xor_split(tmp_path, store, n_train=120, n_test=4)
    return train_ds, store


def test_every_model_trains_on_the_same_split_into_its_own_run(tmp_path, data):
    dataset, store = data
    out = tmp_path / "cmp"
    comparison = compare_models(dataset, models="concat,gmu", out=out, features=FEATURES, tasks=["label"], store=store, seed=4, **FAST)
    assert [r.model for r in comparison.results] == ["concat", "gmu"] and comparison.exit_code == 0
    configs = {m: json.loads((out / m / "config.json").read_text()) for m in ("concat", "gmu")}
    assert configs["concat"]["model"]["name"] == "concat" and configs["gmu"]["model"]["name"] == "gmu"
    for key in ("seed", "train_items", "val_items", "epochs", "val_split"):
        assert configs["concat"]["training"][key] == configs["gmu"]["training"][key]
    assert configs["gmu"]["training"]["seed"] == 4
    rows = list(csv.DictReader(open(out / "comparison.csv", encoding="utf-8")))
    assert [row["model"] for row in rows] == ["concat", "gmu"]
    for row, result in zip(rows, comparison.results):
        assert row["status"] == "ok" and row["error"] == ""
        assert float(row["accuracy"]) == pytest.approx(result.report.val_metrics["metrics"]["accuracy"])
        assert float(row["samples_per_second"]) == pytest.approx(result.report.samples_per_second)
        assert int(row["val_items"]) == configs[result.model]["training"]["val_items"]
    # concat with hidden 16: parameter-free item norms, Linear 24 -> 16, one binary head 16 -> 1.
    assert comparison.results[0].parameters == (24 * 16 + 16) + (16 + 1)
    assert count_parameters(out / "gmu") == comparison.results[1].parameters


def test_a_model_that_cannot_use_the_inputs_is_reported_and_the_others_train(tmp_path, data, sequence_only_model):
    dataset, store = data
    results = train_many(dataset, models=["gmu", sequence_only_model], out=tmp_path / "cmp", features=FEATURES,
                         tasks=["label"], store=store, **FAST)
    assert results[0].ok and not results[1].ok
    assert results[1].to_json() == {
        "model": SEQUENCE_ONLY, "status": "failed", "run": None, "exit_code": 2,
        "error": f"model {SEQUENCE_ONLY!r} needs sequence features; give BACKBONE:seq features",
    }
    assert not (tmp_path / "cmp" / SEQUENCE_ONLY).exists()


def test_when_every_model_fails_the_error_is_raised(tmp_path, data, sequence_only_model):
    dataset, store = data
    with pytest.raises(UsageError, match="needs sequence features"):
        train_many(dataset, models=[sequence_only_model], out=tmp_path / "cmp", features=FEATURES, tasks=["label"], store=store, **FAST)


def test_every_model_gets_the_same_options_and_a_resumable_record_of_its_own(tmp_path, monkeypatch):
    import mmtk.train

    calls = []

    class Report:
        def __init__(self, out):
            self.run = out

    def fake_train(dataset, **kwargs):
        calls.append(kwargs)
        return Report(kwargs["out"])

    monkeypatch.setattr(mmtk.train, "train", fake_train)
    monkeypatch.setattr("mmtk.compare.count_parameters", lambda run: 7)
    record = {"model": "concat,gmu", "out": str(tmp_path / "cmp"), "seed": 3}
    results = train_many("dataset", models="concat,gmu", out=tmp_path / "cmp", record=record, seed=3, features=["a"])
    assert [r.parameters for r in results] == [7, 7]
    assert [c["record"] for c in calls] == [
        {"model": "concat", "out": str(tmp_path / "cmp" / "concat"), "seed": 3},
        {"model": "gmu", "out": str(tmp_path / "cmp" / "gmu"), "seed": 3},
    ]
    assert all(c["seed"] == 3 and c["features"] == ["a"] for c in calls)


@pytest.mark.parametrize("models, message", [
    ("concat,nope", "unknown model 'nope'"),
    ("concat,concat", "names 'concat' twice"),
    ("concat,,gmu", "has an empty name"),
])
def test_bad_model_lists_are_usage_errors(models, message):
    with pytest.raises(UsageError, match=message):
        parse_models(models)


def test_targets_are_checked_before_anything_trains(tmp_path, data):
    dataset, store = data
    (tmp_path / "cmp" / "gmu").mkdir(parents=True)
    (tmp_path / "cmp" / "gmu" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="gmu is a non-empty directory"):
        train_many(dataset, models="concat,gmu", out=tmp_path / "cmp", features=FEATURES, tasks=["label"], store=store, **FAST)
    assert not (tmp_path / "cmp" / "concat").exists()


runner = CliRunner()


@pytest.fixture
def cli_data(tmp_path, monkeypatch):
    from mmtk.data import read_dataset

    path = write_xor_dataset(tmp_path, "train", 80, seed=1)
    store_xor_features(read_dataset(path), FeatureStore(tmp_path / "store"), seed=3)
    monkeypatch.setenv("MMTK_STORE", str(tmp_path / "store"))
    return [str(path), "--features", ",".join(FEATURES), "--task", "label", "--epochs", "2", "--hidden", "16"]


def test_cli_prints_one_table_and_exits_2_naming_the_model_that_failed(tmp_path, cli_data, sequence_only_model):
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["train", *cli_data, "--model", f"concat,{sequence_only_model},gmu", "--out", str(out)])
    assert result.exit_code == 2, result.output
    table = result.stdout
    for name in ("concat", "gmu", SEQUENCE_ONLY, "parameters", "samples/s", "accuracy"):
        assert name in table
    assert "failed" in next(line for line in table.splitlines() if SEQUENCE_ONLY in line)
    assert result.stderr.strip().splitlines() == [
        f"error: model {SEQUENCE_ONLY}: model {SEQUENCE_ONLY!r} needs sequence features; give BACKBONE:seq features"
    ]
    assert (out / "concat" / "model.safetensors").is_file() and (out / "gmu" / "model.safetensors").is_file()
    assert (out / "comparison.csv").is_file()


def test_cli_json_is_one_document_and_exit_0_when_all_trained(tmp_path, cli_data):
    result = runner.invoke(app, ["train", *cli_data, "--model", "gmu,concat", "--out", str(tmp_path / "cmp"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [m["model"] for m in document["models"]] == ["gmu", "concat"]
    assert {m["status"] for m in document["models"]} == {"ok"}
    assert document["csv"] == str(tmp_path / "cmp" / "comparison.csv")
    assert set(document["models"][0]["val_metrics"]["metrics"]) >= {"accuracy", "macro_f1"}
    assert result.stderr == ""


def test_cli_perturbation_needs_a_step_and_is_recorded(tmp_path, cli_data):
    result = runner.invoke(app, ["train", *cli_data, "--model", "gmu", "--perturb", "fgsm", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "error: --perturb fgsm needs a step size; add --perturb-eps" in result.stderr
    result = runner.invoke(app, ["train", *cli_data, "--model", "gmu", "--perturb", "fgsm", "--perturb-eps", "0.1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["training"]["perturb"]["eps"] == 0.1
