"""Deterministic feature data for the store tests, and a writer process they can kill.

Run as a script it is one ``extract-features``-like writer: it registers a vector
feature set, asks the store which of its keys are missing and puts them in batches,
printing one JSON line per step so the test can count what it committed.

    python store_writer.py STORE KEY_FROM KEY_TO [--batch N] [--seed S] [--go FILE] [--compute-s S]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

FINGERPRINT = "f" * 8 + hashlib.sha256(b"store-writer").hexdigest()[:56]
DIM = 16
META = {"backbone": "writer-test", "modality": "image", "kind": "vector", "dim": DIM}


def key(i: int) -> str:
    """The content key of item ``i`` (hex, like real content keys)."""
    return hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()


def value(k: str, dim: int = DIM) -> np.ndarray:
    """The one correct feature vector for key ``k``: any writer computes the same."""
    return np.random.default_rng(int(k[:15], 16)).standard_normal(dim).astype(np.float32)


def sequence(k: str, dim: int = DIM, max_len: int = 6) -> np.ndarray:
    """The one correct feature sequence for key ``k`` (length 0 to ``max_len``)."""
    rng = np.random.default_rng(int(k[:15], 16))
    return rng.standard_normal((int(rng.integers(0, max_len + 1)), dim)).astype(np.float32)


def rewrite_shard(root: Path, shard_id: int, path: Path, array: np.ndarray) -> None:
    """Save ``array`` as shard ``shard_id`` and record its checksum and its items'
    digests to match: a store written by other means (or by a writer without put's
    finite check), consistent with its index, whatever the values."""
    import sqlite3

    from mmtk.store.shards import checksum_rows, item_digest

    np.save(path, array)
    with sqlite3.connect(root / "index.sqlite") as conn:
        conn.execute("UPDATE shards SET checksum = ? WHERE id = ?", (checksum_rows(array), shard_id))
        items = conn.execute("SELECT key, start, length FROM items WHERE shard = ?", (shard_id,)).fetchall()
        conn.executemany(
            "UPDATE items SET digest = ? WHERE shard = ? AND key = ?",
            [(item_digest(array[start : start + length]), shard_id, k) for k, start, length in items],
        )
    conn.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("start", type=int)
    parser.add_argument("stop", type=int)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--go", help="wait until this file exists (a common start signal)")
    parser.add_argument(
        "--compute-s", type=float, default=0.0,
        help="seconds of pretend model work before each batch, so a kill lands mid-run even on a fast machine",
    )
    args = parser.parse_args(argv)

    from mmtk.store import FeatureStore

    keys = [key(i) for i in range(args.start, args.stop)]
    np.random.default_rng(args.seed).shuffle(keys)
    if args.go:
        print(json.dumps({"ready": True}), flush=True)
        while not Path(args.go).exists():
            time.sleep(0.005)
    store = FeatureStore(args.store)
    store.register(FINGERPRINT, META)
    todo = store.missing(FINGERPRINT, keys)
    print(json.dumps({"todo": len(todo)}), flush=True)
    for start in range(0, len(todo), args.batch):
        batch = todo[start : start + args.batch]
        time.sleep(args.compute_s)
        inserted = store.put(FINGERPRINT, batch, [value(k) for k in batch])
        print(json.dumps({"put": len(batch), "inserted": inserted}), flush=True)
    print(json.dumps({"done": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
