"""Fine-tuning backbones in the loop (issue 13): throughput and the share of time waiting
for data, and fine-tuned MiniLM + tabular against frozen features and a stack on the listing sets.

Parts (``--parts``, default all):
- ``text``: ``minilm`` fine-tuned (``--finetune text``, concat head) on ``--text-items``
  Clothing reviews for one epoch: training samples/s, and the share of the training
  time the loop was blocked fetching batches (``training.data_wait_seconds`` of the run
  over the epoch's training seconds). Token ids are cached at gather time, so a batch is
  an index slice.
- ``image``: ``efficientnet-lite0`` fine-tuned (``--finetune image``) on
  ``--image-items`` bundled meme images for one epoch with 0, 1 and 2 DataLoader
  workers: samples/s and wait share for each, measured one after the other in this run.
- ``clothing``, ``petfinder`` (the Multimodal-Toolkit sets of ``../shared/data/tabular``):
  train on a seeded subset of ``val.csv`` (``--train-rows``, 20% of it held out for early
  stopping), test on a subset of ``test.csv`` (``--test-rows``): logreg, concat and gmu
  on frozen ``minilm`` + ``tabular`` features, a stack of one logreg member per feature
  (``--model stack``, meta ``auto``, 3 folds), and concat and gmu with ``minilm`` fine-tuned
  (``--finetune-epochs`` epochs, backbone lr 5e-5, texts cut to ``--max-length`` tokens),
  pooled as ``--pools`` say (``auto``: minilm's mean; ``cls``: [CLS], BERT's family
  default). Macro-F1 and accuracy on the test rows.

All on CPU; the machine is shared, so figures are ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_setup import bench_store  # benchmarks/, the script's folder, is on sys.path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tabular" / "Womens_Clothing_E-Commerce_Reviews"
MEMES = REPO / "examples" / "memes" / "train.jsonl"
OUT = REPO / "benchmarks" / "out"
TEXT = "Review Text"


def wait_share(run: Path, report) -> tuple[float, float]:
    """(training samples/s, share of training time blocked on data)."""
    config = json.loads((run / "config.json").read_text())
    train_seconds = report.train_items * report.epochs_run / report.samples_per_second
    return report.samples_per_second, config["training"]["data_wait_seconds"] / train_seconds


def subset(dataset, rows: int, seed: int):
    import numpy as np

    if rows >= len(dataset):
        return dataset
    picked = np.sort(np.random.default_rng(seed).choice(len(dataset), rows, replace=False))
    return dataset.subset(picked.tolist())


def part_text(store, items: int, batch: int) -> dict:
    from mmtk.data import read_dataset
    from mmtk.finetune.settings import FinetuneSettings
    from mmtk.train import train

    data = subset(read_dataset(DATA / "val.csv", require=[TEXT], on_error="skip"), items, 0)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        report = train(data, features=[f"minilm@{TEXT}"], model="concat", tasks=["Recommended IND"], out=run, store=store,
                       epochs=1, batch_size=batch, device="cpu", finetune=FinetuneSettings("text", backbone_lr=5e-5), checkpoint_every=1e9)
        speed, share = wait_share(run, report)
    result = {"part": "text", "items": report.train_items, "batch_size": batch, "samples_per_s": speed, "data_wait_share": share}
    print(f"text: minilm fine-tuning {speed:.1f} samples/s over {report.train_items} items, waiting for data {100 * share:.1f}% of the time", flush=True)
    return result


def part_image(store, items: int, batch: int) -> list[dict]:
    from mmtk.data import read_dataset
    from mmtk.finetune.settings import FinetuneSettings
    from mmtk.train import train

    data = subset(read_dataset(MEMES), items, 0)
    results = []
    for workers in (0, 1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            report = train(data, features=["efficientnet-lite0"], model="concat", tasks=["label"], out=run, store=store, epochs=1,
                           batch_size=batch, device="cpu", finetune=FinetuneSettings("image", workers=workers), checkpoint_every=1e9)
            speed, share = wait_share(run, report)
        results.append({"part": "image", "workers": workers, "items": report.train_items, "batch_size": batch, "samples_per_s": speed, "data_wait_share": share})
        print(f"image: efficientnet-lite0, {workers} workers: {speed:.1f} samples/s, waiting for data {100 * share:.1f}%", flush=True)
    return results


LISTINGS = {  # the Multimodal-Toolkit sets of ../shared/data/tabular: folder and text column
    "clothing": ("Womens_Clothing_E-Commerce_Reviews", "Review Text"),
    "petfinder": ("PetFindermy_Adoption_Prediction", "Description"),
}


def part_listing(name: str, store, train_rows: int, test_rows: int, finetune_epochs: int, batch: int, max_length: int,
                 pools: list[str]) -> list[dict]:
    """Frozen-feature logreg/concat/gmu, a stack of unimodal members (text, tabular) and
    fine-tuned MiniLM + tabular (concat, gmu; pooled as ``pools`` say) on one listing set."""
    from dataclasses import replace

    from mmtk.backbones.base import FeatureOptions
    from mmtk.features import parse_feature_refs
    from mmtk.data import read_dataset
    from mmtk.evaluate import evaluate
    from mmtk.extract import extract_features
    from mmtk.finetune.settings import FinetuneSettings
    from mmtk.tabular import read_columns_file
    from mmtk.train import train

    folder, text = LISTINGS[name]
    data = DATA.parent / folder
    spec = replace(read_columns_file(data / "column_info.json"), scaling="standard")
    train_ds = subset(read_dataset(data / "val.csv", require=[text], on_error="skip"), train_rows, 0)
    test_ds = subset(read_dataset(data / "test.csv", require=[text], on_error="skip"), test_rows, 1)
    for dataset in (train_ds, test_ds):
        extract_features(dataset, "minilm", store=store, column=text, device="cpu")
    # --max-length: the fine-tuned tower's tokens (frozen minilm vectors keep their 256).
    features = parse_feature_refs([f"minilm@{text}", "tabular"], FeatureOptions(max_length=max_length))
    # Fine-tuned MiniLM pooled as ``auto`` says (minilm: the mean it was trained with) or
    # as forced (``cls``: [CLS], BERT's family default).
    configs = [("frozen", "logreg", None), ("frozen", "concat", None), ("frozen", "gmu", None), ("frozen, stack", "stack", None)]
    configs += [(f"fine-tuned {pool}", model, pool) for pool in pools for model in ("concat", "gmu")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, model, pool in configs:
            run = Path(tmp) / f"{kind}-{model}".replace(" ", "-").replace(",", "")
            tick = time.perf_counter()
            options = {}
            if pool is not None:
                tuning = FinetuneSettings("text", backbone_lr=5e-5, text_pool=pool)
                options = {"epochs": finetune_epochs, "batch_size": batch, "finetune": tuning, "checkpoint_every": 1e9}
            if model == "stack":  # one member per feature (text, tabular), logreg members, meta auto
                options = {"model_args": {"member": "logreg", "folds": 3}}  # PetFinder's subset: 4 "same day" items to train on
            train(train_ds, features=features, model=model, tasks=[spec.label_col], out=run, store=store, tabular=spec, device="cpu", **options)
            seconds = time.perf_counter() - tick
            metrics = evaluate(run, test_ds, store=store, device="cpu")["metrics"]
            row = {"part": name, "text": kind, "model": model, "train_rows": len(train_ds), "test_rows": len(test_ds), "max_length": max_length,
                   "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"], "f1": metrics.get("f1"), "train_seconds": seconds}
            results.append(row)
            print(f"{name}: {kind:<15} {model:<6} macro-F1 {row['macro_f1']:.3f}  accuracy {row['accuracy']:.3f}  ({seconds:.0f} s)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="text,image,clothing", help="text, image, clothing, petfinder (comma-separated)")
    parser.add_argument("--pools", default="auto", help="fine-tuned text pooling(s) of the listing parts: auto, cls, mean, ...")
    parser.add_argument("--text-items", type=int, default=400)
    parser.add_argument("--image-items", type=int, default=120)
    parser.add_argument("--train-rows", type=int, default=400)
    parser.add_argument("--test-rows", type=int, default=400)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64, help="tokens of the fine-tuned text tower (clothing part)")
    args = parser.parse_args()
    store = bench_store(DATA, OUT)
    if store is None:
        return
    parts, results = args.parts.split(","), []
    if "text" in parts:
        results.append(part_text(store, args.text_items, args.batch_size))
    if "image" in parts:
        results += part_image(store, args.image_items, args.batch_size)
    for name in LISTINGS:
        if name in parts:
            results += part_listing(name, store, args.train_rows, args.test_rows, args.finetune_epochs, args.batch_size, args.max_length,
                                    args.pools.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_finetune.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"load average at the end {os.getloadavg()[0]:.1f}; results in {OUT / 'bench_finetune.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
