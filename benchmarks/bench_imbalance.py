"""Why mmtk's macro-F1 trails a logistic regression on imbalanced sets: per-class recall
and how often each class is predicted, for training variants side by side in one run.

For each set of ``bench_baselines.py`` named by ``--sets`` (default ``petfinder``), each
modality and each model, mmtk is trained with every variant of ``--variants`` (seeds
0..N-1) and scored on the test split; beside it the same standardised
``LogisticRegression`` as ``bench_baselines.py`` (C chosen there by cross-validation and
read from its cache), with and without ``class_weight="balanced"``. Printed per row:
accuracy, macro-F1, the recall of every class and the share of test items predicted as
each class (the true shares are printed first).

Variants are training settings passed to ``mmtk.train.train`` (joined by ``+``):

- ``defaults``: the library as it is.
- ``balanced``: ``class_weights=True`` (inverse class frequency).
- ``f1stop`` / ``accstop`` / ``lossstop``: early stopping on the validation macro-F1 /
  accuracy / loss.
- ``wd``: ``weight_decay=0.1`` instead of the default.
- ``drop``: ``dropout=0.5``.
- ``small``: ``hidden=64``.

Run from the repository root:

    .venv/bin/python benchmarks/bench_imbalance.py --sets petfinder --seeds 3 \\
        --variants lossstop,defaults,balanced+lossstop,balanced,accstop,wd,drop,small
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_baselines as bb  # noqa: E402

PARTS = {
    "defaults": {},
    "balanced": {"class_weights": True},
    "f1stop": {"monitor": "macro_f1"},
    "accstop": {"monitor": "accuracy"},
    "lossstop": {"monitor": "val_loss"},
    "wd": {"weight_decay": 0.1},
    "drop": {"dropout": 0.5},
    "small": {"hidden": 64},
}


def parse_variant(text: str) -> dict:
    settings: dict = {}
    for part in text.split("+"):
        if part not in PARTS:
            raise SystemExit(f"unknown variant part {part!r}; use {', '.join(PARTS)} joined by '+'")
        settings.update(PARTS[part])
    return settings


def per_class(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> tuple[list[float], list[float]]:
    """Recall of each class and the share of items predicted as each class."""
    recall = [float(np.mean(predicted[labels == c] == c)) if np.any(labels == c) else float("nan") for c in range(n_classes)]
    share = [float(np.mean(predicted == c)) for c in range(n_classes)]
    return recall, share


def lr_rows(bench, refs: list[str], store, lr_store: dict) -> tuple[dict, list[float]]:
    """The cross-validated C of bench_baselines' LR, refitted with and without balanced
    class weights for its test predictions; and the true class shares of the test items."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mmtk.data import fit_label_encoder, parse_task
    from mmtk.metrics import compute_metrics

    _, c = bb.logistic_regression(bench, refs, store, lr_store)
    encoder = fit_label_encoder(parse_task(bench.task), bench.train)
    train_y, test_y = encoder.encode(bench.train), encoder.encode(bench.test)
    train_x, test_x = bb.lr_features(bench, refs, store)
    rows = {}
    for name, weight in (("LR", None), ("LR balanced", "balanced")):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight=weight)).fit(train_x, train_y)
        probs = np.zeros((len(test_y), len(encoder.classes)))
        probs[:, model[-1].classes_] = model.predict_proba(test_x)
        metrics = compute_metrics(encoder.task.kind, test_y, probs)
        recall, share = per_class(test_y, probs.argmax(axis=1), len(encoder.classes))
        rows[name] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "recall": recall, "share": share, "C": c}
    return rows, (np.bincount(test_y, minlength=len(encoder.classes)) / len(test_y)).tolist()


def mmtk_row(bench, refs, model, settings, seeds, store, work: Path) -> dict:
    from mmtk.evaluate import collect_predictions
    from mmtk.metrics import compute_metrics
    from mmtk.train import train

    found = []
    for seed in range(seeds):
        out = work / f"{bench.name}-{model}-{len(os.listdir(work))}"
        kwargs = dict(features=refs, model=model, tasks=[bench.task], out=out, store=store, seed=seed, device="cpu", **settings)
        if "tabular" in refs:
            kwargs["tabular"] = bench.tabular
        report = train(bench.train, **kwargs)
        entry = next(iter(collect_predictions(out, bench.test, store=store, device="cpu", extract_missing=False).tasks.values()))
        metrics = compute_metrics(entry.kind, entry.labels, entry.outputs, entry.classes)
        recall, share = per_class(entry.labels, entry.outputs.argmax(axis=1), len(entry.classes))
        found.append({"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "recall": recall, "share": share,
                      "best_epoch": report.best_epoch, "epochs_run": report.epochs_run})
    return {
        key: (statistics.mean(f[key] for f in found) if key in ("accuracy", "macro_f1", "best_epoch", "epochs_run")
              else np.mean([f[key] for f in found], axis=0).tolist())
        for key in found[0]
    } | {"macro_f1_std": statistics.pstdev(f["macro_f1"] for f in found), "accuracy_std": statistics.pstdev(f["accuracy"] for f in found)}


def fmt(name: str, row: dict) -> str:
    spread = f"±{row['accuracy_std']:.3f}" if "accuracy_std" in row else "      "
    f1_spread = f"±{row['macro_f1_std']:.3f}" if "macro_f1_std" in row else "      "
    epochs = f"  epochs {row['best_epoch']:.0f}/{row['epochs_run']:.0f}" if "best_epoch" in row else ""
    return (f"    {name:<24} acc {row['accuracy']:.3f}{spread}  macro-F1 {row['macro_f1']:.3f}{f1_spread}  recall "
            + " ".join(f"{r:.2f}" for r in row["recall"]) + "  predicted " + " ".join(f"{s:.2f}" for s in row["share"]) + epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="petfinder")
    parser.add_argument("--models", default="concat,gmu")
    parser.add_argument("--modalities", help="comma-separated (default: every modality of the set and the fusion)")
    parser.add_argument("--variants", default="defaults")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr-cache", type=Path, default=bb.OUT / "bench_baselines_lr.json")
    parser.add_argument("--json", type=Path, default=bb.OUT / "bench_imbalance.json")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    settings = {v: parse_variant(v) for v in variants}
    os.environ.setdefault("MMTK_STORE", str(bb.OUT / "store"))
    import torch

    from mmtk.store import FeatureStore

    torch.set_num_threads(1)
    store = FeatureStore(os.environ["MMTK_STORE"])
    lr_store = json.loads(args.lr_cache.read_text()) if args.lr_cache.is_file() else {}
    started = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.seeds} seed(s); recall and predicted share per class, classes in encoder order")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_imbalance_") as tmp:
        work = Path(tmp)
        for bench in bb.build_sets(args.sets.split(","), work):
            bb.extract(bench, store)
            modalities = args.modalities.split(",") if args.modalities else list(bench.modalities)
            for label in modalities:
                refs = bench.modalities[label]
                lrs, truth = lr_rows(bench, refs, store, lr_store)
                print(f"{bench.name} {label}: true shares " + " ".join(f"{t:.2f}" for t in truth), flush=True)
                for name, row in lrs.items():
                    print(fmt(name, row), flush=True)
                    results.append({"set": bench.name, "modality": label, "who": name, **row})
                for model in args.models.split(","):
                    for variant in variants:
                        row = mmtk_row(bench, refs, model, settings[variant], args.seeds, store, work)
                        print(fmt(f"{model} {variant}", row), flush=True)
                        results.append({"set": bench.name, "modality": label, "who": f"{model} {variant}", **row})
    print(f"total {time.perf_counter() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
