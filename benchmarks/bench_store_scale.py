"""How the feature store's operations grow with its size (issue 15, "the store at
internet scale").

For each size N (default 1e4, 1e5, 1e6, 1e7) a synthetic store of N items of 384-d
vectors (random float16 values; the store keeps float32, 1,536 bytes per item) is built
with ``FeatureStore.put`` in commits of ``--put-items`` items (one shard each), and then,
each in a fresh process so no cache of an earlier operation helps:

- ``open``: ``FeatureStore(root)`` and its first index query;
- ``missing`` for 1,000,000 distinct keys, half of them stored (all N when N < 500,000);
- ``gather`` of 100,000 random stored keys, with the process's peak RSS
  (``VmHWM`` in ``/proc/self/status``: ``getrusage``'s maxrss would carry over the
  parent's peak across ``exec``) and the RSS before the gather, against the output's size;
  warm (shards in the page cache, as after building) and cold (the shard files dropped
  from the page cache first with ``posix_fadvise(DONTNEED)``);
- ``verify`` (every shard's checksum: reads every byte) from a cold page cache, against
  reading the same shard files raw from a cold page cache (MB/s, ratio);
- ``gc`` (nothing to collect: the cost of finding that out);
- the same ``missing``, ``gather`` and ``verify`` on the same store along the paths
  they took before this benchmark's fixes (``--op ... --old``, see ``use_old_paths``),
  alternating with the current ones, so the two are compared side by side in one run;
- ``commit``: 50 ``put``s of 512 new items each, extraction's commit size (one shard
  written and fsynced, one SQLite transaction each), as items/s into a store of N.

    python benchmarks/bench_store_scale.py [--sizes 1e4 1e5 1e6 1e7] [--out DIR] [--keep]

Stores are built under ``--out`` (default benchmarks/out/store_scale) and deleted after
their size is measured unless ``--keep``. Prints one JSON line per measurement on stderr
and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FINGERPRINT = hashlib.sha256(b"bench_store_scale").hexdigest()
DIM = 384
MISSING_KEYS = 1_000_000
GATHER_KEYS = 100_000
COMMITS, COMMIT_ITEMS = 50, 512  # extraction commits at most 512 items (mmtk.extract)


def key(i: int) -> str:
    """The i-th item's key, shaped like a content key ("f:" + 40 hex digits), in no
    particular order (as content hashes are)."""
    return "f:" + hashlib.blake2b(i.to_bytes(8, "little"), digest_size=20).hexdigest()


def keys(indices) -> list[str]:
    return [key(int(i)) for i in indices]


def build(root: Path, n: int, put_items: int) -> dict:
    """A store of ``n`` items written with ``put`` in commits of ``put_items``."""
    from mmtk.store import FeatureStore

    store = FeatureStore(root)
    store.register(FINGERPRINT, {"backbone": "bench", "modality": "image", "kind": "vector", "dim": DIM})
    rng = np.random.default_rng(n)
    start = time.perf_counter()
    for first in range(0, n, put_items):
        count = min(put_items, n - first)
        rows = rng.standard_normal((count, DIM), dtype=np.float32).astype(np.float16)
        store.put(FINGERPRINT, keys(range(first, first + count)), rows)
    seconds = time.perf_counter() - start
    store.close()
    return {"seconds": seconds, "items_per_s": n / seconds}


def shard_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "shards").rglob("*.npy") if p.is_file())


def evict(root: Path) -> None:
    """Drop the store's files from the page cache (clean pages of files we may read)."""
    for path in [*shard_files(root), *root.glob("index.sqlite*")]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory figure (VmRSS: now, VmHWM: peak) in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ----------------------------------------------------------------- one operation, in a child


def use_old_paths() -> None:
    """Make this process read the store as mmtk did before item digests and sorted
    lookups: keys looked up in the caller's order, and no item digests, so a gather
    checks each shard it touches whole (what items stored without digests still get)
    and verify hashes every shard whole before checking NaN. Benchmark-only."""
    import mmtk.store.index as index_module

    index_module.sorted = list  # present()/locate() chunk the keys unsorted
    index_module.StoreIndex._digest_column = lambda self: "NULL"


