"""Checkpoints and `train --resume OUT`: a run killed mid-training continues from its last
checkpoint and ends with the weights an uninterrupted run has."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from mmtk.store import FeatureStore
from mmtk.training.checkpoint import checkpoint_dir
from synthetic_features import xor_split

EPOCHS = 120

def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    store = FeatureStore(tmp_path / "store")
    xor_split(tmp_path, store, n_train=400, n_test=40)
    env = {**os.environ, "MMTK_STORE": str(tmp_path / "store")}
    common = ["--features", "efficientnet-lite0,minilm", "--model", "gmu", "--task", "label", "--hidden", "8",
              "--epochs", str(EPOCHS), "--patience", str(EPOCHS), "--checkpoint-every", "0", "--device", "cpu",
              "--schedule", "cosine", "--warmup", "0.1", "--quiet", "--json"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "mmtk", "train", str(tmp_path / "train.jsonl"), *common, "--out", str(killed)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = checkpoint_dir(killed) / "state.json"
    deadline = time.monotonic() + 120
    epoch = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            epoch = json.loads(state.read_text())["state"]["epoch"]
        except (OSError, ValueError):
            epoch = 0
        if epoch >= 3:
            break
        time.sleep(0.02)
    assert process.poll() is None, f"the run ended before it could be killed: {process.communicate()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not killed.exists() and state.is_file()
    stopped_at = json.loads(state.read_text())["state"]["epoch"]
    assert 3 <= stopped_at < EPOCHS

    resumed = subprocess.run([sys.executable, "-m", "mmtk", "train", "--resume", str(killed), "--quiet", "--json"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_run"] == EPOCHS
    assert not checkpoint_dir(killed).exists()  # a finished run keeps no checkpoint
    log = [json.loads(line) for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == list(range(1, EPOCHS + 1))

    whole = tmp_path / "whole"
    done = subprocess.run([sys.executable, "-m", "mmtk", "train", str(tmp_path / "train.jsonl"), *common, "--out", str(whole)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = load_file(str(killed / "model.safetensors")), load_file(str(whole / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    whole_log = [json.loads(line) for line in (whole / "train_log.jsonl").read_text().splitlines()]
    assert [e["val_loss"] for e in log] == [e["val_loss"] for e in whole_log]

def test_resume_without_a_checkpoint_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mmtk", "train", "--resume", str(tmp_path / "nothing")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no checkpoint of a killed run there" in done.stderr and len(done.stderr.strip().splitlines()) == 1

@pytest.mark.parametrize("args, message", [
    (["--model-arg", "width=3"], "model 'gmu' has no parameter 'width'"),
    (["--model-arg", "hidden"], "--model-arg 'hidden' is not KEY=VALUE"),
    (["--task-weight", "label=heavy"], "the weight is not a number"),
    (["--missing-modality", "ignore"], "--missing-modality 'ignore' is not one of fail, skip, zero, mask"),
])
def test_bad_training_options_exit_2_with_one_line(tmp_path, args, message):
    store = FeatureStore(tmp_path / "store")
    xor_split(tmp_path, store, n_train=20, n_test=10)
    done = subprocess.run([sys.executable, "-m", "mmtk", "train", str(tmp_path / "train.jsonl"), "--features", "efficientnet-lite0,minilm",
                           "--model", "gmu", "--task", "label", "--out", str(tmp_path / "run"), "--store", str(tmp_path / "store"), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
