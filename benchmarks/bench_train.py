"""Training throughput of ``mmtk train`` on cached features (issue 2 target: one epoch
of ``--model gmu`` over 10,000 items x 2 modalities in under 1 s on a 2-core CPU).

Builds a dataset of 12,500 items (tiny image files and captions; the default 20%
validation split leaves 10,000 to train on per epoch), puts random
efficientnet-lite0 (1280-d) and minilm (384-d) vectors for it into a fresh feature
store, then runs the real ``mmtk.train.train`` for a few epochs per model and reports,
per model, the training-loop throughput (samples/s), the median seconds of one epoch's
training loop and of one whole epoch (training loop plus validation on the held-out 20%),
and the process CPU seconds per epoch (everything train() does, divided by the epochs):
on a machine shared with other jobs, wall time measures the neighbours too, while CPU
time is what an epoch costs (train() runs one torch thread on CPU, see mmtk.device).

    .venv/bin/python benchmarks/bench_train.py [--items 10000] [--epochs 5]
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
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", default="gmu,concat")
    args = parser.parse_args()

    import torch

    from mmtk.store import FeatureStore
    from mmtk.train import train

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = FeatureStore(folder / "store")
        tick = time.perf_counter()
        total = round(args.items / (1 - VAL_SPLIT))
        dataset = build(folder, total, store)
        print(f"setup: {total} items with 1280-d + 384-d features stored in {time.perf_counter() - tick:.1f} s", file=sys.stderr)
        from mmtk.device import cpu_threads_per_process

        print(f"torch {torch.__version__}, {cpu_threads_per_process()} torch thread(s), batch 64, hidden 256, "
              f"{total} items ({args.items} trained per epoch), load average {os.getloadavg()[0]:.1f}")
        print(f"{'model':<8} {'samples/s':>10} {'loop s/epoch':>13} {'epoch+val s':>12} {'CPU s/epoch':>12} {'epochs':>7}")
        for model in args.models.split(","):
            cpu = time.process_time()
            report = train(
                dataset, features=["efficientnet-lite0", "minilm"], model=model, tasks=["label"], out=folder / model,
                store=store, epochs=args.epochs, patience=args.epochs, val_split=VAL_SPLIT, device="cpu",
            )
            cpu = (time.process_time() - cpu) / report.epochs_run
            loop = report.train_items / report.samples_per_second
            whole = statistics.median(entry["seconds"] for entry in report.log)
            print(f"{model:<8} {report.samples_per_second:>10.0f} {loop:>13.3f} {whole:>12.3f} {cpu:>12.3f} {report.epochs_run:>7}")


if __name__ == "__main__":
    main()
