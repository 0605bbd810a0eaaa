"""`mmtk store ...` on missing, damaged and full stores: the exit code is the contract
(2 bad input with one line naming the file and the fix, 1 when verify finds a problem,
never 3), and damage always has a way back through `store repair`."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.store import FeatureStore
from store_writer import key, value
from tiny_models import write_image

runner = CliRunner()
META = {"backbone": "vec-test", "modality": "image", "kind": "vector", "dim": 8}


def invoke(*args: str):
    return runner.invoke(app, list(args))


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture
def filled(tmp_path) -> FeatureStore:
    store = FeatureStore(tmp_path / "store")
    store.register("a" * 64, META)
    keys = [key(i) for i in range(20)]
    for start in (0, 10):
        store.put("a" * 64, keys[start : start + 10], [value(k, 8) for k in keys[start : start + 10]])
    store.close()
    return store


def _shard_files(store: FeatureStore) -> list[Path]:
    return sorted((store.root / "shards").rglob("*.npy"), key=lambda p: p.stat().st_mtime_ns)


@pytest.mark.parametrize("command", [["ls"], ["info", "vec-test"], ["verify"], ["gc"], ["repair"], ["rm", "vec-test"]])
def test_a_store_that_does_not_exist_is_exit_2_and_is_not_created(tmp_path, command):
    typo = tmp_path / "typo" / "path"
    result = invoke("store", *command, "--store", str(typo))
    assert result.exit_code == 2, result.output
    assert f"no feature store at {typo}" in _error_line(result)
    assert not typo.exists() and not typo.parent.exists()


def test_verify_failure_ends_with_the_repair_command(filled):
    _shard_files(filled)[0].write_bytes(b"")
    result = invoke("store", "verify", "--store", str(filled.root))
    assert result.exit_code == 1, result.output
    assert "is unreadable" in result.stdout
    assert _error_line(result).endswith(f"mmtk store repair --store {filled.root}")


def test_a_zero_length_shard_is_exit_2_naming_it(filled):
    empty = _shard_files(filled)[0]
    empty.write_bytes(b"")
    result = invoke("store", "info", "vec-test", "--store", str(filled.root))
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert str(empty) in line and "mmtk store repair" in line


def test_corrupted_sqlite_pages_are_exit_2_and_verify_exit_1(filled):
    index = filled.root / "index.sqlite"
    with sqlite3.connect(index) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    size = index.stat().st_size
    with open(index, "rb+") as f:
        f.seek(page_size)
        f.write(np.random.default_rng(1).integers(0, 256, size - page_size, dtype=np.uint8).tobytes())
    listed = invoke("store", "ls", "--store", str(filled.root))
    assert listed.exit_code == 2, listed.output
    assert f"the feature store index {index} is damaged" in _error_line(listed)
    verified = invoke("store", "verify", "--store", str(filled.root), "--json")
    assert verified.exit_code == 1, verified.output
    report = json.loads(verified.stdout)
    assert report["index_damaged"] and not report["ok"]
    assert "move" in _error_line(verified)


def test_rm_refuses_an_ambiguous_name_with_the_candidates(filled):
    store = FeatureStore(filled.root)
    store.register("b" * 64, {**META, "variant": "seq", "kind": "sequence"})
    store.close()
    ambiguous = invoke("store", "rm", "vec-test", "--store", str(filled.root))
    assert ambiguous.exit_code == 2
    line = _error_line(ambiguous)
    assert "matches several feature sets" in line and "aaaaaaaaaaaa" in line and "bbbbbbbbbbbb (vec-test seq)" in line
    removed = invoke("store", "rm", "aaaa", "--store", str(filled.root), "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.stdout) == {"fingerprint": "a" * 64, "backbone": "vec-test", "items": 20, "shards": 2}
    assert _shard_files(filled) == []
    assert invoke("store", "verify", "--store", str(filled.root)).exit_code == 0


def test_rm_finds_a_local_model_by_its_relative_path(tmp_path, monkeypatch):
    """The store lists local models by absolute path; `rm hf:./m` means that one."""
    (tmp_path / "m").mkdir()
    store = FeatureStore(tmp_path / "store")
    store.register("d" * 64, {**META, "backbone": f"hf:{tmp_path / 'm'}"})
    store.close()
    monkeypatch.chdir(tmp_path)
    result = invoke("store", "rm", "hf:./m", "--store", str(tmp_path / "store"))
    assert result.exit_code == 0, result.output
    assert f"removed hf:{tmp_path / 'm'}" in result.stdout


# --------------------------------------------------------------------------- end to end


def _dataset(folder: Path, count: int, name: str) -> Path:
    lines = []
    for i in range(count):
        image = folder / f"i{i}.png"
        if not image.exists():
            write_image(image, seed=i)
        lines.append(json.dumps({"id": f"i{i}", "img": image.name}))
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_full_disk_during_extraction_is_exit_2(tmp_path, monkeypatch):
    data = _dataset(tmp_path, 4, "data.jsonl")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "write_array", no_space)
    result = invoke("extract-features", str(data), "--backbone", "pixels", "--store", str(tmp_path / "store"), "--num-workers", "1")
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "no space left on the disk holding" in line and str(tmp_path / "store") in line and "--store" in line


def mmtk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True)


def test_damage_verify_repair_extract_restores_the_exact_store(tmp_path):
    """The audit's path back: a damaged shard is found, dropped, recomputed, and the
    store ends equal to one that was never damaged."""
    first, full = _dataset(tmp_path, 6, "first.jsonl"), _dataset(tmp_path, 12, "full.jsonl")
    store = tmp_path / "store"
    for data in (first, full):  # two extractions: two shards of 6 items
        assert mmtk("extract-features", str(data), "--backbone", "pixels", "--store", str(store)).returncode == 0
    pristine = json.loads(mmtk("store", "info", "pixels", "--json", "--store", str(store)).stdout)["digest"]
    shards = sorted((store / "shards").rglob("*.npy"))
    assert len(shards) == 2
    data = bytearray(shards[1].read_bytes())
    data[-5] ^= 0x40
    shards[1].write_bytes(bytes(data))

    verify = mmtk("store", "verify", "--store", str(store))
    assert verify.returncode == 1 and "does not match its checksum" in verify.stdout
    assert verify.stderr.strip().endswith(f"mmtk store repair --store {store}")
    assert mmtk("store", "info", "pixels", "--store", str(store)).returncode == 2

    repair = mmtk("store", "repair", "--json", "--store", str(store))
    assert repair.returncode == 0, repair.stderr
    report = json.loads(repair.stdout)
    assert report["dropped_items"] == 6 and len(report["damaged_shards"]) == 1

    again = mmtk("extract-features", str(full), "--backbone", "pixels", "--store", str(store), "--json")
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)["backbones"][0]
    assert (counts["cached"], counts["computed"]) == (6, 6)
    assert mmtk("store", "verify", "--store", str(store)).returncode == 0
    assert json.loads(mmtk("store", "info", "pixels", "--json", "--store", str(store)).stdout)["digest"] == pristine
