"""mmtk's learned models against a logistic regression on the very same stored features.

For each set, every model of ``mmtk list models`` is trained with default settings through
the public library API, on each single modality and on their fusion, and scored on the
set's test split; beside each of its rows stands a scikit-learn ``LogisticRegression``
trained on the same features as mmtk gathers them (pooled the same way, concatenated,
standardised by a ``StandardScaler`` fitted on the training part, ``C`` chosen by 5-fold
stratified cross-validation over ``C_GRID`` on accuracy), and the ratio mmtk / LR.

Sets (``--sets``, all by default):

- ``av-clean``, ``av-hard``: the audio-visual digits of ``bench_av_digits.py`` (its data
  built by importing it): ``mfcc`` (audio), ``pixels`` (image), both fused.
- ``clothing``, ``petfinder``: ``../shared/data/tabular``, trained on ``val.csv`` and
  tested on ``test.csv`` as ``bench_tabular.py`` does (rows without the text left out):
  ``minilm@TEXT`` (text), ``tabular`` (``column_info.json``'s columns, standard scaling),
  both fused.
- ``memes``: ``examples/memes`` (train.jsonl / test.jsonl): ``efficientnet-lite0``
  (image), ``minilm`` (text), both fused.

Features are extracted once into ``$MMTK_STORE`` (default ``benchmarks/out/store``, shared
with ``bench_tabular.py``) and reused by later runs. mmtk trains with seeds 0..N-1
(``--seeds``; the table gives mean ± population standard deviation); the LR is
deterministic, so it is fitted once, and its results are kept in
``benchmarks/out/bench_baselines_lr.json`` (``--lr-cache``) under a digest of its exact
inputs, so a rerun after a change to mmtk's training code refits only what changed
(``--no-lr-cache`` refits everything).

The train and evaluate functions are looked up at run time (``--train-fn``, default
``mmtk.train:train``; ``--evaluate-fn``, default ``mmtk.evaluate:evaluate``) and called with
keyword arguments only, so the same script measures the code before and after a change
of the training layer.

Diagnosis (``--variants``, default ``defaults``): each variant changes, in this benchmark
only, how features reach both mmtk and the LR, or mmtk's training settings:

- ``defaults``: the library as it is.
- ``std``: every stored feature standardised per dimension (mean and standard deviation
  of the whole training file) before mmtk sees it (``tabular`` is already scaled).
- ``meanstd``: sequence features (``mfcc``) pooled by mean and standard deviation over
  their valid frames instead of the mean alone (the LR gets the same vectors).
- ``long``: ``epochs=1000`` and ``patience=30`` instead of 100 and 10.
- ``lr3``: learning rate 3e-3 instead of 1e-3.
- ``lossstop``: early stopping on the validation loss (the default before ``--monitor
  auto``), to measure the previous default beside the current one in one run.
- combinations joined by ``+``: ``std+meanstd``, ``std+long``, ``std+meanstd+long``...

The feature variants replace ``mmtk.features.gather_features`` for the duration of the
run; after a change of the training layer that removes it they stop with a message
(``defaults`` keeps working). Run from the repository root:

    .venv/bin/python benchmarks/bench_baselines.py                       # every set, 2 seeds
    .venv/bin/python benchmarks/bench_baselines.py --quick               # 1 seed, every set
    .venv/bin/python benchmarks/bench_baselines.py --sets av-hard,memes --variants defaults,std,std+meanstd --seeds 1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
TABULAR_DATA = ROOT.parent / "shared" / "data" / "tabular"
C_GRID = (0.001, 0.01, 0.1, 1.0)
SET_NAMES = ("av-clean", "av-hard", "clothing", "petfinder", "memes")
VARIANT_PARTS = ("defaults", "std", "meanstd", "long", "lr3", "lossstop")
TRAIN_SETTINGS = {"long": {"epochs": 1000, "patience": 30}, "lr3": {"lr": 3e-3}, "lossstop": {"monitor": "val_loss"}}


@dataclass
class BenchSet:
    """One data set: training and test datasets, the label task, its modalities (label ->
    feature references; the last entry is their fusion) and the metric its users quote."""

    name: str
    train: object
    test: object
    task: str
    modalities: dict[str, list[str]]
    usual: str | None = None
    tabular: object = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- sets


def av_digits_sets(names: list[str], work: Path) -> list[BenchSet]:
    """The audio-visual digit variants, built by bench_av_digits.py's own code."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_av_digits as av

    from mmtk.data import read_dataset

    if not av.RECORDINGS.is_dir():
        print(f"skipped av digits: {av.RECORDINGS} is absent (it is only on mmtk's development machines)")
        return []
    defaults = {"snr_db": 0.0, "erase": 4}  # bench_av_digits.py's own defaults
    sets = []
    for name in names:
        variant = name.removeprefix("av-")
        csvs = av.build_variant(work / variant, variant == "hard", defaults["snr_db"], defaults["erase"], av.RECORDINGS)
        sets.append(BenchSet(
            name=name, train=read_dataset(csvs["train"]), test=read_dataset(csvs["test"]), task="label",
            modalities={"audio": ["mfcc"], "image": ["pixels"], "fused": ["mfcc", "pixels"]},
            notes=[f"{variant}: " + ("audio noise 0 dB SNR, 4 of 8 image rows/columns erased" if variant == "hard" else "no noise")],
        ))
    return sets


