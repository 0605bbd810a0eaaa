"""Run directories (mmtk.runs): the weights' checksum, damaged runs refused with one line,
runs written before the checksum existed, and file modes that follow the umask."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmtk.errors import DataError, UsageError
from mmtk.predict import predict
from mmtk.runs import CONFIG, WEIGHTS, WEIGHTS_SHA256, load_run, save_run
from mmtk.store import FeatureStore
from mmtk.train import train
from synthetic_features import FEATURES, xor_split

TINY = {"epochs": 2, "hidden": 8, "dropout": 0.1, "patience": 2}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny GMU run, its store and its test set, trained once for the module."""
    folder = tmp_path_factory.mktemp("runs")
    store = FeatureStore(folder / "store")
    train_ds, test_ds = xor_split(folder, store, n_train=40, n_test=12)
    train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=folder / "run", store=store, **TINY)
    return folder / "run", store, test_ds


@pytest.fixture
def run(made, tmp_path) -> Path:
    """A copy of the module's run that a test may damage."""
    shutil.copytree(made[0], tmp_path / "run")
    return tmp_path / "run"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_config(run: Path, edit) -> None:
    config = json.loads((run / CONFIG).read_text())
    edit(config)
    (run / CONFIG).write_text(json.dumps(config, indent=2))


DAMAGE = {
    "zero bytes": lambda weights: weights.write_bytes(b""),
    "truncated": lambda weights: weights.write_bytes(weights.read_bytes()[:-40]),
    "header byte flipped": lambda weights: _flip(weights, 12),
    "data byte flipped": lambda weights: _flip(weights, weights.stat().st_size - 5),
}


def test_config_records_the_weights_sha256(run):
    recorded = json.loads((run / CONFIG).read_text())[WEIGHTS_SHA256]
    assert recorded == hashlib.sha256((run / WEIGHTS).read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_weights_are_refused_naming_the_file(run, damage):
    DAMAGE[damage](run / WEIGHTS)
    with pytest.raises(DataError, match=f"{run / WEIGHTS} is damaged: .*restore the run from a backup, or retrain it") as caught:
        load_run(run)
    assert "\n" not in str(caught.value)


def test_a_run_saved_before_checksums_still_loads(made, run):
    # The previous version wrote the same config without the checksum key.
    _edit_config(run, lambda config: config.pop(WEIGHTS_SHA256))
    _, store, test_ds = made
    assert predict(run, test_ds, store=store, device="cpu") == predict(made[0], test_ds, store=store, device="cpu")


@pytest.mark.parametrize("damage", ["zero bytes", "truncated", "header byte flipped"])
def test_an_old_run_with_unreadable_weights_is_refused(run, damage):
    _edit_config(run, lambda config: config.pop(WEIGHTS_SHA256))
    DAMAGE[damage](run / WEIGHTS)
    with pytest.raises(DataError, match=f"{run / WEIGHTS} is damaged: not a readable safetensors file"):
        load_run(run)


def test_input_dims_that_do_not_match_the_weights_are_one_line(run):
    _edit_config(run, lambda config: config["model"]["input_dims"].update(minilm=9))
    with pytest.raises(UsageError, match="config.json does not match the run's model .*size mismatch.*retrain the run") as caught:
        load_run(run)
    assert "\n" not in str(caught.value) and "\t" not in str(caught.value)


def test_cli_exits_2_with_one_line_for_a_damaged_run(made, run):
    DAMAGE["header byte flipped"](run / WEIGHTS)
    _, store, test_ds = made
    result = subprocess.run(
        [sys.executable, "-m", "mmtk", "predict", str(run), str(test_ds.source), "--store", str(store.root)],
        capture_output=True, text=True, env={**os.environ, "MMTK_DEBUG": ""},
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and str(run / WEIGHTS) in result.stderr and "internal error" not in result.stderr


class _Tiny:
    """The part of a torch module that save_run uses."""

    def state_dict(self):
        import torch

        return {"w": torch.ones(2, 3)}


@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o002, 0o775, 0o664), (0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_run_modes_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    previous = os.umask(umask)
    try:
        out = save_run(tmp_path / "run", config={"model": {}}, model=_Tiny(), metrics={}, log=[{"epoch": 1}])
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == dir_mode
    assert {entry.name: entry.stat().st_mode & 0o777 for entry in out.iterdir()} == dict.fromkeys(
        ["config.json", "metrics.json", "model.safetensors", "train_log.jsonl"], file_mode
    )
    assert [entry.name for entry in tmp_path.iterdir()] == ["run"]  # no staging folder left behind


def test_a_replacement_killed_between_its_renames_is_undone(tmp_path):
    """A process killed after moving the old copy aside, before renaming the new one in,
    leaves ``out`` missing: the next reader gets the old copy back, not 'no such run'."""
    from mmtk.runs import recover_replaced, replace_dir

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("old", encoding="utf-8")
    aside = tmp_path / ".run.old-abc"
    aside.mkdir()
    os.rename(out, aside / "run")  # the first rename of replace_dir, then the kill
    recover_replaced(out)
    assert (out / "config.json").read_text(encoding="utf-8") == "old"
    assert not aside.exists()

    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "config.json").write_text("new", encoding="utf-8")
    replace_dir(staging, out)
    assert (out / "config.json").read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing left aside


def test_load_run_recovers_a_run_whose_replacement_was_killed(made, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(made[0], copy)
    aside = tmp_path / ".copy.old-xyz"
    aside.mkdir()
    os.rename(copy, aside / "run")
    assert load_run(copy).config["model"]["name"] == load_run(made[0]).config["model"]["name"]
