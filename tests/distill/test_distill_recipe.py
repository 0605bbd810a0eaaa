"""distill end to end on the XOR features: a teacher trained here or given, cached
teacher outputs, the student's run and its record of the teacher."""

from __future__ import annotations

import json

import pytest

from mmtk.distill.recipe import distill
from mmtk.distill.teacher import CACHE_DIR
from mmtk.errors import UsageError
from mmtk.evaluate import evaluate
from mmtk.runs import is_run_dir
from mmtk.store import FeatureStore
from synthetic_features import FEATURES, xor_split

FAST = {"epochs": 40, "hidden": 32, "dropout": 0.1, "lr": 1e-2, "patience": 40, "batch_size": 32}


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "store")


@pytest.fixture
def data(tmp_path, store):
    return xor_split(tmp_path, store, n_train=240, n_test=120)


def _terms(run):
    return [json.loads(line)["train_terms"] for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_a_named_teacher_is_trained_into_the_run_and_its_outputs_are_cached(tmp_path, store, data):
    train_ds, test_ds = data
    out = tmp_path / "student"
    report = distill(train_ds, teacher="gmu", student="concat", features=FEATURES, tasks=["label"], out=out, store=store,
                     msd="importance", **FAST)
    assert is_run_dir(out) and is_run_dir(out / "teacher")
    assert report.teacher_trained and not report.teacher_cached
    assert len(list((out / "teacher" / CACHE_DIR).glob("*.safetensors"))) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["distillation"]["teacher"] == "teacher"
    assert config["distillation"]["views"] == ["full", "only:image", "only:text"]
    assert {"ce", "kd", "msd.image", "msd.text", "total"} <= set(_terms(out)[0])
    assert evaluate(out / "teacher", test_ds, store=store)["metrics"]["accuracy"] > 0.8
    assert evaluate(out, test_ds, store=store)["metrics"]["accuracy"] > 0.8
    assert set(report.speed) >= {"teacher", "student", "speedup"}

    # A second variant with the teacher run as it is reads the cached outputs.
    again = distill(train_ds, teacher=str(out / "teacher"), student="gmu", features=FEATURES, out=tmp_path / "meta",
                    store=store, msd="meta", **FAST)
    assert again.teacher_cached and not again.teacher_trained
    assert "meta" in _terms(tmp_path / "meta")[0]
    recorded = json.loads((tmp_path / "meta" / "config.json").read_text())["distillation"]
    assert recorded["teacher"] == str((out / "teacher").resolve()) and recorded["msd"] == "meta"


def test_population_without_weights_picks_them_on_the_validation_split(tmp_path, store, data):
    train_ds, _ = data
    distill(train_ds, teacher="gmu", student="concat", features=FEATURES, tasks=["label"], out=tmp_path / "t", store=store,
            msd="none", **{**FAST, "epochs": 5})
    report = distill(train_ds, teacher=str(tmp_path / "t" / "teacher"), student="concat", features=FEATURES,
                     out=tmp_path / "pop", store=store, msd="population", **{**FAST, "epochs": 5})
    assert len(report.grid) == 4 and report.population in [entry["weights"] for entry in report.grid]
    # Ranked as the students' early stopping ranked their epochs: --monitor auto, on this
    # binary task with 48 validation items (under 50) the validation loss, lowest best.
    assert report.student.monitor == "val_loss"
    best = min(report.grid, key=lambda entry: entry["val_loss"])
    assert report.population == best["weights"]
    assert not [p for p in tmp_path.iterdir() if ".grid-" in p.name]  # the other candidates are removed
    assert json.loads((tmp_path / "pop" / "config.json").read_text())["distillation"]["population"] == best["weights"]


def test_a_teacher_inside_the_output_is_refused(tmp_path, store, data):
    train_ds, _ = data
    distill(train_ds, teacher="gmu", student="concat", features=FEATURES, tasks=["label"], out=tmp_path / "s", store=store,
            **{**FAST, "epochs": 2})
    with pytest.raises(UsageError, match="inside --out"):
        distill(train_ds, teacher=str(tmp_path / "s" / "teacher"), student="concat", features=FEATURES, out=tmp_path / "s", store=store)


def test_unreachable_teacher_weights_name_the_distill_option(tmp_path, store, data, monkeypatch):
    import mmtk.train
    from mmtk.models.bert_weights import WeightsUnavailable

    def unreachable(*args, **kwargs):
        raise WeightsUnavailable("cannot load weights hub/name: the model hub is unreachable", "pass --model-arg weights=minilm")

    monkeypatch.setattr(mmtk.train, "train", unreachable)
    with pytest.raises(UsageError, match="pass --teacher-weights minilm") as raised:
        distill(data[0], teacher="gmu", student="concat", features=FEATURES, tasks=["label"], out=tmp_path / "s", store=store)
    assert "cannot load weights hub/name" in str(raised.value)
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.teacher-*"))


def test_word_piece_models_get_the_texts_word_pieces_when_none_are_listed():
    from mmtk.distill.recipe import with_word_pieces

    assert [r.name for r in with_word_pieces("tinybert", ["efficientnet-lite0:seq"])] == ["tokens", "efficientnet-lite0:seq"]
    assert [r.name for r in with_word_pieces("tinybert", ["tokens@caption", "clip-patches"])] == ["tokens@caption", "clip-patches"]
    assert [r.name for r in with_word_pieces("gmu", ["efficientnet-lite0", "minilm"])] == ["efficientnet-lite0", "minilm"]


def test_correctness_weights_and_hidden_state_losses_train_a_student(tmp_path, store, data):
    import math

    train_ds, _ = data
    distill(train_ds, teacher="gmu", student="concat", features=FEATURES, tasks=["label"], out=tmp_path / "t", store=store,
            **{**FAST, "epochs": 3})
    hidden = {"fitnet": 1.0, "rkd_distance": 1.0, "rkd_angle": 2.0, "sp": 10.0}
    distill(train_ds, teacher=str(tmp_path / "t" / "teacher"), student="concat", features=FEATURES, out=tmp_path / "c",
            store=store, msd="correctness", hidden_losses=hidden, **{**FAST, "epochs": 3})
    terms = _terms(tmp_path / "c")
    assert set(hidden) | {"kd", "msd.image", "msd.text"} <= set(terms[0])
    assert all(math.isfinite(value) for entry in terms for value in entry.values())
    assert terms[-1]["fitnet"] < terms[0]["fitnet"]  # the projection and the student learn the teacher's state
    recorded = json.loads((tmp_path / "c" / "config.json").read_text())["distillation"]
    assert recorded["hidden_losses"] == hidden and recorded["msd"] == "correctness"
