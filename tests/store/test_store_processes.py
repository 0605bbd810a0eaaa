"""Crash safety and concurrent writers, with real processes: a writer killed with
SIGKILL at random moments, and two writers racing over overlapping keys."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmtk.store import FeatureStore
from store_writer import FINGERPRINT, key, value

WRITER = Path(__file__).with_name("store_writer.py")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def _start(root: Path, start: int, stop: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(root), str(start), str(stop), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _assert_one_row_per_key(root: Path, n: int) -> None:
    with sqlite3.connect(root / "index.sqlite") as conn:
        rows, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM items").fetchone()
    assert rows == distinct == n


def _assert_values(store: FeatureStore, keys: list[str]) -> None:
    if keys:
        np.testing.assert_array_equal(store.gather(FINGERPRINT, keys), np.stack([value(k) for k in keys]))


def test_sigkill_at_random_moments_then_resume(tmp_path):
    root, n = tmp_path / "store", 4000
    keys = [key(i) for i in range(n)]
    store = FeatureStore(root)
    rng = random.Random(1234)
    committed_before, killed_while_writing = 0, 0
    for attempt in range(5):
        # 100 batches of 40 with 5 ms of pretend compute each: about a second of writing,
        # so kills at 0.02-0.25 s land mid-run however fast the machine is.
        proc = _start(root, 0, n, "--batch", "40", "--seed", str(attempt), "--compute-s", "0.005")
        first = json.loads(proc.stdout.readline())
        # The writer asks the store what is missing: everything committed so far is skipped.
        assert first == {"todo": n - committed_before}
        time.sleep(rng.uniform(0.02, 0.25))
        killed_while_writing += proc.poll() is None
        proc.send_signal(signal.SIGKILL)  # a no-op when poll() above already reaped it
        proc.wait()
        proc.stdout.close()

        report = store.verify()
        assert report["ok"], report["problems"]
        absent = set(store.missing(FINGERPRINT, keys))
        done = [k for k in keys if k not in absent]
        assert len(done) >= committed_before
        _assert_values(store, done)  # every visible entry is complete and correct
        committed_before = len(done)
    assert killed_while_writing >= 3

    proc = _start(root, 0, n, "--batch", "40", "--seed", "99")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    events = _events(out)
    assert events[0] == {"todo": n - committed_before}
    assert sum(e.get("inserted", 0) for e in events) == n - committed_before
    assert events[-1] == {"done": True}

    _assert_one_row_per_key(root, n)
    _assert_values(store, keys)
    store.gc(min_age_s=0)
    report = store.verify()
    assert report["ok"] and report["orphans"] == [] and report["items"] == n


def test_two_writers_on_overlapping_keys_with_concurrent_gc_and_reads(tmp_path):
    root = tmp_path / "store"
    go = tmp_path / "go"
    procs = [
        _start(root, 0, 3000, "--batch", "50", "--seed", "1", "--go", str(go)),
        _start(root, 1500, 4500, "--batch", "50", "--seed", "2", "--go", str(go)),
    ]
    for proc in procs:
        assert json.loads(proc.stdout.readline()) == {"ready": True}
    go.touch()

    # Meanwhile this process compacts and reads the store the writers are filling.
    store = FeatureStore(root)
    all_keys = [key(i) for i in range(4500)]
    while any(p.poll() is None for p in procs):
        if (root / "index.sqlite").exists() and store.feature_sets():
            store.gc(compact_min_shards=4)
            absent = set(store.missing(FINGERPRINT, all_keys))
            present = [k for k in all_keys if k not in absent]
            _assert_values(store, present)
            report = store.verify()
            assert report["ok"], report["problems"]
            assert len(store.info(FINGERPRINT)["digest"]) == 32
        time.sleep(0.02)

    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    events = [_events(out) for out in outputs]
    inserted = sum(e.get("inserted", 0) for ev in events for e in ev)
    computed = sum(e.get("put", 0) for ev in events for e in ev)
    assert inserted == 4500  # each key committed by exactly one of the writers
    assert computed >= 4500

    _assert_one_row_per_key(root, 4500)
    _assert_values(store, all_keys)
    report = store.verify()
    assert report["ok"] and report["orphans"] == [] and report["items"] == 4500
