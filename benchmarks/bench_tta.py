"""Test-time augmentation (``--tta ten-crop``): what it changes in accuracy and log-loss,
and what it costs, with the views' features stored against computed on every call.

Two data sets, each evaluated with and without ``--tta ten-crop`` in one process:
- ``memes``: the bundled example (``examples/memes``), the runs ``scripts/run-example.sh``
  trains (``gmu`` over ``efficientnet-lite0,minilm``, ``label:binary``) plus an image-only
  ``logreg`` over ``efficientnet-lite0``.
- ``digits``: scikit-learn's 1,797 handwritten 8x8 digits (real images, shipped with
  scikit-learn; ``../shared/data`` holds no image set), saved as 64x64 PNGs (bicubic),
  last 500 for test; ``logreg`` over ``efficientnet-lite0``.

Costs, per test set: the first plain evaluation (which extracts the test set's
features), plain evaluation with cached features; the first ``--tta``
evaluation, which computes the ten views and stores them (the share of its time spent
in ``FeatureStore.put`` is what storing adds over computing the views on the fly); a
second ``--tta`` evaluation, which reads them. Accuracy and log-loss are also given for
the centre view alone, the five unmirrored views and all ten. Run from the repository root:

    .venv/bin/python benchmarks/bench_tta.py [--sets memes,digits]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def log_loss(records, labels, classes) -> float:
    """Mean negative log-probability of the true class (probabilities clipped at 1e-15)."""
    probs = np.array([[record["probs"][str(c)] for c in classes] for record in records])
    index = [classes.index(label) for label in labels]
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(index)), index], 1e-15, None))))


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def write_digits(folder: Path) -> tuple[Path, Path]:
    """The digits as 64x64 PNGs: train.jsonl (first 1,297) and test.jsonl (last 500)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, target) in enumerate(zip(digits.images, digits.target)):
        pixels = (255 - image * 255 / 16).astype(np.uint8)  # dark ink on white, as written
        Image.fromarray(pixels).resize((64, 64), Image.BICUBIC).convert("RGB").save(folder / "img" / f"{i}.png")
        rows.append({"id": str(i), "img": f"img/{i}.png", "label": int(target)})
    paths = []
    for name, part in (("train", rows[:-500]), ("test", rows[-500:])):
        paths.append(folder / f"{name}.jsonl")
        paths[-1].write_text("".join(json.dumps(row) + "\n" for row in part))
    return paths[0], paths[1]


def measure(name: str, run: Path, test, store, put_seconds: list) -> dict:
    from mmtk.evaluate import evaluate
    from mmtk.predict import predict
    from mmtk.runs import load_run

    loaded = load_run(run)
    task = loaded.tasks[0]
    classes = list(loaded.encoders[task].classes)
    labels = [record.values[loaded.encoders[task].task.columns[0]] for record in test.records]
    # The test set's plain features are not stored yet: this evaluation extracts them.
    _, plain_first_s = timed(lambda: evaluate(loaded, test, store=store, device="cpu"))
    plain, plain_s = timed(lambda: evaluate(loaded, test, store=store, device="cpu"))
    put_seconds.clear()
    cold, cold_s = timed(lambda: evaluate(loaded, test, store=store, device="cpu", tta="ten-crop"))
    stored_s = sum(put_seconds)
    warm, warm_s = timed(lambda: evaluate(loaded, test, store=store, device="cpu", tta="ten-crop"))
    assert warm == cold
    row = {"run": name, "n": len(test)}
    for label, result, tta in (("plain", plain, "none"), ("ten-crop", cold, "ten-crop")):
        records = predict(loaded, test, store=store, device="cpu", tta=tta)
        row[label] = {**{k: round(result["metrics"][k], 4) for k in ("accuracy", "macro_f1")}, "log_loss": round(log_loss(records, labels, classes), 4)}
    row["views"] = by_views(loaded, test, store, labels, classes)
    row["seconds"] = {
        "plain_first": round(plain_first_s, 2), "plain": round(plain_s, 2), "tta_first": round(cold_s, 2),
        "tta_first_in_store_put": round(stored_s, 2), "tta_again": round(warm_s, 2),
    }
    row["ratios"] = {
        "tta_first / plain_first": round(cold_s / plain_first_s, 1), "tta_again / plain": round(warm_s / plain_s, 1),
        "tta_again / tta_first": round(warm_s / cold_s, 4), "store share of tta_first": round(stored_s / cold_s, 3),
    }
    return row


def by_views(run, test, store, labels, classes) -> dict:
    """Accuracy and log-loss averaging over some of the stored views: the centre alone
    (the plain crop but for TenCrop's rounding), the five unmirrored ones, all ten."""
    from mmtk.models.objectives import to_outputs
    from mmtk.tta import get_tta
    from mmtk.tta.apply import view_outputs
    from mmtk.tta.combine import average_log_probs

    task = run.tasks[0]
    per_view = [logits[task] for logits, _ in view_outputs(run, test, store, get_tta("ten-crop"), device="cpu")]
    index = np.array([classes.index(label) for label in labels])
    out = {}
    for name, views in (("center", [4]), ("five unmirrored", range(5)), ("ten", range(10))):
        probs = to_outputs(run.kind(task), average_log_probs(run.kind(task), [per_view[i] for i in views]), run.target_stats.get(task))
        true = np.clip(probs[np.arange(len(index)), index], 1e-15, None)
        out[name] = {"accuracy": round(float(np.mean(probs.argmax(axis=1) == index)), 4), "log_loss": round(float(-np.mean(np.log(true))), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="memes,digits", help="comma-separated: memes, digits")
    args = parser.parse_args()

    from mmtk.data import read_dataset
    from mmtk.extract import extract_features
    from mmtk.store import FeatureStore
    from mmtk.train import train

    put_seconds: list[float] = []
    original_put = FeatureStore.put

    def timed_put(self, *a, **k):
        started = time.perf_counter()
        try:
            return original_put(self, *a, **k)
        finally:
            put_seconds.append(time.perf_counter() - started)

    FeatureStore.put = timed_put
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for data_set in args.sets.split(","):
            if data_set == "memes":
                train_path, test_path = ROOT / "examples/memes/train.jsonl", ROOT / "examples/memes/test.jsonl"
                runs = {"gmu (efficientnet-lite0,minilm)": (["efficientnet-lite0", "minilm"], "gmu"), "logreg (efficientnet-lite0)": (["efficientnet-lite0"], "logreg")}
                task = "label:binary"
            else:
                train_path, test_path = write_digits(work / "digits")
                runs = {"logreg (efficientnet-lite0)": (["efficientnet-lite0"], "logreg")}
                task = "label"
            train_ds, test_ds = read_dataset(train_path), read_dataset(test_path)
            for name, (features, model) in runs.items():
                # A store per run, so each run's first --tta evaluation computes the views.
                store = FeatureStore(work / f"store-{data_set}-{model}")
                for backbone in features:
                    extract_features(train_ds, backbone, store=store, device="cpu")
                out = work / f"{data_set}-{model}"
                train(train_ds, features=features, model=model, tasks=[task], out=out, store=store, device="cpu", seed=0)
                row = measure(name, out, test_ds, store, put_seconds)
                rows.append({"set": data_set, **row})
                print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
