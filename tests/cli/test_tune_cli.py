"""`mmtk tune` from the command line: a clean JSON summary, a retrained run that
`mmtk evaluate` reads, a best.json command that trains the best trial again, and bad
space files refused with one line before any trial runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from synthetic_features import store_xor_features, write_xor_dataset


def mmtk(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmtk.data import read_dataset
    from mmtk.store import FeatureStore

    root = tmp_path_factory.mktemp("tune_cli")
    data = write_xor_dataset(root, "train", 80, seed=1)
    store_xor_features(read_dataset(data), FeatureStore(root / "store"), seed=3)
    space = root / "space.yaml"
    space.write_text("lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\nhidden: {type: int, low: 4, high: 16}\n")
    env = {**os.environ, "MMTK_STORE": str(root / "store")}
    base = [str(data), "--features", "efficientnet-lite0,minilm", "--model", "concat", "--task", "label:binary", "--epochs", "3"]
    return {"root": root, "data": str(data), "space": str(space), "env": env, "base": base}


def test_tune_json_retrain_and_the_best_command(world):
    out = world["root"] / "tuned"
    made = mmtk("tune", *world["base"], "--space", world["space"], "--trials", "3", "--metric", "accuracy", "--out", str(out),
                "--retrain", "--json", env=world["env"])
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""  # not a terminal: no progress bars, no logs
    summary = json.loads(made.stdout)
    assert summary["ran"] == 3 and sum(summary["counts"].values()) == 3
    assert summary["run"] == str(out / "best-run") and summary["metric"] == "accuracy"
    best = summary["best"]
    assert best == json.loads((out / "best.json").read_text())

    evaluated = mmtk("evaluate", summary["run"], world["data"], "--json", env=world["env"])
    assert evaluated.returncode == 0, evaluated.stderr
    assert 0 <= json.loads(evaluated.stdout)["metrics"]["accuracy"] <= 1

    # best.json's command trains the best trial again: the same split, seed and
    # settings give the validation accuracy the trial scored.
    argv = best["argv"]
    assert argv[:2] == ["mmtk", "train"] and argv[-2] == "--out"
    again = mmtk(*argv[1:-1], str(world["root"] / "again"), env=world["env"])
    assert again.returncode == 0, again.stderr
    metrics = json.loads((world["root"] / "again" / "metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] == pytest.approx(best["value"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hiden: {type: int, low: 4, high: 16}\n", "hiden: not a training option nor a parameter of model 'concat'"),
        ("lr: {type: number, low: 0.001, high: 0.1}\n", "lr: type 'number' is not one of float, int, categorical"),
        ("", "is empty"),
    ],
)
def test_bad_space_files_exit_2_with_one_line(world, tmp_path, text, expected):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    result = mmtk("tune", *world["base"], "--space", str(space), "--out", str(tmp_path / "out"), env=world["env"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(space) in lines[0] and expected in lines[0]
    assert not (tmp_path / "out").exists()  # refused before any study or trial


def test_training_options_left_at_their_defaults_can_be_tuned(world, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("weight_decay: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\nbatch_size: {type: categorical, choices: [16, 32]}\n")
    tuned = mmtk("tune", *world["base"], "--space", str(space), "--trials", "1", "--out", str(tmp_path / "ok"), "--json", env=world["env"])
    assert tuned.returncode == 0, tuned.stderr
    assert set(json.loads(tuned.stdout)["best"]["params"]) == {"weight_decay", "batch_size"}
    # Given on the command line as well, it is both fixed and tuned: refused.
    both = mmtk("tune", *world["base"], "--batch-size", "8", "--space", str(space), "--out", str(tmp_path / "no"), env=world["env"])
    assert both.returncode == 2 and "batch_size is both tuned and fixed" in both.stderr
