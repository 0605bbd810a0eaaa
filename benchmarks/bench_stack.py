"""Stacking ensembles of unimodal members beside frozen-feature fusion, on the Clothing
reviews and PetFinder listings of ``../shared/data/tabular`` (issue 13).

For each data set (train on ``val.csv``, a seeded 20% of it held out for early stopping
and for the stack's validation, test on ``test.csv``; rows whose text is empty left out
of every run, as ``bench_tabular.py`` does), one seed, all on the same split:

- ``concat`` and ``gmu`` on ``minilm@TEXT,tabular`` (frozen features, fused);
- ``logreg`` on the same concatenated features;
- ``stack``: one ``logreg`` member per modality (text: ``minilm@TEXT``; tabular), 5-fold
  out-of-fold member scores, ``--meta auto`` (and each fixed meta-estimator, which reuse
  the same members' out-of-fold scores: only the meta-estimator differs);
- each member alone (the stack's ``members/NAME`` runs);
- "leaky": the auto stack's meta-estimators refitted on the members' in-sample scores
  of their own training items instead of out-of-fold scores (what stacking given runs
  without retraining them would do), to measure what the honest recipe buys.

The data have no images, so the members are text and tabular. Test metrics: accuracy,
macro-F1 (PetFinder: 5 classes, micro-F1 = accuracy) and F1 of the positive class at 0.5
(Clothing). Seconds are wall-clock on whatever machine runs it (ratios only, in one run).

    MMTK_STORE=benchmarks/out/store .venv/bin/python benchmarks/bench_stack.py [--datasets Clothing,PetFinder] [--member-model logreg] [--metas ...]
"""

from __future__ import annotations

import argparse
import json
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
    "Clothing": {"folder": "Womens_Clothing_E-Commerce_Reviews", "text": "Review Text", "metrics": ("accuracy", "macro_f1", "f1")},
    "PetFinder": {"folder": "PetFindermy_Adoption_Prediction", "text": "Description", "metrics": ("accuracy", "macro_f1")},
}
METAS = ("soft-vote", "hard-vote", "logreg", "tree", "forest")


def leaky_metrics(run: Path, train_ds, test_ds, store, seed: int) -> dict:
    """The stack at ``run`` with each meta-estimator (the same kind ``auto`` chose)
    refitted on its members' scores of their own training items, evaluated on the test set."""
    import torch

    from mmtk.metrics import compute_metrics
    from mmtk.models.inference import forward_all
    from mmtk.models.objectives import to_outputs
    from mmtk.runs import load_run
    from mmtk.stacking import fit_meta, member_scores

    stack = load_run(run)
    config = stack.config
    train_items = train_ds.subset(_train_rows(train_ds, config, seed))
    refs = stack.feature_refs
    in_sample = np.concatenate([member_scores(ref.run_dir, train_items, store) for ref in refs], axis=1)
    targets = {task: stack.encoders[task].encode(train_items) for task in stack.tasks}
    kinds = {task: stack.kind(task) for task in stack.tasks}
    model = type(stack.model)(dict(zip(stack.model.names, stack.model.dims)), dict(zip(stack.model.tasks, stack.model.units)))
    parts = {}
    for task in stack.tasks:
        chosen = config["stack"]["meta"][task]["meta"]
        fitted, _ = fit_meta(model, in_sample, targets, kinds, chosen, config["stack"]["folds"], seed)
        parts[task] = fitted[task]
    model.fit_parts(parts).eval()
    test_scores = {ref.name: torch.as_tensor(member_scores(ref.run_dir, test_ds, store)) for ref in refs}
    logits, _ = forward_all(model, test_scores)
    task = stack.tasks[0]
    classes = [str(c) for c in stack.encoders[task].classes]
    return compute_metrics(kinds[task], stack.encoders[task].encode(test_ds), to_outputs(kinds[task], logits[task]), classes)