TABULAR_SETS = {
    "clothing": ("Womens_Clothing_E-Commerce_Reviews", "Review Text", "f1"),
    "petfinder": ("PetFindermy_Adoption_Prediction", "Description", "micro_f1"),
}


def tabular_set(name: str) -> BenchSet | None:
    from mmtk.data import read_dataset
    from mmtk.tabular import read_columns_file

    folder_name, text, usual = TABULAR_SETS[name]
    folder = TABULAR_DATA / folder_name
    if not folder.is_dir():
        print(f"skipped {name}: {folder} is absent (it is only on mmtk's development machines)")
        return None
    spec = replace(read_columns_file(folder / "column_info.json"), scaling="standard")
    # Rows without text are left out of every run (the text feature needs a text), as in bench_tabular.py.
    train = read_dataset(folder / "val.csv", require=[text], on_error="skip")
    test = read_dataset(folder / "test.csv", require=[text], on_error="skip")
    text_ref = f"minilm@{text}"
    return BenchSet(
        name=name, train=train, test=test, task=spec.label_col, usual=usual, tabular=spec,
        modalities={"text": [text_ref], "tabular": ["tabular"], "fused": [text_ref, "tabular"]},
        notes=[f"{name}: train val.csv {len(train)} rows, test test.csv {len(test)} rows "
               f"({len(train.skipped)} + {len(test.skipped)} without {text!r} left out)"],
    )


def memes_set() -> BenchSet:
    from mmtk.data import read_dataset

    folder = ROOT / "examples" / "memes"
    return BenchSet(
        name="memes", train=read_dataset(folder / "train.jsonl"), test=read_dataset(folder / "test.jsonl"),
        task="label", usual="roc_auc",
        modalities={"image": ["efficientnet-lite0"], "text": ["minilm"], "fused": ["efficientnet-lite0", "minilm"]},
    )


def build_sets(names: list[str], work: Path) -> list[BenchSet]:
    sets: list[BenchSet] = []
    av_names = [n for n in names if n.startswith("av-")]
    by_name = {s.name: s for s in av_digits_sets(av_names, work)} if av_names else {}
    for name in names:
        if name in by_name:
            sets.append(by_name[name])
        elif name in TABULAR_SETS:
            found = tabular_set(name)
            if found is not None:
                sets.append(found)
        elif name == "memes":
            sets.append(memes_set())
    return sets


def extract(bench: BenchSet, store) -> None:
    """Fill the store with every stored (non-tabular) feature of the set, both splits."""
    from mmtk.extract import extract_features
    from mmtk.features import parse_feature_refs

    refs = [ref for ref in parse_feature_refs(bench.modalities["fused"]) if not ref.is_tabular]
    for dataset in (bench.train, bench.test):
        for ref in refs:
            tick = time.perf_counter()
            report = extract_features(dataset, ref.backbone, store=store, column=ref.column, device="cpu")
            if report.computed:
                print(f"  {bench.name}: extracted {report.computed} {ref.name} in {time.perf_counter() - tick:.0f} s",
                      file=sys.stderr, flush=True)


# ------------------------------------------------------------- feature variants


