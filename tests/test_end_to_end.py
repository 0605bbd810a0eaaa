"""The spine as a user drives it from the shell: extract-features -> train -> evaluate ->
predict on a slice of the bundled example, with the real offline backbones."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE_DATA = Path(__file__).resolve().parents[1] / "examples" / "memes"

pytestmark = pytest.mark.slow


def mmtk(*args: str, store: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MMTK_STORE=str(store))
    return subprocess.run(
        [sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, env=env, input=stdin
    )


def slice_jsonl(source: Path, dest: Path, count: int) -> Path:
    """First `count` rows of an example split, with image paths made absolute."""
    rows = [json.loads(line) for line in source.read_text().splitlines()[:count]]
    for row in rows:
        row["img"] = str(source.parent / row["img"])
    dest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    store = work / "store"
    train = slice_jsonl(EXAMPLE_DATA / "train.jsonl", work / "train.jsonl", 160)
    test = slice_jsonl(EXAMPLE_DATA / "test.jsonl", work / "test.jsonl", 40)
    for data in (train, test):
        result = mmtk("extract-features", str(data), "--backbone", "efficientnet-lite0", "--backbone", "minilm", "--json", store=store)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # not a terminal: no progress bar, no logs
    run = work / "run"
    result = mmtk(
        "train", str(train), "--features", "efficientnet-lite0,minilm", "--model", "gmu",
        "--task", "label:binary", "--out", str(run), "--epochs", "60", "--json", store=store,
    )
    assert result.returncode == 0, result.stderr
    return {"work": work, "store": store, "train": train, "test": test, "run": run, "train_report": json.loads(result.stdout)}


def test_cached_rerun_computes_nothing(trained):
    result = mmtk("extract-features", str(trained["train"]), "--backbone", "efficientnet-lite0", "--backbone", "minilm", "--json", store=trained["store"])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [b["computed"] for b in report["backbones"]] == [0, 0]
    assert report["backbones"][0]["cached"] == 160


def test_run_directory_is_self_contained(trained):
    run = trained["run"]
    assert {"config.json", "model.safetensors", "metrics.json", "train_log.jsonl"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["name"] == "gmu"
    assert [f["backbone_spec"] for f in config["features"]] == ["efficientnet-lite0", "minilm"]


def test_evaluate_json_and_fusion_learns(trained):
    result = mmtk("evaluate", str(trained["run"]), str(trained["test"]), "--json", store=trained["store"])
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["task"] == "label" and doc["n"] == 40
    assert {"accuracy", "macro_f1", "micro_f1", "weighted_f1", "roc_auc"} <= set(doc["metrics"])
    # The label is caption XOR picture: chance is 0.5, fusion must do far better.
    assert doc["metrics"]["accuracy"] >= 0.8


def test_fail_under_exits_1_and_passes_when_met(trained):
    missed = mmtk("evaluate", str(trained["run"]), str(trained["test"]), "--json", "--fail-under", "accuracy=1.01", store=trained["store"])
    assert missed.returncode == 1
    assert json.loads(missed.stdout)["metrics"]["accuracy"] <= 1.0  # the report still comes out
    assert "accuracy" in missed.stderr
    met = mmtk("evaluate", str(trained["run"]), str(trained["test"]), "--fail-under", "macro_f1=0.5", store=trained["store"])
    assert met.returncode == 0, met.stderr


def test_predict_jsonl_with_explain_and_csv(trained):
    result = mmtk("predict", str(trained["run"]), str(trained["test"]), "--explain", store=trained["store"])
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 40
    first = records[0]
    assert set(first) == {"id", "label", "probs", "explain"}
    assert set(first["probs"]) == {"0", "1"}
    assert abs(sum(first["probs"].values()) - 1) < 1e-5
    assert set(first["explain"]) == {"efficientnet-lite0", "minilm"}
    assert abs(sum(first["explain"].values()) - 1) < 1e-5

    out = trained["work"] / "pred.csv"
    result = mmtk("predict", str(trained["run"]), str(trained["test"]), "--out", str(out), store=trained["store"])
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 40 and {"id", "label"} <= set(rows[0])


def test_predict_on_new_data_extracts_missing_features(trained, tmp_path):
    """A user predicts on items never seen before: the run's backbones fill the store."""
    fresh = tmp_path / "fresh.jsonl"
    rows = [json.loads(line) for line in trained["test"].read_text().splitlines()[:3]]
    fresh.write_text("".join(json.dumps({"id": f"new-{i}", "img": r["img"], "text": r["text"] + " today"}) + "\n" for i, r in enumerate(rows)))
    result = mmtk("predict", str(trained["run"]), str(fresh), store=trained["store"])
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["new-0", "new-1", "new-2"]


def test_predict_into_closed_pipe_is_quiet(trained):
    env = dict(os.environ, MMTK_STORE=str(trained["store"]))
    shell = f"{sys.executable} -m mmtk predict {trained['run']} {trained['test']} | head -n 1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["id"]


def test_missing_label_column_for_evaluate_is_one_line(trained, tmp_path):
    unlabelled = tmp_path / "unlabelled.jsonl"
    rows = [json.loads(line) for line in trained["test"].read_text().splitlines()[:3]]
    unlabelled.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "label"}) + "\n" for r in rows))
    result = mmtk("evaluate", str(trained["run"]), str(unlabelled), store=trained["store"])
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "label" in result.stderr


def test_on_error_skip_leaves_out_bad_rows_and_lists_them(trained, tmp_path):
    rows = [json.loads(line) for line in trained["test"].read_text().splitlines()[:4]]
    rows[1]["text"] = ""
    data = tmp_path / "one_bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    strict = mmtk("predict", str(trained["run"]), str(data), store=trained["store"])
    assert strict.returncode == 2
    assert f"{data}:2" in strict.stderr and "Traceback" not in strict.stderr

    skipping = mmtk("predict", str(trained["run"]), str(data), "--on-error", "skip", store=trained["store"])
    assert skipping.returncode == 0, skipping.stderr
    assert [json.loads(line)["id"] for line in skipping.stdout.splitlines()] == [str(rows[i]["id"]) for i in (0, 2, 3)]
    assert "skipped" in skipping.stderr and f"{data}:2" in skipping.stderr

    evaluated = mmtk("evaluate", str(trained["run"]), str(data), "--on-error", "skip", "--json", store=trained["store"])
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n"] == 3
