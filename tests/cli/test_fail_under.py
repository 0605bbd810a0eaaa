"""`evaluate --fail-under`: a mistyped task or metric name is refused before any feature
is extracted, naming the valid ones; the help says error metrics are ceilings."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from synthetic_features import write_xor_dataset


def feature_counts(store) -> dict[str, int]:
    from mmtk.store import FeatureStore

    return {s["fingerprint"]: s["items"] for s in FeatureStore(store).feature_sets()}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("macro_f=0.7", ["unknown metric 'macro_f' for binary task 'label'", "macro_f1", "roc_auc"]),
        ("rmse=0.1", ["unknown metric 'rmse' for binary task 'label'", "accuracy"]),
        ("sentiment.macro_f1=0.5", ["no task 'sentiment'", "choose one of: label"]),
    ],
)
def test_bad_names_are_refused_before_any_extraction(trained_run, tmp_path, spec, expected):
    # New items: their features are not stored, so evaluate would extract them first
    # (from these fake image files it could not: the refusal must come before that).
    data = write_xor_dataset(tmp_path, "new", 8, seed=7)
    before = feature_counts(trained_run["store"])
    result = subprocess.run(
        [sys.executable, "-m", "mmtk", "evaluate", trained_run["run"], str(data), "--fail-under", spec],
        capture_output=True, text=True, env=trained_run["env"],
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for text in expected:
        assert text in result.stderr
    assert feature_counts(trained_run["store"]) == before


def test_a_good_name_still_gates(trained_run):
    result = subprocess.run(
        [sys.executable, "-m", "mmtk", "evaluate", trained_run["run"], trained_run["data"], "--fail-under", "accuracy=1.01"],
        capture_output=True, text=True, env=trained_run["env"],
    )
    assert result.returncode == 1, result.stderr
    assert "accuracy = " in result.stderr and "below the required 1.01" in result.stderr


def test_help_says_error_metrics_are_ceilings():
    result = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "80"})
    flat = " ".join(result.output.split())
    assert "rmse and mae VALUE is a ceiling (exit 1 when above)" in flat
