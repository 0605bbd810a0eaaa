"""A sequence model over ``efficientnet-lite0:seq`` grids through both batch sources.

Builds N items (``--items``, default 10,000) with random 49 x 1280 float32 sequences (a
7x7 grid of EfficientNet-Lite0 activations, 245 KiB each: 2.5 GB for 10,000) stored
under the real ``efficientnet-lite0:seq`` fingerprint, and a binary label, in a fresh
store under ``--work`` (default a temporary folder on the same disk as /tmp). Then, each
in a child process so that its peak RSS (``ru_maxrss``) is its own:

1. ``store``: ``mmtk.train.train(..., model="attention-pool", max_memory=BUDGET)`` over
   every item for ``--epochs`` epochs: the inputs exceed the budget, so batches are read
   from the store's shards; reported: batch source, samples/s of the training loop,
   peak RSS.
2. ``fits``: the first ``--fit-items`` items (default 2,000, 490 MB) trained with a
   budget they fit in (in memory) and with one they do not (store-backed), alternating,
   ``--rounds`` times each, 2 epochs a run; reported per source: the best samples/s of
   the training loop (wall clock), and CPU seconds per epoch of the whole process
   (training and validation, the prefetch thread included: the cost on a quiet
   machine, since wall clock on a shared one also measures the neighbours), and the
   ratios store / memory.

Targets (issue 10): peak RSS <= 1.2 GB in (1); store-backed >= 0.8x in-memory in (2).

    .venv/bin/python benchmarks/bench_sequences.py [--items 10000] [--epochs 1] [--budget 200M]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS, DIM = 49, 1280


def build(folder: Path, items: int) -> Path:
    """Write the dataset and put its sequences into ``folder/store`` (in blocks, so
    building never holds more than one block)."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset
    from mmtk.store import FeatureStore

    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 2, items)
    rows = []
    for i in range(items):
        (folder / "img" / f"{i}.png").write_bytes(b"grid %d" % i)
        rows.append(json.dumps({"id": i, "img": f"img/{i}.png", "label": int(labels[i])}))
    (folder / "data.jsonl").write_text("\n".join(rows) + "\n")
    dataset = read_dataset(folder / "data.jsonl")
    store = FeatureStore(folder / "store")
    config = resolve_backbone("efficientnet-lite0", "image", sequence=True)
    store.register(config.fingerprint, {"backbone": config.spec, "modality": "image", "kind": "sequence", "dim": DIM})
    keys = content_keys(dataset.values("img"), "image")
    for start in range(0, items, 500):
        block = rng.normal(size=(min(500, items - start), STEPS, DIM)).astype(np.float32)
        block[:, :, 0] += (2.0 * labels[start:start + len(block)] - 1.0)[:, None]  # learnable, barely
        store.put(config.fingerprint, keys[start:start + len(block)], list(block))
    return folder / "data.jsonl"


def child(args) -> None:
    """One training run; prints one JSON line with its figures."""
    from mmtk.data import read_dataset
    from mmtk.store import FeatureStore
    from mmtk.train import train

    dataset = read_dataset(args.data)
    if args.limit:
        dataset = dataset.subset(range(args.limit))
    tick = time.perf_counter()
    cpu = [time.process_time()]
    report = train(dataset, features=["efficientnet-lite0:seq"], model="attention-pool", tasks=["label"],
                   out=Path(args.out), store=FeatureStore(Path(args.data).parent / "store"), epochs=args.epochs,
                   patience=args.epochs, max_memory=args.budget, device="cpu", batch_size=64,
                   progress=lambda *_: cpu.append(time.process_time()))
    print(json.dumps({
        "items": len(dataset), "batch_source": report.batch_source, "samples_per_second": report.samples_per_second,
        "cpu_per_epoch": cpu[-1] - cpu[-2], "seconds": time.perf_counter() - tick,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def run_child(data: Path, out: Path, budget: str, epochs: int, limit: int | None) -> dict:
    command = [sys.executable, __file__, "--child", "--data", str(data), "--out", str(out), "--budget", budget,
               "--epochs", str(epochs)] + (["--limit", str(limit)] if limit else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--fit-items", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--budget", default="200M", help="--max-memory of the store-backed runs")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each source in part 2")
    parser.add_argument("--work", type=Path, help="folder for the data and store (default: a temporary one)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        folder = Path(tmp)
        tick = time.perf_counter()
        data = build(folder, args.items)
        size = args.items * STEPS * DIM * 4 / 1e9
        print(f"setup: {args.items} items of {STEPS}x{DIM} float32 ({size:.2f} GB) stored in {time.perf_counter() - tick:.0f} s; "
              f"load average {os.getloadavg()[0]:.1f}")
        big = run_child(data, folder / "big", args.budget, args.epochs, None)
        print(f"1. {big['items']} items, --max-memory {args.budget}: batches from the {big['batch_source']}, "
              f"{big['samples_per_second']:.0f} samples/s, peak RSS {big['peak_rss_mb']:.0f} MB")
        runs = {"memory": [], "store": []}
        for _ in range(args.rounds):
            runs["memory"].append(run_child(data, folder / "memory", "8G", 2, args.fit_items))
            runs["store"].append(run_child(data, folder / "stored", "1M", 2, args.fit_items))
        best = {kind: max(r["samples_per_second"] for r in got) for kind, got in runs.items()}
        cpu = {kind: min(r["cpu_per_epoch"] for r in got) for kind, got in runs.items()}
        assert [r["batch_source"] for r in runs["memory"] + runs["store"]] == ["memory"] * args.rounds + ["store"] * args.rounds
        print(f"2. {args.fit_items} items, best of {args.rounds}: in memory {best['memory']:.0f} samples/s, "
              f"{cpu['memory']:.1f} CPU s/epoch; store-backed {best['store']:.0f} samples/s, {cpu['store']:.1f} CPU s/epoch; "
              f"store / memory: samples/s {best['store'] / best['memory']:.2f}, CPU-time throughput {cpu['memory'] / cpu['store']:.2f}; "
              f"peak RSS {max(r['peak_rss_mb'] for r in runs['memory']):.0f} MB and {max(r['peak_rss_mb'] for r in runs['store']):.0f} MB")


if __name__ == "__main__":
    main()
