"""evaluate's distillation report: agreement, KL to the teacher, consistency ratio."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from mmtk.distill.recipe import distill
from mmtk.distill.report import _consistent, _derangement
from mmtk.errors import UsageError
from mmtk.evaluate import evaluate
from mmtk.store import FeatureStore
from synthetic_features import FEATURES, xor_split

FAST = {"epochs": 30, "hidden": 32, "dropout": 0.1, "lr": 1e-2, "patience": 30, "batch_size": 32}


def test_a_derangement_moves_every_item():
    for n in (2, 3, 10, 101):
        order = _derangement(n, seed=0)
        assert sorted(order) == list(range(n)) and not (order == np.arange(n)).any()


def test_consistency_counts_kept_and_identically_changed_predictions():
    def logits(classes):  # one-hot multi-class logits for the given predicted classes
        return torch.nn.functional.one_hot(torch.tensor(classes), 3).float()

    teacher, student = logits([0, 0, 1, 2]), logits([0, 0, 1, 2])
    teacher_swapped = logits([0, 1, 2, 2])  # items 1 and 2 change
    student_swapped = logits([0, 1, 0, 1])  # 0 kept (consistent), 1 same change (consistent), 2 other change, 3 changes alone
    assert _consistent("multiclass", teacher, student, teacher_swapped, student_swapped) == pytest.approx(0.5)


def test_evaluate_reports_how_the_student_follows_its_teacher(tmp_path):
    store = FeatureStore(tmp_path / "store")
    train_ds, test_ds = xor_split(tmp_path, store, n_train=240, n_test=120)
    distill(train_ds, teacher="gmu", student="gmu", features=FEATURES, tasks=["label"], out=tmp_path / "s", store=store, msd="none", **FAST)
    result = evaluate(tmp_path / "s", test_ds, store=store)
    report = result["distillation"]
    assert report["teacher"] == str(tmp_path / "s" / "teacher")
    teacher = evaluate(tmp_path / "s" / "teacher", test_ds, store=store)
    assert "distillation" not in teacher
    # Both solve XOR, so they agree on nearly every item and respond alike to swaps: a
    # swapped modality flips the XOR label for about half the items, for both.
    assert report["agreement"] > 0.85 and report["consistency_ratio"] > 0.8
    assert set(report["tasks"]["label"]["consistency"]) == {"image", "text"}
    assert 0 <= report["kl_to_teacher"] < 0.5

    # From the command line with --report: the teacher line and the report's path.
    from typer.testing import CliRunner

    from mmtk.cli.app import app

    page = tmp_path / "student.html"
    ran = CliRunner().invoke(app, ["evaluate", str(tmp_path / "s"), str(test_ds.source), "--store", str(tmp_path / "store"), "--report", str(page)])
    assert ran.exit_code == 0, ran.output
    lines = ran.output.strip().splitlines()
    assert lines[-1] == f"report: {page}" and any(line.startswith("against its teacher") for line in lines)
    assert page.is_file()

    shutil.rmtree(tmp_path / "s" / "teacher")
    with pytest.raises(UsageError, match="needs the teacher"):
        evaluate(tmp_path / "s", test_ds, store=store)


def test_a_teacher_fitted_whole_is_reported_on_too(tmp_path):
    # svm/logreg hold buffers, no parameters: the report must not read the device off one.
    store = FeatureStore(tmp_path / "store")
    train_ds, test_ds = xor_split(tmp_path, store, n_train=160, n_test=60)
    distill(train_ds, teacher="logreg", student="concat", features=FEATURES, tasks=["label"], out=tmp_path / "s", store=store,
            msd="none", epochs=3, batch_size=32)
    report = evaluate(tmp_path / "s", test_ds, store=store)["distillation"]
    assert 0 <= report["agreement"] <= 1 and set(report["tasks"]["label"]["consistency"]) == {"image", "text"}
