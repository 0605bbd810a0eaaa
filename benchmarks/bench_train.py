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

Every registered model is measured by default (``--models`` picks some). A model that
refuses the two vectors (a sequence-only model such as ``mult``) is measured on the
sequence variant instead, and a sequence model that takes vectors too on both: ``minilm:seq`` (20-50 token states of 384) and
``efficientnet-lite0:seq`` (the 7x7 grid, 49 steps of 1280), random values, on
``--sequence-items`` items per epoch (default 1,000: 49 x 1280 floats per image make
10,000 items 2.5 GB, and samples/s is a rate). Models fitted whole (``svm``, ``logreg``:
no epochs) are timed by their one fit (samples/s = items / fit seconds of the report) on
``--whole-items`` items (default 2,000; an RBF SVM's fit grows with the square of the
items). Models over word pieces (``tokens@COLUMN``) are listed, not measured.

    .venv/bin/python benchmarks/bench_train.py [--items 10000] [--epochs 10]
    MMTK_TORCH_THREADS=2 .venv/bin/python benchmarks/bench_train.py   # both cores

``--loops`` then times the training loop alone, side by side in the same process on the
same tensors and initial weights: the loop of the commit before the training layer (its
``mmtk/train.py``, written by ``git show REV:mmtk/train.py`` to a temporary directory and
imported from there; REV is found as the parent of the commit that removed ``_fit``, or
given with ``--previous``) against ``mmtk.training.fit`` with the default schedule
(cosine with 5 % warm-up) and with none. Rounds alternate old and new; reported per
loop are the median CPU seconds per epoch (training + validation) and the ratio to the
old loop.
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


