"""Evidence for the fusion zoo (issue 11): robustness to an uninformative modality, and
one comparison table of every registered model on two data sets.

Parts (``--parts``, both by default):

- ``robustness`` (MulT-GMU's finding, Tsai et al. 2019 report that gated late fusion
  resists a useless modality where concatenation does not): the hard audio-visual digits
  of ``bench_av_digits.py`` (its data built by importing it: FSDD recordings under 0 dB
  white noise, 4 of 8 rows or columns of each digit image erased), every vector model
  (no ``sequences`` capability), ``--seeds`` seeds, trained on ``mfcc,pixels`` and on
  ``mfcc,pixels,minilm@noise``, where ``noise`` is a column of 8-16 random words per item
  (from ``NOISE_WORDS``, seeded by the item id, so the same in every run) put through
  ``minilm``. Test-split accuracy, mean ± population standard deviation over the seeds,
  and for models with ``--explain`` the weight they give the noise input (gates,
  attention), averaged over the test items and seeds.
- ``table``: every registered model on the hard AV digits (``mfcc,pixels``: vector models
  get ``mfcc`` pooled, sequence models its frames) and on the Clothing reviews
  (``bench_baselines.py``'s set, loaded by importing it: trained on ``val.csv``, tested on
  ``test.csv``, ``minilm@Review Text`` and ``tabular`` from ``column_info.json``), all
  through ``mmtk.compare.train_many`` with default settings, scored on the test split by
  ``mmtk.evaluate``. Vector models on the AV digits reuse the robustness part's runs
  without the extra modality when it ran. A model that cannot train on a set's features
  (token models without ``tokens@COLUMN``, sequence-only models given vectors) is listed
  with its error. ``--table-seeds`` seeds per model.
- ``fgsm`` (not run by default): ``--fgsm-models`` (gmu, concat) on the hard AV digits
  trained with ``--perturb fgsm`` at each ``--fgsm-eps`` and without, ``--fgsm-seeds``
  seeds each: clean test accuracy and the training loop's samples/s (the cost of the
  second forward and backward pass).

Missing features are extracted with the library API into ``$MMTK_STORE`` (default
``benchmarks/out/store``, shared with ``bench_baselines.py``). One torch thread (as
``bench_baselines.py``); ``--epochs`` caps the epochs of every run (default: train()'s own)
and ``--sequence-epochs`` those of sequence models (default 20: they cost 10-100x a
vector model per epoch on a CPU). Run from the repository root:

    .venv/bin/python benchmarks/bench_zoo.py                                  # both parts, 5 / 1 seeds
    .venv/bin/python benchmarks/bench_zoo.py --parts robustness --models concat,gmu --seeds 2
    .venv/bin/python benchmarks/bench_zoo.py --parts table --sets clothing
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PARTS = ("robustness", "table", "fgsm")
SETS = ("av-hard", "clothing")
AV_FEATURES = ["mfcc", "pixels"]
NOISE_FEATURE = "minilm@noise"
# Everyday words unrelated to digits: the extra text says nothing about the label.
NOISE_WORDS = (
    "apple river window chair yellow garden music paper quiet silver market cloud forest bottle "
    "candle orange winter pencil mirror basket ocean planet ladder carpet violin bridge desert lemon "
    "rabbit coffee blanket island jacket rocket shadow summer tunnel velvet wallet anchor bicycle castle "
    "dragon feather glove harbor kettle lantern meadow needle pepper saddle thunder umbrella village"
).split()


def add_noise_column(path: Path) -> None:
    """Add a ``noise`` column of 8-16 random words (seeded by the item id) to a CSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        rng = np.random.default_rng(zlib.crc32(row["id"].encode("utf-8")))
        row["noise"] = " ".join(rng.choice(NOISE_WORDS, size=int(rng.integers(8, 17))))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def av_hard(work: Path):
    """The hard AV digits (train, test), built by bench_av_digits.py with its defaults,
    with the ``noise`` column; None without the FSDD recordings."""
    sys.path.insert(0, str(HERE))
    import bench_av_digits as av

    from mmtk.data import read_dataset

    if not av.RECORDINGS.is_dir():
        print(f"skipped av-hard: {av.RECORDINGS} is absent (it is only on mmtk's development machines)")
        return None
    csvs = av.build_variant(work / "av-hard", True, 0.0, 4, av.RECORDINGS)
    for path in csvs.values():
        add_noise_column(path)
    return read_dataset(csvs["train"]), read_dataset(csvs["test"])


