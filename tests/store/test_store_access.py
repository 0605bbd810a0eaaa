"""Who may use a store: a read-only store (a shared, mounted cache) can be listed,
inspected, verified and read; files follow the umask so a group can share a store.

The suite often runs as root, and root ignores permission bits, so chmod alone would
test nothing there. Two tests make read-only meaningful anyway: one forces the
read-only open path in-process (its SQLite connection really is ``mode=ro``, so even
root cannot write through it), and one runs the CLI against a chmod'ed store in a
child that cannot override permission bits: as root, through ``setpriv`` with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its bounding set (so root
obeys the bits like any user); as any other user, as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmtk.store.index as index_module
from mmtk.errors import StoreError
from mmtk.store import FeatureStore
from store_writer import key, value

META = {"backbone": "vec-test", "modality": "image", "kind": "vector", "dim": 8}
FP = "c" * 64
REPO = Path(__file__).resolve().parents[2]


def _filled(root: Path, n: int = 20) -> list[str]:
    store = FeatureStore(root)
    store.register(FP, META)
    keys = [key(i) for i in range(n)]
    for start in range(0, n, 10):
        store.put(FP, keys[start : start + 10], [value(k, 8) for k in keys[start : start + 10]])
    store.close()
    return keys


def test_forced_read_only_open_lists_verifies_and_gathers(tmp_path, monkeypatch):
    keys = _filled(tmp_path / "store")
    digest = FeatureStore(tmp_path / "store").info("vec-test")["digest"]
    monkeypatch.setattr(index_module, "_writable", lambda path: False)
    store = FeatureStore(tmp_path / "store")
    assert store.index.read_only()
    assert [s["items"] for s in store.feature_sets()] == [20]
    assert store.info("vec-test")["digest"] == digest
    assert store.verify()["ok"]
    np.testing.assert_array_equal(store.gather(FP, keys), np.stack([value(k, 8) for k in keys]))
    with pytest.raises(StoreError, match="is read-only here") as err:
        store.put(FP, ["new"], [np.ones(8)])
    assert "--store" in err.value.hint
    with pytest.raises(StoreError, match="is read-only here"):
        store.remove("vec-test")
    # Maintenance with nothing to change writes nothing, so it works read-only too.
    assert store.repair()["dropped_items"] == 0
    store.close()
    # The refused put left no shard behind and the index as it was.
    assert FeatureStore(tmp_path / "store").verify() == {**store.verify(), "orphans": []}


def _without_override() -> list[str]:
    """A command prefix under which the permission bits bind, root included."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits cannot be made to bind")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def test_a_chmod_read_only_store_works_for_a_user_who_cannot_write_it(tmp_path):
    """The store was closed cleanly, so it has no -shm file and the directory cannot get
    one: SQLite's mode=ro refuses it ("attempt to write a readonly database") and the
    index is read as immutable."""
    root = tmp_path / "store"
    keys = _filled(root)
    assert not (root / "index.sqlite-shm").exists()
    for path in [root, *root.rglob("*")]:
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) & ~0o222)
    prefix = _without_override()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        # The bits bind in the child: it cannot even create a file in the store.
        probe = subprocess.run([*prefix, sys.executable, "-c", "import sys; open(sys.argv[1], 'w')", str(root / "probe")], capture_output=True)
        assert probe.returncode != 0 and not (root / "probe").exists()

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*prefix, sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp_path)

        listed = run("-m", "mmtk", "store", "ls", "--json", "--store", str(root))
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["feature_sets"][0]["items"] == 20
        info = run("-m", "mmtk", "store", "info", "vec-test", "--json", "--store", str(root))
        assert info.returncode == 0, info.stderr
        verified = run("-m", "mmtk", "store", "verify", "--store", str(root))
        assert verified.returncode == 0, verified.stderr
        gathered = run(
            "-c",
            "import sys; from mmtk.store import FeatureStore; "
            "print(float(FeatureStore(sys.argv[1]).gather(sys.argv[2], sys.argv[3:]).sum()))",
            str(root), FP, *keys,
        )
        assert gathered.returncode == 0, gathered.stderr
        assert float(gathered.stdout) == pytest.approx(float(np.stack([value(k, 8) for k in keys]).sum()), rel=1e-5)
        removed = run("-m", "mmtk", "store", "rm", "vec-test", "--store", str(root))
        assert removed.returncode == 2, removed.stderr
        assert len(removed.stderr.strip().splitlines()) == 1 and "read-only" in removed.stderr
        assert sorted(p.name for p in root.iterdir()) == ["index.sqlite", "shards"]
    finally:
        for path in [root, *root.rglob("*")]:
            os.chmod(path, stat.S_IMODE(path.stat().st_mode) | 0o200)


@pytest.mark.parametrize("umask", [0o002, 0o077])
def test_index_and_shards_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        _filled(tmp_path / "store")
    finally:
        os.umask(old)
    root = tmp_path / "store"
    files = [root / "index.sqlite", *root.rglob("*.npy")]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o666 & ~umask)}
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in dirs} == {oct(0o777 & ~umask)}
