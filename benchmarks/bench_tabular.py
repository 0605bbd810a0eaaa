"""Text + tabular on real listings: PetFinder adoption speed (5 classes) and Clothing
reviews (recommended or not), the two Multimodal-Toolkit data sets in ``../shared/data``.

For each data set: train on ``val.csv`` (a seeded 20% of it held out for early
stopping), test on ``test.csv``, with minilm on the main text column (PetFinder
``Description``, Clothing ``Review Text``; rows whose text is empty are left out of
every run, so all runs score the same rows):

- text only: ``minilm@TEXT`` with ``concat``
- tabular only: ``tabular`` with ``concat`` (a reference point)
- text + tabular: ``minilm@TEXT,tabular`` with ``concat`` and with ``gmu``

``tabular`` takes ``cat_cols``/``num_cols`` from the data set's ``column_info.json``.
Each configuration runs with several seeds; the table gives mean ± standard deviation
of accuracy, macro-F1 and micro-F1 (PetFinder) or F1 of the positive class at 0.5,
macro-F1 and F1 at the threshold best on the test set itself, which is how
Multimodal-Toolkit reports its Clothing figures (Clothing), next to the published
figures quoted in ``../shared/data/README.md``.

minilm features are extracted once into the store (``$MMTK_STORE``, default
``benchmarks/out/store``) and reused; the first run extracts ~7,500 texts (minutes on
a 2-core CPU).

    MMTK_STORE=benchmarks/out/store .venv/bin/python benchmarks/bench_tabular.py [--seeds 3] [--scaling standard]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_setup import bench_store  # benchmarks/, the script's folder, is on sys.path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tabular"
OUT = ROOT / "benchmarks" / "out"

DATASETS = {
    "PetFinder": {
        "folder": "PetFindermy_Adoption_Prediction", "text": "Description",
        "metrics": ("accuracy", "macro_f1", "micro_f1"),
        "published": "Multimodal-Toolkit (full training split): macro-F1 0.088 text only to 0.275 (gating); micro-F1 0.281 to 0.380",
    },
    "Clothing": {
        "folder": "Womens_Clothing_E-Commerce_Reviews", "text": "Review Text",
        "metrics": ("f1", "macro_f1", "f1_best_threshold"),
        "published": "Multimodal-Toolkit (full training split, F1 at the best threshold on test): 0.957 text only to 0.968; "
        "majority class F1 0.903",
    },
}

CONFIGS = (
    ("text only", "concat", "minilm@{text}"),
    ("tabular only", "concat", "tabular"),
    ("text + tabular", "concat", "minilm@{text},tabular"),
    ("text + tabular", "gmu", "minilm@{text},tabular"),
)


def best_threshold_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Positive-class F1 at the threshold that maximises it on these very items."""
    order = np.argsort(-scores)
    hits = np.cumsum(labels[order] == 1)
    predicted = np.arange(1, len(scores) + 1)
    f1 = 2 * hits / (predicted + (labels == 1).sum())
    return float(f1.max())


def run_dataset(name: str, info: dict, store, seeds: int, scaling: str, epochs: int) -> list[dict]:
    from dataclasses import replace

    from mmtk.data import read_dataset
    from mmtk.evaluate import evaluate
    from mmtk.extract import extract_features
    from mmtk.predict import predict
    from mmtk.tabular import read_columns_file
    from mmtk.train import train

    folder = DATA / info["folder"]
    spec = replace(read_columns_file(folder / "column_info.json"), scaling=scaling)
    text = info["text"]
    # Rows without text are dropped from every run (the text feature needs a text).
    train_ds = read_dataset(folder / "val.csv", require=[text], on_error="skip")
    test_ds = read_dataset(folder / "test.csv", require=[text], on_error="skip")
    print(f"\n{name}: train {len(train_ds)} rows ({len(train_ds.skipped)} without {text!r} left out), "
          f"test {len(test_ds)} ({len(test_ds.skipped)} left out); label {spec.label_col}; "
          f"{len(spec.cat_cols)} categorical, {len(spec.num_cols)} numerical columns, {scaling} scaling", flush=True)
    for dataset in (train_ds, test_ds):
        tick = time.perf_counter()
        report = extract_features(dataset, "minilm", store=store, column=text, device="cpu")
        if report.computed:
            print(f"  extracted {report.computed} minilm vectors in {time.perf_counter() - tick:.0f} s", flush=True)

    binary_positive = None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, features in CONFIGS:
            refs = features.format(text=text).split(",")
            per_seed = []
            tick = time.perf_counter()
            for seed in range(seeds):
                run = Path(tmp) / f"{model}-{len(refs)}-{refs[-1]}-{seed}"
                train(train_ds, features=refs, model=model, tasks=[spec.label_col], out=run, store=store, seed=seed,
                      epochs=epochs, tabular=spec if "tabular" in refs else None, device="cpu")
                metrics = dict(evaluate(run, test_ds, store=store, device="cpu")["metrics"])
                if "f1_best_threshold" in info["metrics"]:
                    records = predict(run, test_ds, store=store, device="cpu")
                    binary_positive = binary_positive or sorted(records[0]["probs"])[-1]
                    scores = np.array([r["probs"][binary_positive] for r in records])
                    truth = np.array([str(r.values[spec.label_col]).strip() == binary_positive for r in test_ds.records], dtype=int)
                    metrics["f1_best_threshold"] = best_threshold_f1(truth, scores)
                per_seed.append({key: metrics[key] for key in info["metrics"]})
            summary = {
                key: (statistics.mean(m[key] for m in per_seed), statistics.pstdev(m[key] for m in per_seed))
                for key in info["metrics"]
            }
            results.append({"dataset": name, "features": label, "model": model, "refs": refs, "seeds": seeds,
                            "metrics": summary, "seconds": time.perf_counter() - tick})
            cells = "  ".join(f"{key} {mean:.3f}±{std:.3f}" for key, (mean, std) in summary.items())
            print(f"  {label:<15} {model:<7} {cells}", flush=True)
    print(f"  published: {info['published']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per configuration")
    parser.add_argument("--scaling", default="standard", choices=("standard", "minmax", "quantile"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    store = bench_store(DATA, OUT, f"{args.seeds} seeds per configuration")
    if store is None:
        return
    results = []
    for name in args.datasets.split(","):
        info = DATASETS[name]
        if not (DATA / info["folder"]).is_dir():
            print(f"skipped {name}: {DATA / info['folder']} is absent")
            continue
        results += run_dataset(name, info, store, args.seeds, args.scaling, args.epochs)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_tabular.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {OUT / 'bench_tabular.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