def clothing():
    """bench_baselines.py's Clothing set: (train, test, tabular spec, text feature)."""
    sys.path.insert(0, str(HERE))
    import bench_baselines as baselines

    found = baselines.tabular_set("clothing")
    if found is None:
        return None
    return found.train, found.test, found.tabular, found.modalities["text"][0]


def extract(datasets, features: list[str], store) -> None:
    """Store every stored feature of ``features`` for each dataset (only what is missing)."""
    from mmtk.extract import extract_features
    from mmtk.features import parse_feature_refs

    for ref in parse_feature_refs(features):
        if ref.is_tabular:
            continue
        for dataset in datasets:
            tick = time.perf_counter()
            report = extract_features(dataset, ref.backbone, store=store, column=ref.column, device="cpu")
            if report.computed:
                print(f"  extracted {report.computed} {ref.name} in {time.perf_counter() - tick:.0f} s", file=sys.stderr, flush=True)


def run_models(train_set, test_set, models: list[str], features: list[str], seed: int, out: Path, store, settings: dict,
               tabular=None, task: str = "label") -> dict[str, dict]:
    """``{model: {"metrics": test metrics, "seconds", "samples_per_second", "parameters"}
    or {"error": line}}``: each model trained by ``train_many`` and its run evaluated on the test split."""
    from mmtk.compare import train_many
    from mmtk.evaluate import evaluate
    from mmtk.models import MODELS

    results = {}
    for model in models:
        # One call per model: an internal error (exit 3) in one model costs only its row.
        try:
            (result,) = train_many(train_set, models=[model], out=out, features=features, tasks=[task], store=store, seed=seed,
                                   device="cpu", tabular=tabular, **settings)
            metrics = evaluate(result.run, test_set, store=store, device="cpu", extract_missing=False)["metrics"]
        except Exception as exc:  # a lone model's MmtkError is raised by train_many, like any other failure
            results[model] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"    {model:<16} failed: {results[model]['error']}", file=sys.stderr, flush=True)
            continue
        results[model] = {
            "metrics": metrics, "seconds": result.report.seconds, "samples_per_second": result.report.samples_per_second,
            "parameters": result.parameters, "epochs_run": result.report.epochs_run,
        }
        if NOISE_FEATURE in features and MODELS.capabilities(model).get("explains"):
            results[model]["explain"] = mean_explanation(result.run, test_set, store)
        print(f"    {model:<16} seed {seed} test accuracy {metrics['accuracy']:.3f} "
              f"({result.report.seconds:.0f} s, {result.report.epochs_run} epochs)", file=sys.stderr, flush=True)
    return results


def mean_explanation(run: Path, test_set, store) -> dict[str, float]:
    """Each input's weight (``predict --explain``: gates, attention) averaged over the test items."""
    from mmtk.predict import predict

    records = predict(run, test_set, store=store, explain=True, device="cpu", extract_missing=False)
    names = list(records[0]["explain"])
    return {name: float(np.mean([r["explain"][name] for r in records])) for name in names}


def settings_for(model: str, args) -> dict:
    from mmtk.models import MODELS

    epochs = args.sequence_epochs if MODELS.capabilities(model).get("sequences") else args.epochs
    return {"epochs": epochs} if epochs else {}


def by_settings(models: list[str], args) -> list[tuple[list[str], dict]]:
    """Models grouped by their training settings (one ``train_many`` call per group)."""
    groups: dict[str, tuple[list[str], dict]] = {}
    for model in models:
        settings = settings_for(model, args)
        groups.setdefault(json.dumps(settings, sort_keys=True), ([], settings))[0].append(model)
    return list(groups.values())


def summarise(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values)


def robustness(av, models: list[str], args, store, work: Path, checkpoint=lambda runs: None) -> dict:
    """``{condition: {model: [entry per seed]}}``; ``checkpoint(runs)`` after every seed."""
    train_set, test_set = av
    conditions = {"mfcc,pixels": AV_FEATURES, "+ minilm@noise": AV_FEATURES + [NOISE_FEATURE]}
    runs: dict[str, dict[str, list[dict]]] = {c: {m: [] for m in models} for c in conditions}
    for seed in range(args.seeds):
        for condition, features in conditions.items():
            print(f"  robustness: seed {seed}, {condition}", file=sys.stderr, flush=True)
            for group, settings in by_settings(models, args):
                out = work / f"robust-{seed}-{len(features)}-{group[0]}"
                for model, entry in run_models(train_set, test_set, group, features, seed, out, store, settings).items():
                    runs[condition][model].append(entry)
        checkpoint(runs)
    return runs