def build(folder: Path, items: int, store, sequences: bool = False) -> object:
    """``items`` items with random efficientnet-lite0 and minilm features: vectors, or
    with ``sequences`` their sequence forms (a fresh folder per variant)."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset

    folder.mkdir(parents=True, exist_ok=True)
    images = folder / "img"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(items):
        (images / f"{i}.png").write_bytes(b"image %d" % i)
        rows.append(json.dumps({"id": i, "img": f"img/{i}.png", "text": f"caption {i}", "label": int(rng.integers(0, 2))}))
    (folder / "data.jsonl").write_text("\n".join(rows) + "\n")
    dataset = read_dataset(folder / "data.jsonl")
    for backbone, modality, column, dim, steps in (("efficientnet-lite0", "image", "img", 1280, (49, 49)), ("minilm", "text", "text", 384, (20, 50))):
        config = resolve_backbone(backbone, modality, sequence=sequences)
        meta = {"backbone": config.spec, "modality": modality, "kind": config.kind, "dim": dim}
        store.register(config.fingerprint, {**meta, **({"variant": config.variant} if config.variant else {})})
        keys = content_keys(dataset.values(column), modality)
        if sequences:
            arrays = [rng.normal(size=(int(rng.integers(steps[0], steps[1] + 1)), dim)).astype(np.float32) for _ in keys]
        else:
            arrays = list(rng.normal(size=(items, dim)).astype(np.float32))
        store.put(config.fingerprint, keys, arrays)
    return dataset


VECTORS, SEQUENCES = ["efficientnet-lite0", "minilm"], ["efficientnet-lite0:seq", "minilm:seq"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="items trained on per epoch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", help="comma-separated (default: every registered model)")
    parser.add_argument("--sequence-items", type=int, default=1000, help="items per epoch of the sequence variant")
    parser.add_argument("--whole-items", type=int, default=2000, help="items of the one fit of models fitted whole")
    parser.add_argument("--loops", action="store_true", help="also time the previous loop against the new one")
    parser.add_argument("--previous", help="commit whose mmtk/train.py holds the previous loop")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of --loops")
    args = parser.parse_args()

    import torch

    from mmtk.device import cpu_threads_per_process
    from mmtk.errors import UsageError
    from mmtk.models import MODELS
    from mmtk.store import FeatureStore

    models = args.models.split(",") if args.models else MODELS.names()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = FeatureStore(folder / "store")
        tick = time.perf_counter()
        total = round(args.items / (1 - VAL_SPLIT))
        dataset = build(folder / "vectors", total, store)
        print(f"setup: {total} items with 1280-d + 384-d features stored in {time.perf_counter() - tick:.1f} s", file=sys.stderr)
        print(f"torch {torch.__version__}, {cpu_threads_per_process()} torch thread(s), batch 64, models' default widths, "
              f"{total} items ({args.items} trained per epoch), load average {os.getloadavg()[0]:.1f}")
        print(f"{'model':<16} {'variant':<10} {'items':>6} {'CPU s/epoch':>12} {'fastest wall s':>15} {'median wall s':>14} {'samples/s':>10} {'loop samples/s':>15}")
        variants = {"vectors": (dataset, VECTORS, args.items)}
        for model in models:
            capabilities = MODELS.capabilities(model)
            if capabilities.get("tokens"):
                print(f"{model:<16} needs word pieces (tokens@COLUMN): not measured")
                continue
            if capabilities.get("fits"):
                measure_whole(model, variants, args, folder, store)
                continue
            try:
                measure(model, *variants["vectors"], "vectors", args, folder, store)
            except UsageError as exc:  # refuses vectors: the sequence variant only
                print(f"  {model} on vectors: {exc}", file=sys.stderr)
            else:
                if not capabilities.get("sequences"):
                    continue
            if "sequences" not in variants:
                items = round(args.sequence_items / (1 - VAL_SPLIT))
                variants["sequences"] = (build(folder / "sequences", items, store, sequences=True), SEQUENCES, args.sequence_items)
            measure(model, *variants["sequences"], "sequences", args, folder, store)
        if args.loops:
            compare_loops(dataset, store, args, folder)


def measure(model: str, dataset, features: list[str], items: int, variant: str, args, folder: Path, store) -> None:
    """Train ``model`` for ``args.epochs`` epochs and print its row (see the module docstring)."""
    from mmtk.train import train

    stamps = [(time.perf_counter(), time.thread_time())]
    report = train(
        dataset, features=features, model=model, tasks=["label"], out=folder / f"{model}-{variant}",
        store=store, epochs=args.epochs, patience=args.epochs, val_split=VAL_SPLIT, device="cpu",
        progress=lambda done, total: stamps.append((time.perf_counter(), time.thread_time())),
    )
    # The first interval also holds train()'s set-up (feature gather, encoders).
    walls = [b[0] - a[0] for a, b in zip(stamps[1:], stamps[2:])]
    cpus = [b[1] - a[1] for a, b in zip(stamps[1:], stamps[2:])]
    cpu = statistics.median(cpus)
    print(f"{model:<16} {variant:<10} {report.train_items:>6} {cpu:>12.3f} {min(walls):>15.3f} {statistics.median(walls):>14.3f} "
          f"{report.train_items / cpu:>10.0f} {report.samples_per_second:>15.0f}", flush=True)


def measure_whole(model: str, variants: dict, args, folder: Path, store) -> None:
    """A model fitted whole: one fit on ``--whole-items`` of the vector items."""
    from mmtk.train import train

    dataset, features, _ = variants["vectors"]
    subset = dataset.subset(list(range(round(args.whole_items / (1 - VAL_SPLIT)))))
    tick = time.process_time()  # scikit-learn's BLAS may use threads of its own
    report = train(subset, features=features, model=model, tasks=["label"], out=folder / f"{model}-whole", store=store,
                   val_split=VAL_SPLIT, device="cpu")
    cpu = time.process_time() - tick
    print(f"{model:<16} {'one fit':<10} {report.train_items:>6} {'-':>12} {'-':>15} {report.seconds:>14.3f} "
          f"{report.train_items / cpu:>10.0f} {report.samples_per_second:>15.0f}", flush=True)


def previous_loop(rev: str | None, folder: Path):
    """The ``mmtk/train.py`` module of ``rev`` (default: before the training layer), imported
    from a temporary copy."""
    import importlib.util
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if rev is None:
        removed = subprocess.run(["git", "log", "-1", "--format=%H", "-S", "def _fit(", "--", "mmtk/train.py"],
                                 cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        rev = f"{removed}^"
    source = subprocess.run(["git", "show", f"{rev}:mmtk/train.py"], cwd=root, capture_output=True, text=True, check=True).stdout
    path = folder / "previous_train.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("previous_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    label = subprocess.run(["git", "rev-parse", "--short", rev], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    return module, label


class _LegacyLoss:
    """The previous loop calls ``objective.loss(logits, target)``."""

    def __init__(self, loss):
        self.loss = loss


def compare_loops(dataset, store, args, folder: Path) -> None:
    import torch

    from mmtk.data import fit_label_encoder, parse_task
    from mmtk.features import load_features
    from mmtk.models import MODELS
    from mmtk.models.inference import as_tensors, cpu_threads
    from mmtk.models.objectives import target_tensor
    from mmtk.train import _validate, split_indices
    from mmtk.training import FitSettings, InMemorySource, SupervisedObjective, TaskLoss, adamw, fit, make_schedule
    from mmtk.training.data import input_specs
    from mmtk.features import Gathered

    old, label = previous_loop(args.previous, folder)
    features = ["efficientnet-lite0", "minilm"]
    train_idx, val_idx = split_indices([None] * len(dataset), VAL_SPLIT, 0)
    arrays = load_features(dataset, features, store)
    train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)
    encoder = fit_label_encoder(parse_task("label"), train_ds)
    kinds, encoders = {"label": encoder.task.kind}, {"label": encoder}
    train_y, val_y = {"label": encoder.encode(train_ds)}, {"label": encoder.encode(val_ds)}
    tx = as_tensors({n: a[train_idx] for n, a in arrays.items()}, "cpu")
    vx = as_tensors({n: a[val_idx] for n, a in arrays.items()}, "cpu")
    ty = {"label": target_tensor(kinds["label"], train_y["label"])}
    vy = {"label": target_tensor(kinds["label"], val_y["label"])}
    inputs = input_specs({n: Gathered(a[:1]) for n, a in arrays.items()})
    heads = {"label": 1}

    def timed(run) -> list[float]:
        stamps = [time.thread_time()]
        run(lambda *_: stamps.append(time.thread_time()))
        return [b - a for a, b in zip(stamps, stamps[1:])]

    def run_old(model, tick):
        torch.manual_seed(0)
        net = MODELS.get(model)(inputs, heads)
        old._fit(net, {"label": _LegacyLoss(TaskLoss(kinds["label"]))}, kinds, {}, encoders, train=(tx, ty), val=(vx, vy),
                 val_labels=val_y, epochs=args.epochs, lr=1e-3, weight_decay=1e-2, batch_size=64, patience=args.epochs,
                 seed=0, progress=tick)

    def run_new(model, tick, schedule):
        torch.manual_seed(0)
        net = MODELS.get(model)(inputs, heads)
        objective = SupervisedObjective({"label": TaskLoss(kinds["label"])})
        source, val_source = InMemorySource(tx, ty), InMemorySource(vx, vy)
        optimizer = adamw(net.parameters(), lr=1e-3, weight_decay=1e-2)
        steps = args.epochs * source.num_batches(64)
        lr_schedule = make_schedule(optimizer, schedule, total_steps=steps, warmup_steps=round(0.05 * steps) if schedule != "constant" else 0)
        fit(net, objective, source, lambda m: _validate(m, objective, val_source, val_y, kinds, {}, encoders), optimizer, lr_schedule,
            settings=FitSettings(epochs=args.epochs, batch_size=64, patience=args.epochs), callbacks=[tick])

    loops = {f"previous ({label})": run_old, "fit, cosine": lambda m, t: run_new(m, t, "cosine"),
             "fit, constant": lambda m, t: run_new(m, t, "constant")}
    print(f"\nloops side by side ({args.rounds} alternating rounds of {args.epochs} epochs, CPU s per epoch, median)")
    print(f"{'model':<8} {'loop':<22} {'CPU s/epoch':>12} {'vs previous':>12}")
    with cpu_threads("cpu"):
        for model in (args.models or "gmu,concat").split(","):
            epochs = {name: [] for name in loops}
            for _ in range(args.rounds):
                for name, run in loops.items():
                    epochs[name] += timed(lambda tick: run(model, tick))
            base = statistics.median(epochs[next(iter(loops))])
            for name, times in epochs.items():
                cpu = statistics.median(times)
                print(f"{model:<8} {name:<22} {cpu:>12.3f} {cpu / base:>12.3f}")


if __name__ == "__main__":
    main()