class FeatureView:
    """How stored features reach mmtk and the LR in one variant: the pooling of sequence
    features (mean, or mean and standard deviation) and whether each dimension is
    standardised with statistics of the set's training file. Installed by replacing
    ``mmtk.features.gather_features``, which train, evaluate and predict all call."""

    def __init__(self, pool: str, standardise: bool) -> None:
        self.pool, self.standardise = pool, standardise
        self.stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._original = None

    @property
    def changes_features(self) -> bool:
        return self.pool != "mean" or self.standardise

    @contextlib.contextmanager
    def installed(self):
        if not self.changes_features:
            yield
            return
        import mmtk.features as features

        if not hasattr(features, "gather_features"):
            raise SystemExit("the feature variants replace mmtk.features.gather_features, which this mmtk no longer has; "
                             "run --variants defaults, or port FeatureView to the new feature API")
        self._original = features.gather_features
        features.gather_features = self._gather
        try:
            yield
        finally:
            features.gather_features = self._original

    def fit(self, bench: BenchSet, store) -> None:
        """Per-dimension mean and standard deviation of every stored feature over the
        training file (the part mmtk holds out for early stopping included; no test item)."""
        self.stats = None
        if not self.standardise:
            return
        from mmtk.features import load_features

        stored = [ref for ref in bench.modalities["fused"] if ref != "tabular"]
        raw = load_features(bench.train, stored, store)
        self.stats = {name: (a.mean(axis=0), np.where(a.std(axis=0) > 0, a.std(axis=0), 1.0)) for name, a in raw.items()}

    def _gather(self, dataset, resolved, store, **kwargs):
        arrays = self._original(dataset, resolved, store, **kwargs)
        if self.pool == "meanstd":
            from mmtk.data import content_keys

            for feature in resolved:
                config = feature.backbone
                if config.kind != "sequence":
                    continue
                keys = content_keys(dataset.values(feature.column), config.modality)
                steps, lengths = store.gather_sequences(config.fingerprint, keys)
                arrays[feature.name] = mean_std_pool(steps, lengths)
        if self.stats is not None:
            for name, array in arrays.items():
                mean, std = self.stats[name]
                arrays[name] = ((array - mean) / std).astype(np.float32)
        return arrays


def mean_std_pool(steps: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over each item's valid steps, concatenated ((N, 2d))."""
    mask = (np.arange(steps.shape[1])[None, :] < lengths[:, None]).astype(np.float32)[..., None]
    count = np.maximum(lengths, 1).astype(np.float32)[:, None]
    mean = (steps * mask).sum(axis=1) / count
    var = (((steps - mean[:, None, :]) ** 2) * mask).sum(axis=1) / count
    return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)


def parse_variant(text: str) -> tuple[FeatureView, dict]:
    parts = text.split("+")
    unknown = [p for p in parts if p not in VARIANT_PARTS]
    if unknown:
        raise SystemExit(f"unknown variant part {unknown[0]!r}; use {', '.join(VARIANT_PARTS)} joined by '+'")
    settings: dict = {}
    for part in parts:
        settings.update(TRAIN_SETTINGS.get(part, {}))
    return FeatureView(pool="meanstd" if "meanstd" in parts else "mean", standardise="std" in parts), settings


# ------------------------------------------------------------------- the models


def lookup(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def lr_features(bench: BenchSet, refs: list[str], store) -> tuple[np.ndarray, np.ndarray]:
    """The inputs mmtk's models get for ``refs``, concatenated: stored features through
    mmtk's own gathering (pooled as mmtk pools them) and ``tabular`` through mmtk's own
    preprocessor fitted on the training part."""
    from mmtk.features import load_features
    from mmtk.tabular import fit_tabular

    stored = [ref for ref in refs if ref != "tabular"]
    train_parts, test_parts = [], []
    if stored:
        train_x, test_x = load_features(bench.train, stored, store), load_features(bench.test, stored, store)
        train_parts += list(train_x.values())
        test_parts += list(test_x.values())
    if "tabular" in refs:
        preprocessor = fit_tabular(bench.tabular, bench.train)
        train_parts.append(preprocessor.transform(bench.train))
        test_parts.append(preprocessor.transform(bench.test))
    return np.concatenate(train_parts, axis=1), np.concatenate(test_parts, axis=1)


def logistic_regression(bench: BenchSet, refs: list[str], store, cache: dict) -> tuple[dict, float]:
    """Test metrics (mmtk's metric code, mmtk's label encoding) of a standardised LR with
    C chosen by 5-fold stratified cross-validation on the training file; and that C.

    ``cache`` holds earlier results keyed by a digest of the exact inputs (features,
    labels, grid, scikit-learn version): the LR does not depend on mmtk's training code,
    and on 2 busy cores its cross-validation costs minutes per row (lbfgs on 256 pixels)."""
    import hashlib

    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mmtk.data import fit_label_encoder, parse_task
    from mmtk.metrics import compute_metrics

    encoder = fit_label_encoder(parse_task(bench.task), bench.train)
    train_y, test_y = encoder.encode(bench.train), encoder.encode(bench.test)
    train_x, test_x = lr_features(bench, refs, store)
    digest = hashlib.sha256(repr((C_GRID, sklearn.__version__, encoder.task.kind, train_x.shape, test_x.shape)).encode())
    for array in (train_x, test_x, train_y, test_y):
        digest.update(np.ascontiguousarray(array).tobytes())
    key = digest.hexdigest()
    if key in cache:
        return cache[key]["metrics"], cache[key]["C"]
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
        {"logisticregression__C": list(C_GRID)},
        cv=StratifiedKFold(5, shuffle=True, random_state=0), scoring="accuracy", n_jobs=1,
    )
    search.fit(train_x, train_y)
    probs = np.zeros((len(test_y), len(encoder.classes)))
    probs[:, search.best_estimator_.classes_] = search.predict_proba(test_x)
    metrics, c = compute_metrics(encoder.task.kind, test_y, probs), float(search.best_params_["logisticregression__C"])
    cache[key] = {"set": bench.name, "features": refs, "metrics": metrics, "C": c}
    return metrics, c