def robustness_lines(runs: dict, seeds: int) -> list[str]:
    plain, noisy = list(runs)
    lines = [f"{'model':<16} {plain:>16} {noisy:>16} {'change':>8}  weight of {NOISE_FEATURE} (--explain, mean)"]
    for model in runs[plain]:
        cells = []
        accs = []
        for condition in (plain, noisy):
            entries = runs[condition][model]
            if any("error" in e for e in entries) or not entries:
                cells.append("failed")
                accs.append(None)
                continue
            mean, std = summarise([e["metrics"]["accuracy"] for e in entries])
            cells.append(f"{mean:.3f} ± {std:.3f}")
            accs.append(mean)
        change = f"{accs[1] - accs[0]:+.3f}" if None not in accs else "-"
        weights = [e["explain"][NOISE_FEATURE] for e in runs[noisy][model] if NOISE_FEATURE in e.get("explain", {})]
        weight = f"{statistics.mean(weights):.3f}" if weights else "-"
        lines.append(f"{model:<16} {cells[0]:>16} {cells[1]:>16} {change:>8}  {weight}")
    return lines


def table(name: str, train_set, test_set, features: list[str], models: list[str], args, store, work: Path, reuse: dict,
          tabular=None, task: str = "label") -> dict[str, list[dict]]:
    """``{model: [entry per seed]}`` of every model on one set (``reuse``: runs already made)."""
    runs = {model: list(reuse.get(model, [])) for model in models}
    todo = [m for m in models if not runs[m]]
    for seed in range(args.table_seeds):
        for group, settings in by_settings(todo, args):
            out = work / f"table-{name}-{seed}-{group[0]}"
            for model, entry in run_models(train_set, test_set, group, features, seed, out, store, settings, tabular, task).items():
                runs[model].append(entry)
    return runs


def table_lines(runs: dict[str, list[dict]], metrics: tuple[str, ...]) -> list[str]:
    header = f"{'model':<16} {'seeds':>5} " + " ".join(f"{m:>15}" for m in metrics) + f" {'parameters':>11} {'samples/s':>10} {'s/run':>7}"
    lines = [header]
    for model, entries in runs.items():
        failed = [e for e in entries if "error" in e]
        if failed or not entries:
            lines.append(f"{model:<16} failed: {failed[0]['error'] if failed else 'not run'}")
            continue
        cells = []
        for metric in metrics:
            values = [e["metrics"].get(metric) for e in entries]
            if None in values:
                cells.append(f"{'-':>15}")
                continue
            mean, std = summarise(values)
            cells.append(f"{mean:.3f} ± {std:.3f}".rjust(15) if len(entries) > 1 else f"{mean:.3f}".rjust(15))
        speed = statistics.median(e["samples_per_second"] for e in entries)
        seconds = statistics.median(e["seconds"] for e in entries)
        lines.append(f"{model:<16} {len(entries):>5} " + " ".join(cells) + f" {entries[0]['parameters']:>11,} {speed:>10,.0f} {seconds:>7.0f}")
    return lines


def fgsm(av, args, store, work: Path) -> dict[str, dict[str, list[dict]]]:
    """``{model: {"none" | "eps=E": [entry per seed]}}`` on the hard AV digits."""
    train_set, test_set = av
    capped = {"epochs": args.epochs} if args.epochs else {}
    settings = {"none": capped} | {f"eps={e:g}": {**capped, "perturb": "fgsm", "perturb_eps": e} for e in args.fgsm_eps}
    runs = {m: {name: [] for name in settings} for m in args.fgsm_models}
    for seed in range(args.fgsm_seeds):
        for name, extra in settings.items():
            print(f"  fgsm: seed {seed}, {name}", file=sys.stderr, flush=True)
            out = work / f"fgsm-{seed}-{name}"
            for model, entry in run_models(train_set, test_set, args.fgsm_models, AV_FEATURES, seed, out, store, extra).items():
                runs[model][name].append(entry)
    return runs


