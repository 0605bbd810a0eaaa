"""Training throughput of ``mmtk train`` on cached features (issue 2 target: one epoch
of ``--model gmu`` over 10,000 items x 2 modalities in under 1 s on a 2-core CPU).

Builds a dataset of 12,500 items (tiny image files and captions; the default 20%
validation split leaves 10,000 to train on per epoch), puts random efficientnet-lite0
(1280-d) and minilm (384-d) vectors for it into a fresh feature store, and runs the real
``mmtk.train.train`` for N epochs per model. Its progress callback, called after each
epoch, timestamps epochs (training loop plus validation) in wall time and in CPU time of
the main thread, which does all the work: train() runs one torch thread on CPU. On a
machine shared with other jobs wall time also measures the neighbours, so reported per
model are the median CPU seconds of an epoch (its cost on an idle core), the fastest and
median wall seconds, samples/s = items trained / median CPU seconds, and the wall-clock
samples/s of the training loop alone (from the train report, validation excluded).

    .venv/bin/python benchmarks/bench_train.py [--items 10000] [--epochs 10]
    MMTK_TORCH_THREADS=2 .venv/bin/python benchmarks/bench_train.py   # both cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


VAL_SPLIT = 0.2


def build(folder: Path, items: int, store) -> object:
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset

    images = folder / "img"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(items):
        (images / f"{i}.png").write_bytes(b"image %d" % i)
        rows.append(json.dumps({"id": i, "img": f"img/{i}.png", "text": f"caption {i}", "label": int(rng.integers(0, 2))}))
    (folder / "data.jsonl").write_text("\n".join(rows) + "\n")
    dataset = read_dataset(folder / "data.jsonl")
    for backbone, modality, column, dim in (("efficientnet-lite0", "image", "img", 1280), ("minilm", "text", "text", 384)):
        config = resolve_backbone(backbone, modality)
        store.register(config.fingerprint, {"backbone": config.spec, "modality": modality, "kind": "vector", "dim": dim})
        keys = content_keys(dataset.values(column), modality)
        store.put(config.fingerprint, keys, list(rng.normal(size=(items, dim)).astype(np.float32)))
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="items trained on per epoch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default="gmu,concat")
    args = parser.parse_args()

    import torch

    from mmtk.device import cpu_threads_per_process
    from mmtk.store import FeatureStore
    from mmtk.train import train

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = FeatureStore(folder / "store")
        tick = time.perf_counter()
        total = round(args.items / (1 - VAL_SPLIT))
        dataset = build(folder, total, store)
        print(f"setup: {total} items with 1280-d + 384-d features stored in {time.perf_counter() - tick:.1f} s", file=sys.stderr)
        print(f"torch {torch.__version__}, {cpu_threads_per_process()} torch thread(s), batch 64, hidden 256, "
              f"{total} items ({args.items} trained per epoch), load average {os.getloadavg()[0]:.1f}")
        print(f"{'model':<8} {'CPU s/epoch':>12} {'fastest wall s':>15} {'median wall s':>14} {'samples/s':>10} {'loop samples/s':>15}")
        for model in args.models.split(","):
            stamps = [(time.perf_counter(), time.thread_time())]
            report = train(
                dataset, features=["efficientnet-lite0", "minilm"], model=model, tasks=["label"], out=folder / model,
                store=store, epochs=args.epochs, patience=args.epochs, val_split=VAL_SPLIT, device="cpu",
                progress=lambda done, total: stamps.append((time.perf_counter(), time.thread_time())),
            )
            # The first interval also holds train()'s set-up (feature gather, encoders).
            walls = [b[0] - a[0] for a, b in zip(stamps[1:], stamps[2:])]
            cpus = [b[1] - a[1] for a, b in zip(stamps[1:], stamps[2:])]
            cpu = statistics.median(cpus)
            print(f"{model:<8} {cpu:>12.3f} {min(walls):>15.3f} {statistics.median(walls):>14.3f} "
                  f"{report.train_items / cpu:>10.0f} {report.samples_per_second:>15.0f}")


if __name__ == "__main__":
    main()