def mmtk_model(bench: BenchSet, refs: list[str], model: str, seed: int, store, work: Path, train_fn, evaluate_fn, settings: dict) -> dict:
    out = work / f"{bench.name}-{model}-{'+'.join(refs).replace('@', '_').replace(' ', '_')}-{seed}"
    kwargs = dict(features=refs, model=model, tasks=[bench.task], out=out, store=store, seed=seed, device="cpu", **settings)
    if "tabular" in refs:
        kwargs["tabular"] = bench.tabular
    train_fn(bench.train, **kwargs)
    return dict(evaluate_fn(out, bench.test, store=store, device="cpu", extract_missing=False)["metrics"])


# ------------------------------------------------------------------- reporting


def summarise(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values)


def run_variant(variant: str, sets: list[BenchSet], models: list[str], seeds: int, store, work: Path, train_fn, evaluate_fn,
                lr_cache: dict, lr_store: dict, lr_file: Path | None) -> list[dict]:
    view, settings = parse_variant(variant)
    rows = []
    with view.installed():
        for bench in sets:
            view.fit(bench, store)
            for label, refs in bench.modalities.items():
                # Standardising per dimension leaves the LR (standardised itself) unchanged,
                # so only the pooling keys its cached result.
                key = (bench.name, tuple(refs), view.pool)
                if key not in lr_cache:
                    tick = time.perf_counter()
                    lr_cache[key] = (*logistic_regression(bench, refs, store, lr_store), time.perf_counter() - tick)
                    if lr_file is not None:
                        lr_file.write_text(json.dumps(lr_store, indent=1) + "\n")
                lr_metrics, c, lr_seconds = lr_cache[key]
                for model in models:
                    tick = time.perf_counter()
                    per_seed = [mmtk_model(bench, refs, model, seed, store, work, train_fn, evaluate_fn, settings) for seed in range(seeds)]
                    row = {
                        "variant": variant, "set": bench.name, "modality": label, "features": refs, "model": model,
                        "usual": bench.usual, "seeds": seeds, "lr_C": c, "lr": lr_metrics,
                        "mmtk": {key: summarise([m[key] for m in per_seed]) for key in per_seed[0]},
                        "mmtk_seconds": time.perf_counter() - tick, "lr_seconds": lr_seconds,
                    }
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    cells = []
    for key in ("accuracy", "macro_f1") + ((row["usual"],) if row["usual"] else ()):
        mean, std = row["mmtk"][key]
        spread = f"±{std:.3f}" if row["seeds"] > 1 else ""
        cells.append(f"{key} {mean:.3f}{spread} / {row['lr'][key]:.3f} = {mean / max(row['lr'][key], 1e-9):.2f}")
    return (f"{row['variant']:<16} {row['set']:<10} {row['modality']:<8} {row['model']:<7} "
            + "   ".join(cells) + f"   (LR C={row['lr_C']:g}; {row['mmtk_seconds']:.0f} s, LR {row['lr_seconds']:.0f} s)")