def run_op(op: str, root: Path, n: int, old: bool = False) -> dict:
    from mmtk.store import FeatureStore

    if old:
        use_old_paths()

    rng = np.random.default_rng(12345)
    if op == "open":
        start = time.perf_counter()
        store = FeatureStore(root)
        store.index.feature_set_meta(FINGERPRINT)
        return {"seconds": time.perf_counter() - start}
    store = FeatureStore(root)
    store.index.feature_set_meta(FINGERPRINT)  # the connection is open before timing
    if op == "missing":
        present = min(MISSING_KEYS // 2, n)
        asked = keys(rng.choice(n, present, replace=False)) + keys(range(n, n + MISSING_KEYS - present))
        rng.shuffle(asked)
        start = time.perf_counter()
        absent = store.missing(FINGERPRINT, asked)
        seconds = time.perf_counter() - start
        assert len(absent) == MISSING_KEYS - present, (len(absent), present)
        return {"seconds": seconds, "asked": MISSING_KEYS, "present": present}
    if op == "gather":
        asked = keys(rng.choice(n, GATHER_KEYS, replace=n < GATHER_KEYS))
        before = status_kib("VmRSS")
        start = time.perf_counter()
        out = store.gather(FINGERPRINT, asked)
        seconds = time.perf_counter() - start
        peak = status_kib("VmHWM")
        return {"seconds": seconds, "rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024, "output_mib": out.nbytes / 2**20}
    if op == "verify":
        start = time.perf_counter()
        report = store.verify()
        seconds = time.perf_counter() - start
        assert report["ok"] and report["items"] == n, report
        return {"seconds": seconds, "peak_rss_mib": status_kib("VmHWM") / 1024}
    if op == "gc":
        start = time.perf_counter()
        report = store.gc()
        seconds = time.perf_counter() - start
        assert not report["orphans"] and not report["compacted_shards"], report
        return {"seconds": seconds, "peak_rss_mib": status_kib("VmHWM") / 1024}
    if op == "commit":
        rows = rng.standard_normal((COMMITS * COMMIT_ITEMS, DIM), dtype=np.float32).astype(np.float16)
        first = n + MISSING_KEYS  # keys nobody asked for before
        batches = [keys(range(first + i * COMMIT_ITEMS, first + (i + 1) * COMMIT_ITEMS)) for i in range(COMMITS)]
        start = time.perf_counter()
        for i, batch in enumerate(batches):
            assert store.put(FINGERPRINT, batch, rows[i * COMMIT_ITEMS : (i + 1) * COMMIT_ITEMS]) == COMMIT_ITEMS
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "items_per_s": COMMITS * COMMIT_ITEMS / seconds, "commits_per_s": COMMITS / seconds}
    if op == "raw-read":
        buffer = bytearray(8 << 20)
        total, start = 0, time.perf_counter()
        for path in shard_files(root):
            with open(path, "rb", buffering=0) as fh:
                while got := fh.readinto(buffer):
                    total += got
        return {"seconds": time.perf_counter() - start, "bytes": total}
    raise ValueError(op)


def child(op: str, root: Path, n: int, old: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--op", op, "--root", str(root), "--n", str(n), *(["--old"] if old else [])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- the table


def measure(root: Path, n: int, put_items: int) -> dict:
    if root.exists():
        shutil.rmtree(root)
    row: dict = {"n": n, "build": build(root, n, put_items)}
    row["shards"] = len(shard_files(root))
    row["shard_bytes"] = sum(p.stat().st_size for p in shard_files(root))
    row["index_bytes"] = sum(p.stat().st_size for p in root.glob("index.sqlite*"))
    log(row)
    row["open"] = child("open", root, n)
    for op in ("missing", "gather"):
        # Current and old paths alternating, twice each; the faster of each pair is kept.
        runs = {False: [], True: []}
        for old in (False, True, False, True):
            runs[old].append(child(op, root, n, old))
        row[op] = min(runs[False], key=lambda r: r["seconds"])
        row[f"{op}_old"] = min(runs[True], key=lambda r: r["seconds"])
        log({"n": n, op: runs[False], f"{op}_old": runs[True]})
    evict(root)
    row["gather_cold"] = child("gather", root, n)
    evict(root)
    row["gather_cold_old"] = child("gather", root, n, old=True)
    log({"n": n, "gather_cold": row["gather_cold"], "gather_cold_old": row["gather_cold_old"]})
    evict(root)
    row["raw_read"] = child("raw-read", root, n)
    evict(root)
    row["verify"] = child("verify", root, n)
    evict(root)
    row["verify_old"] = child("verify", root, n, old=True)
    row["gc"] = child("gc", root, n)
    row["commit"] = child("commit", root, n)  # last: it adds items
    log({"n": n, "raw_read": row["raw_read"], "verify": row["verify"], "verify_old": row["verify_old"], "gc": row["gc"], "commit": row["commit"]})
    return row


def log(obj: dict) -> None:
    print(json.dumps(obj), file=sys.stderr, flush=True)


def table(rows: list[dict]) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"

    head = ["items in store", *(f"{r['n']:,}" for r in rows)]
    lines = [
        ("build (put), items/s", lambda r: f"{r['build']['items_per_s']:,.0f} ({ms(r['build']['seconds'])})"),
        ("shards / shard bytes / index bytes", lambda r: f"{r['shards']} / {r['shard_bytes'] / 2**20:,.0f} MiB / {r['index_bytes'] / 2**20:,.0f} MiB"),
        ("open (first query)", lambda r: ms(r["open"]["seconds"])),
        (f"missing, {MISSING_KEYS:,} keys", lambda r: f"{ms(r['missing']['seconds'])} ({r['missing']['present']:,} present)"),
        ("missing, old path (unsorted lookups)", lambda r: ms(r["missing_old"]["seconds"])),
        (f"gather {GATHER_KEYS:,} random, warm", lambda r: ms(r["gather"]["seconds"])),
        ("gather warm, old path (whole-shard checksums)", lambda r: ms(r["gather_old"]["seconds"])),
        ("gather, peak RSS (before) / output", lambda r: f"{r['gather']['peak_rss_mib']:,.0f} ({r['gather']['rss_before_mib']:,.0f}) / {r['gather']['output_mib']:,.0f} MiB"),
        ("gather, old path, peak RSS", lambda r: f"{r['gather_old']['peak_rss_mib']:,.0f} MiB"),
        (f"gather {GATHER_KEYS:,} random, cold cache", lambda r: ms(r["gather_cold"]["seconds"])),
        ("gather cold, old path", lambda r: ms(r["gather_cold_old"]["seconds"])),
        ("gather cold, peak RSS", lambda r: f"{r['gather_cold']['peak_rss_mib']:,.0f} MiB"),
        ("verify, cold cache", lambda r: f"{ms(r['verify']['seconds'])}, {r['shard_bytes'] / 1e6 / r['verify']['seconds']:,.0f} MB/s"),
        ("verify, old path (whole checksum + NaN pass)", lambda r: f"{ms(r['verify_old']['seconds'])}, {r['shard_bytes'] / 1e6 / r['verify_old']['seconds']:,.0f} MB/s"),
        ("raw read of the shards, cold cache", lambda r: f"{ms(r['raw_read']['seconds'])}, {r['raw_read']['bytes'] / 1e6 / r['raw_read']['seconds']:,.0f} MB/s"),
        ("verify / raw read throughput", lambda r: f"{r['raw_read']['seconds'] / r['verify']['seconds']:.2f}"),
        ("verify, peak RSS", lambda r: f"{r['verify']['peak_rss_mib']:,.0f} MiB"),
        ("gc (nothing to do)", lambda r: f"{ms(r['gc']['seconds'])}, peak RSS {r['gc']['peak_rss_mib']:,.0f} MiB"),
        (f"commits of {COMMIT_ITEMS} items, items/s (commits/s)", lambda r: f"{r['commit']['items_per_s']:,.0f} ({r['commit']['commits_per_s']:.0f})"),
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join([name, *(fmt(r) for r in rows)]) + " |" for name, fmt in lines]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--put-items", type=int, default=65536, help="items per put (one shard each)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "store_scale")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--old", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.op:
        print(json.dumps(run_op(args.op, args.root, args.n, args.old)))
        return
    rows = []
    for size in args.sizes:
        root = args.out / f"n{int(size)}"
        try:
            rows.append(measure(root, int(size), args.put_items))
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        print(table(rows), flush=True)


if __name__ == "__main__":
    main()
