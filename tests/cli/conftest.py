"""A trained run on synthetic features, shared by the CLI tests that need one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthetic_features import store_xor_features, write_xor_dataset


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A store holding synthetic features of a 40-item dataset, and a run trained on
    them by ``mmtk train``: paths, the train arguments and an environment naming the store."""
    from mmtk.data import read_dataset
    from mmtk.store import FeatureStore

    root = tmp_path_factory.mktemp("trained")
    data = write_xor_dataset(root, "train", 40, seed=1)
    store = root / "store"
    store_xor_features(read_dataset(data), FeatureStore(store), seed=3)
    env = {**os.environ, "MMTK_STORE": str(store)}
    train = [str(data), "--features", "efficientnet-lite0,minilm", "--model", "concat", "--task", "label:binary", "--epochs", "1"]
    made = subprocess.run(
        [sys.executable, "-m", "mmtk", "train", *train, "--out", str(root / "run")], capture_output=True, text=True, env=env
    )
    assert made.returncode == 0, made.stderr
    return {"root": root, "data": str(data), "run": str(root / "run"), "store": store, "train": train, "env": env}