def fgsm_lines(runs: dict) -> list[str]:
    names = list(next(iter(runs.values())))
    lines = [f"{'model':<10} {'training':<10} {'test accuracy':>15} {'loop samples/s':>15} {'vs none':>8}"]
    for model, by_name in runs.items():
        base = None
        for name in names:
            entries = by_name[name]
            if not entries or any("error" in e for e in entries):
                lines.append(f"{model:<10} {name:<10} failed: {entries[0]['error'] if entries else 'not run'}")
                continue
            mean, std = summarise([e["metrics"]["accuracy"] for e in entries])
            speed = statistics.median(e["samples_per_second"] for e in entries)
            base = base or speed
            lines.append(f"{model:<10} {name:<10} {f'{mean:.3f} ± {std:.3f}':>15} {speed:>15,.0f} {speed / base:>8.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="robustness,table", help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--sets", default=",".join(SETS), help=f"table part: comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--models", help="comma-separated (default: every registered model; robustness: the vector ones)")
    parser.add_argument("--seeds", type=int, default=5, help="robustness: seeds per model and condition")
    parser.add_argument("--table-seeds", type=int, default=1, help="table: seeds per model (AV vector models reuse robustness runs)")
    parser.add_argument("--epochs", type=int, help="cap on every run's epochs (default: train()'s)")
    parser.add_argument("--sequence-epochs", type=int, default=20, help="cap on sequence models' epochs (0: train()'s)")
    parser.add_argument("--fgsm-models", type=lambda t: t.split(","), default=["gmu", "concat"])
    parser.add_argument("--fgsm-eps", type=lambda t: [float(e) for e in t.split(",")], default=[0.05, 0.2])
    parser.add_argument("--fgsm-seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=OUT / "bench_zoo.json")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    sets = [s for s in args.sets.split(",") if s] if "table" in args.parts.split(",") else []
    for value, valid in [*((p, PARTS) for p in parts), *((s, SETS) for s in sets)]:
        if value not in valid:
            parser.error(f"unknown {value!r}; use {', '.join(valid)}")

    os.environ.setdefault("MMTK_STORE", str(OUT / "store"))
    import torch

    from mmtk.compare import parse_models
    from mmtk.models import MODELS
    from mmtk.store import FeatureStore

    torch.set_num_threads(1)
    models = parse_models(args.models) if args.models else list(MODELS.names())
    vector_models = [m for m in models if not MODELS.capabilities(m).get("sequences")]
    store = FeatureStore(os.environ["MMTK_STORE"])
    started = time.perf_counter()
    print(f"store {store.root}; torch {torch.__version__}, 1 thread; load average {os.getloadavg()[0]:.1f}; "
          f"epochs {args.epochs or 'default'}, sequence models {args.sequence_epochs or 'default'}")
    document: dict = {"models": models, "seeds": args.seeds, "table_seeds": args.table_seeds, "epochs": args.epochs,
                      "sequence_epochs": args.sequence_epochs}
    args.json.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every part, so a stopped run keeps what it measured
        args.json.write_text(json.dumps(document, indent=1, default=str) + "\n")

    with tempfile.TemporaryDirectory(prefix="bench_zoo_") as tmp:
        work = Path(tmp)
        av = av_hard(work) if {"robustness", "fgsm"} & set(parts) or "av-hard" in sets else None
        if av is not None:
            extract(av, AV_FEATURES + ([NOISE_FEATURE] if "robustness" in parts else []), store)
        robust = None
        if "robustness" in parts and av is not None:
            robust = robustness(av, vector_models, args, store, work, lambda runs: (document.update(robustness=runs), save()))
            document["robustness"] = robust
            save()
            print(f"\nrobustness: hard AV digits, test accuracy, mean ± std over {args.seeds} seeds, without and with an "
                  f"uninformative text modality ({NOISE_FEATURE})")
            print("\n".join(robustness_lines(robust, args.seeds)), flush=True)
        if "fgsm" in parts and av is not None:
            document["fgsm"] = fgsm(av, args, store, work)
            save()
            print(f"\nFGSM training: hard AV digits ({','.join(AV_FEATURES)}), clean test accuracy, mean ± std over "
                  f"{args.fgsm_seeds} seeds; training-loop samples/s (median, wall clock)")
            print("\n".join(fgsm_lines(document["fgsm"])), flush=True)
        document["table"] = {}
        if "av-hard" in sets and av is not None:
            reuse = robust["mfcc,pixels"] if robust else {}
            runs = table("av-hard", *av, AV_FEATURES, models, args, store, work, reuse)
            document["table"]["av-hard"] = runs
            save()
            print("\ntable: hard AV digits (mfcc,pixels), test split")
            print("\n".join(table_lines(runs, ("accuracy", "macro_f1"))), flush=True)
        if "clothing" in sets:
            found = clothing()
            if found is not None:
                train_set, test_set, spec, text = found
                features = [text, "tabular"]
                extract((train_set, test_set), features, store)
                runs = table("clothing", train_set, test_set, features, models, args, store, work, {}, tabular=spec, task=spec.label_col)
                document["table"]["clothing"] = runs
                save()
                print(f"\ntable: Clothing reviews ({text}, tabular), test split; f1 = F1 of the positive class")
                print("\n".join(table_lines(runs, ("accuracy", "macro_f1", "f1", "roc_auc"))), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f}")
    save()
    print(f"results written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