def fusion_checks(rows: list[dict]) -> list[str]:
    """Per variant and set, for each model and for the LR: fused accuracy against the
    best single modality's."""
    lines = []
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["set"]), []).append(row)
    for (variant, name), members in groups.items():
        models = list(dict.fromkeys(r["model"] for r in members))
        judges = [(m, [r for r in members if r["model"] == m], lambda r: r["mmtk"]["accuracy"][0]) for m in models]
        judges.append(("LR", [r for r in members if r["model"] == models[0]], lambda r: r["lr"]["accuracy"]))
        for who, own, get in judges:
            fused = [r for r in own if r["modality"] == "fused"]
            single = [r for r in own if r["modality"] != "fused"]
            if not fused or not single:
                continue
            best = max(single, key=get)
            margin = get(fused[0]) - get(best)
            lines.append(f"{variant:<16} {name:<10} {who:<7} fused {get(fused[0]):.3f} vs best single "
                         f"({best['modality']}) {get(best):.3f}: {margin:+.3f} {'ok' if margin >= 0 else 'FAILS'}")
    return lines


def variant_summary(rows: list[dict]) -> list[str]:
    """Per variant: rows where mmtk's mean accuracy >= the LR's, and the mean ratios."""
    lines = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        members = [r for r in rows if r["variant"] == variant]
        acc = [r["mmtk"]["accuracy"][0] / r["lr"]["accuracy"] for r in members]
        f1 = [r["mmtk"]["macro_f1"][0] / max(r["lr"]["macro_f1"], 1e-9) for r in members]
        wins = sum(r["mmtk"]["accuracy"][0] >= r["lr"]["accuracy"] for r in members)
        lines.append(f"{variant:<16} mmtk >= LR on accuracy in {wins}/{len(members)} rows; mean ratio accuracy "
                     f"{statistics.mean(acc):.3f} (min {min(acc):.3f}), macro-F1 {statistics.mean(f1):.3f} (min {min(f1):.3f})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SET_NAMES), help=f"comma-separated, of {', '.join(SET_NAMES)}")
    parser.add_argument("--models", help="comma-separated (default: every registered model)")
    parser.add_argument("--seeds", type=int, default=2, help="mmtk training seeds per row")
    parser.add_argument("--quick", action="store_true", help="one seed")
    parser.add_argument("--variants", default="defaults", help=f"comma-separated; parts {', '.join(VARIANT_PARTS)} joined by '+'")
    parser.add_argument("--train-fn", default="mmtk.train:train", help="MODULE:FUNCTION called as train(dataset, features=, model=, tasks=, out=, store=, seed=, device=[, tabular=])")
    parser.add_argument("--evaluate-fn", default="mmtk.evaluate:evaluate")
    parser.add_argument("--lr-cache", type=Path, default=OUT / "bench_baselines_lr.json",
                        help="LR results kept under a digest of their inputs (another worktree can share one)")
    parser.add_argument("--no-lr-cache", action="store_true", help="refit every LR and keep nothing")
    parser.add_argument("--json", type=Path, default=OUT / "bench_baselines.json")
    args = parser.parse_args()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SET_NAMES]
    if unknown:
        parser.error(f"unknown set {unknown[0]!r}; use {', '.join(SET_NAMES)}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in variants:
        parse_variant(variant)
    seeds = 1 if args.quick else args.seeds

    os.environ.setdefault("MMTK_STORE", str(OUT / "store"))
    import torch

    from mmtk.models import MODELS
    from mmtk.store import FeatureStore

    torch.set_num_threads(1)  # as bench_av_digits.py: small models, and the cores are shared
    models = args.models.split(",") if args.models else list(MODELS.names())
    train_fn, evaluate_fn = lookup(args.train_fn), lookup(args.evaluate_fn)
    store = FeatureStore(os.environ["MMTK_STORE"])
    started = time.perf_counter()
    print(f"store {store.root}; models {', '.join(models)}; {seeds} mmtk seed(s) per row (mean ± population std); "
          f"LR C grid {C_GRID}, 5-fold CV; load average {os.getloadavg()[0]:.1f}")
    print("cells: mmtk / LR = ratio; usual metric: clothing F1 of the positive class at 0.5, petfinder micro-F1, memes ROC AUC")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_baselines_") as tmp:
        work = Path(tmp)
        sets = build_sets(names, work)
        for bench in sets:
            for note in bench.notes:
                print(f"  {note}")
            extract(bench, store)
        lr_cache: dict = {}
        lr_file = None if args.no_lr_cache else args.lr_cache
        lr_store = json.loads(lr_file.read_text()) if lr_file is not None and lr_file.is_file() else {}
        for variant in variants:
            rows += run_variant(variant, sets, models, seeds, store, work, train_fn, evaluate_fn, lr_cache, lr_store, lr_file)
    print("\nfusion >= best single modality (accuracy):")
    print("\n".join(fusion_checks(rows)))
    print("\nper variant:")
    print("\n".join(variant_summary(rows)))
    print(f"total {time.perf_counter() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"rows written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