def _train_rows(dataset, config, seed: int) -> list[int]:
    """The training part of ``dataset`` as ``train`` split it for this run."""
    from mmtk.data import parse_task
    from mmtk.train import _strata, split_indices

    specs = [parse_task(f"{t['columns'][0]}:{t['kind']}") for t in config["tasks"]]
    return split_indices(_strata(dataset, specs), 0.2, seed, dataset.source)[0]


def run_dataset(name: str, info: dict, store, member_model: str, seed: int, metas: list[str]) -> list[dict]:
    from mmtk.data import read_dataset
    from mmtk.evaluate import evaluate
    from mmtk.extract import extract_features
    from mmtk.tabular import read_columns_file
    from mmtk.train import train

    folder = DATA / info["folder"]
    spec = read_columns_file(folder / "column_info.json")
    text = info["text"]
    train_ds = read_dataset(folder / "val.csv", require=[text], on_error="skip")
    test_ds = read_dataset(folder / "test.csv", require=[text], on_error="skip")
    print(f"\n{name}: train {len(train_ds)} rows, test {len(test_ds)} (rows without {text!r} left out); label {spec.label_col}", flush=True)
    for dataset in (train_ds, test_ds):
        extract_features(dataset, "minilm", store=store, column=text, device="cpu")
    fused = [f"minilm@{text}", "tabular"]
    common = dict(tasks=[f"{spec.label_col}"], store=store, seed=seed, tabular=spec, device="cpu")
    rows = []

    def record(label: str, run: Path, seconds: float | None, metrics: dict | None = None):
        metrics = metrics or evaluate(run, test_ds, store=store, device="cpu")["metrics"]
        row = {"dataset": name, "model": label, "seconds": seconds, **{key: metrics[key] for key in info["metrics"]}}
        rows.append(row)
        cells = "  ".join(f"{key} {row[key]:.3f}" for key in info["metrics"])
        print(f"  {label:<34} {cells}  {'' if seconds is None else f'{seconds:.0f} s'}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for model in ("concat", "gmu", "logreg"):
            tick = time.perf_counter()
            train(train_ds, features=fused, model=model, out=Path(tmp) / model, **common)
            record(f"{model} (text + tabular)", Path(tmp) / model, time.perf_counter() - tick)
        tick = time.perf_counter()
        stack = Path(tmp) / "stack"
        report = train(train_ds, features=fused, model="stack", out=stack, model_args={"meta": "auto", "member": member_model}, **common)
        chosen = report.log[0]["meta"][spec.label_col]
        record(f"stack of {member_model} members, meta auto -> {chosen['meta']}", stack, time.perf_counter() - tick)
        print("    cross-validated macro-F1 on the out-of-fold scores: "
              + ", ".join(f"{k} {v:.3f}" for k, v in chosen["cv_macro_f1"].items()), flush=True)
        for member in sorted((stack / "members").iterdir()):
            record(f"member {member.name} alone ({member_model})", member, None)
        record("stack, meta fitted on in-sample scores", stack, None, leaky_metrics(stack, train_ds, test_ds, store, seed))
        for meta in metas:
            tick = time.perf_counter()
            train(train_ds, features=fused, model="stack", out=Path(tmp) / f"stack-{meta}", model_args={"meta": meta, "member": member_model}, **common)
            record(f"stack, meta {meta}", Path(tmp) / f"stack-{meta}", time.perf_counter() - tick)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--member-model", default="logreg", help="model of the stack's members (any registered model but stack)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metas", default=",".join(METAS), help="the fixed meta-estimators to train stacks with besides auto ('' for none)")
    args = parser.parse_args()
    store = bench_store(DATA, OUT, f"seed {args.seed}")
    if store is None:
        return
    rows = []
    for name in args.datasets.split(","):
        rows += run_dataset(name, DATASETS[name], store, args.member_model, args.seed, [m for m in args.metas.split(",") if m])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"bench_stack_{args.member_model}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nresults written to {OUT / f'bench_stack_{args.member_model}.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
