"""Distillation on audio-visual digits where the informative modality varies by item.

Data: ``bench_av_digits.py``'s pairing of each Free Spoken Digit recording with a
``load_digits()`` image of the same digit (FSDD's own split: test = idx 0-4), in a
"mixed" variant: per item (seeded by its file name) a coin decides which modality is
corrupted: the recording gets white noise at ``--snr-db`` (default -10 dB: the noise
ten times louder than the speech), or the image loses ``--erase`` (default 6) of its 8
rows or columns. The other modality is clean, so which one to trust differs per item,
the situation MSD's unimodal terms and instance weights are for.

A teacher (``--teacher``, default ``gmu`` with ``--teacher-hidden 256``) is trained once on
``mfcc`` + ``pixels``; its outputs on every view are cached. Per seed, a small student
(``--student`` ``gmu`` with ``--student-hidden``, default 8) is trained with each method:
no distillation, KD, FitNet, RKD, SP, and MSD with each weighting (population weights by
the grid on the validation split); every method's test accuracy and consistency ratio
(evaluate's distillation report; for the undistilled student computed against the same
teacher) are reported as mean +- population std over the seeds.

``--speed`` also times optimizer steps side by side (interleaved repetitions, one torch
thread): ``none`` (KD), ``population`` MSD and ``meta`` MSD with the look-ahead over all
parameters and over the heads only, as ratios to the KD step, for the small student on
these digits and for ``tinybert`` (4 x 312, on MiniLM) on the bundled memes' word
pieces and ``efficientnet-lite0:seq`` grids.

    .venv/bin/python benchmarks/bench_distill.py --seeds 5
    .venv/bin/python benchmarks/bench_distill.py --skip-quality --speed

Features go into ``$MMTK_STORE`` (default ``benchmarks/out/store``). The last line is one
JSON object with every figure.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = {  # name -> distill() options (None: the student trained without a teacher)
    "no distillation": None,
    "KD": {"msd": "none"},
    "FitNet": {"msd": "none", "hidden_losses": {"fitnet": 1.0}},
    "RKD": {"msd": "none", "hidden_losses": {"rkd_distance": 1.0, "rkd_angle": 2.0}},
    "SP": {"msd": "none", "hidden_losses": {"sp": 1000.0}},
    "MSD population": {"msd": "population"},
    "MSD importance": {"msd": "importance"},
    "MSD correctness": {"msd": "correctness"},
    "MSD meta": {"msd": "meta", "lookahead": "all"},
    "MSD meta (heads)": {"msd": "meta", "lookahead": "heads"},
}


def build_mixed(root: Path, snr_db: float, erase_rows: int, recordings: Path) -> dict[str, Path]:
    """Write media and train/test CSVs of the mixed variant (see the module docstring)."""
    import soundfile
    from PIL import Image

    sys.path.insert(0, str(HERE))
    import bench_av_digits as av

    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    images = av.images_by_split()
    csvs = {}
    for split, items in av.recordings_by_split(recordings).items():
        seen: dict[int, int] = {}
        rows = []
        for path, digit in items:
            j = seen.get(digit, 0)
            seen[digit] = j + 1
            pool = images[split][digit]
            rng = np.random.default_rng(av._seed(path.stem))
            pixels = pool[j % len(pool)]
            audio_path = path
            corrupted = "audio" if rng.random() < 0.5 else "image"
            if corrupted == "image":
                pixels = av.erase(pixels, erase_rows, rng)
            else:
                samples, rate = soundfile.read(str(path), dtype="float32")
                audio_path = media / f"{path.stem}_noisy.wav"
                soundfile.write(str(audio_path), av.add_noise(samples, snr_db, rng), rate)
            image_path = media / f"{split}_{path.stem}.png"
            Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8), mode="L").save(image_path)
            rows.append({"id": path.stem, "audio": str(audio_path), "image": str(image_path), "label": digit, "corrupted": corrupted})
        csvs[split] = root / f"{split}.csv"
        with open(csvs[split], "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return csvs


def consistency_against(run_dir: Path, teacher: Path, test_set, store) -> dict:
    """The distillation report of any run against ``teacher`` (the undistilled student
    records no teacher: it is named here, on the loaded run only)."""
    from mmtk.distill.report import distillation_report
    from mmtk.runs import load_run

    run = load_run(run_dir)
    run.config["distillation"] = {"teacher": str(teacher)}
    return distillation_report(run, test_set, store, device="cpu")


def quality(args, train_set, test_set, store, work: Path) -> dict:
    from mmtk.distill.recipe import distill
    from mmtk.evaluate import evaluate
    from mmtk.train import train

    features = ["mfcc", "pixels"]
    common = {"device": "cpu", "val_split": 0.2}
    teacher = work / "teacher"
    tick = time.perf_counter()
    train(train_set, features=features, model=args.teacher, tasks=["label"], out=teacher, store=store, seed=0,
          model_args={"hidden": args.teacher_hidden}, missing_modality="mask", **common)
    teacher_accuracy = evaluate(teacher, test_set, store=store, device="cpu", extract_missing=False)["metrics"]["accuracy"]
    print(f"teacher {args.teacher} hidden {args.teacher_hidden}: test accuracy {teacher_accuracy:.3f} ({time.perf_counter() - tick:.0f} s)", file=sys.stderr)
    results: dict[str, dict[str, list[float]]] = {name: {"accuracy": [], "consistency_ratio": [], "agreement": []} for name in METHODS}
    student_args = {"hidden": args.student_hidden}
    for seed in range(args.seeds):
        for name, options in METHODS.items():
            if args.methods and name not in args.methods:
                continue
            out = work / f"{name.replace(' ', '-')}-{seed}"
            tick = time.perf_counter()
            if options is None:
                train(train_set, features=features, model=args.student, tasks=["label"], out=out, store=store, seed=seed,
                      model_args=student_args, missing_modality="mask", **common)
            else:
                distill(train_set, teacher=str(teacher), student=args.student, features=features, out=out, store=store, seed=seed,
                        student_args=student_args, missing_modality="mask", lam=args.lam, temperature=args.temperature, **options, **common)
            accuracy = evaluate(out, test_set, store=store, device="cpu", extract_missing=False)["metrics"]["accuracy"]
            report = consistency_against(out, teacher, test_set, store)
            for key, value in (("accuracy", accuracy), ("consistency_ratio", report["consistency_ratio"]), ("agreement", report["agreement"])):
                results[name][key].append(float(value))
            print(f"seed {seed} {name:16s} accuracy {accuracy:.3f} consistency {report['consistency_ratio']:.3f} "
                  f"({time.perf_counter() - tick:.0f} s)", file=sys.stderr)
    return {"teacher_accuracy": teacher_accuracy, "methods": {k: v for k, v in results.items() if v["accuracy"]}}


def speed(dataset, features: list[str], student: str, student_args: dict, store, *, batch_size: int, repeats: int = 5, steps: int = 12) -> dict:
    """Seconds per optimizer step of the student under each objective on the same
    batches (best of ``repeats`` interleaved rounds of ``steps`` steps, one thread), as
    ratios to the KD step. The teacher's logits are stand-ins drawn at random: a step
    costs the same whatever their values, so no teacher is needed."""
    import torch

    from mmtk.distill.meta import MetaDistillObjective, MetaWeightNet, cycle, probability_width
    from mmtk.distill.objective import DistillObjective
    from mmtk.distill.recipe import with_word_pieces
    from mmtk.distill.teacher import GROUP_OF
    from mmtk.distill.views import FULL, Views, teacher_key
    from mmtk.distill.weighting import FixedWeights
    from mmtk.features import GatherContext, gather_inputs, resolve_features
    from mmtk.models import MODELS, check_model_params, model_capabilities, model_params
    from mmtk.training import SupervisedObjective, TaskLoss, adamw
    from mmtk.training.data import input_specs, memory_source
    from mmtk.training.normalize import Standardizer

    torch.manual_seed(0)
    refs = with_word_pieces(student, features)
    resolved = {f.name: f for f in resolve_features(dataset, refs)}
    params = {**model_params(student), **check_model_params(student, student_args)}
    sequences = model_capabilities(student, params).get("sequences")
    context = GatherContext(store=store, pool=None if sequences else "mean-std", lazy=False, resolved=resolved)
    gathered = gather_inputs(dataset, refs, context)
    groups: dict[str, list[str]] = {}
    for ref in refs:
        modality = resolved[ref.name].backbone.modality if ref.name in resolved else ref.source
        groups.setdefault(GROUP_OF.get(modality, modality), []).append(ref.name)
    views = Views.from_groups(groups, unimodal=True)
    classes = sorted({str(r.values["label"]) for r in dataset.records})
    labels = torch.as_tensor([classes.index(str(r.values["label"])) for r in dataset.records])
    targets = {"label": labels, **{teacher_key(view, "label"): torch.randn(len(dataset), len(classes)) for view in views.names}}
    source = memory_source(gathered, targets, None, "cpu", Standardizer.fit(gathered, "none"))
    net = MODELS.get(student)(input_specs(gathered), {"label": len(classes)}, **params)
    supervised = SupervisedObjective({"label": TaskLoss("multiclass")})
    kinds = {"label": "multiclass"}
    kd = DistillObjective(supervised, kinds, Views.from_groups(groups, unimodal=False), FixedWeights({FULL: 1.0}))
    population = DistillObjective(supervised, kinds, views, FixedWeights({v: 1.0 for v in views.names}))
    widths = {"label": probability_width("multiclass", len(classes))}

    def meta(lookahead: str):
        weights = MetaWeightNet(views.names, widths)
        optimizer = torch.optim.Adam(weights.parameters(), 1e-3, fused=True)
        return MetaDistillObjective(population, weights, optimizer, cycle(source, batch_size, 1), 1e-3, lookahead)

    objectives = {"KD (msd none)": kd, "MSD population": population, "MSD meta, look-ahead all": meta("all"), "MSD meta, look-ahead heads": meta("heads")}
    optimizer = adamw(net.parameters(), lr=1e-4, weight_decay=0.0)
    batches = list(source.batches(batch_size, generator=torch.Generator().manual_seed(0)))[:steps]
    best = {name: float("inf") for name in objectives}
    torch.set_num_threads(1)
    for _ in range(repeats):
        for name, objective in objectives.items():
            tick = time.perf_counter()
            for batch in batches:
                optimizer.zero_grad(set_to_none=True)
                objective(net, batch)["total"].backward()
                optimizer.step()
            best[name] = min(best[name], (time.perf_counter() - tick) / len(batches))
    base = best["KD (msd none)"]
    return {name: {"ms_per_step": 1000 * seconds, "ratio_to_kd": seconds / base} for name, seconds in best.items()}


MEMES = HERE.parent / "examples" / "memes" / "train.jsonl"


def main() -> None:
    sys.path.insert(0, str(HERE))
    import bench_av_digits as av

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=Path, default=av.RECORDINGS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--snr-db", type=float, default=-10.0)
    parser.add_argument("--erase", type=int, default=6)
    parser.add_argument("--teacher", default="gmu")
    parser.add_argument("--teacher-hidden", type=int, default=256)
    parser.add_argument("--student", default="gmu")
    parser.add_argument("--student-hidden", type=int, default=8)
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--methods", type=lambda text: [m.strip() for m in text.split(",")], default=None,
                        help=f"comma-separated subset of: {', '.join(METHODS)}")
    parser.add_argument("--speed", action="store_true", help="also time KD, MSD and meta steps side by side")
    parser.add_argument("--speed-batch", type=int, default=32)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--work", type=Path, help="keep runs here (default: a temporary folder)")
    args = parser.parse_args()
    if not args.recordings.is_dir():
        raise SystemExit(f"no FSDD recordings at {args.recordings}: this benchmark needs ../shared/data")

    import torch

    from mmtk.data import read_dataset
    from mmtk.extract import extract_features
    from mmtk.store import FeatureStore

    torch.set_num_threads(1)
    store = FeatureStore(Path(os.environ.get("MMTK_STORE", HERE / "out" / "store")))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_distill_") as tmp:
        work = args.work or Path(tmp)
        csvs = build_mixed(work / "mixed", args.snr_db, args.erase, args.recordings)
        train_set, test_set = read_dataset(csvs["train"]), read_dataset(csvs["test"])
        for dataset in (train_set, test_set):
            for backbone in ("mfcc", "pixels"):
                extract_features(dataset, backbone, store=store, device="cpu")
        result = {"snr_db": args.snr_db, "erase": args.erase, "teacher": f"{args.teacher} hidden {args.teacher_hidden}",
                  "student": f"{args.student} hidden {args.student_hidden}", "seeds": args.seeds}
        if not args.skip_quality:
            result.update(quality(args, train_set, test_set, store, work))
            print(f"\nteacher test accuracy {result['teacher_accuracy']:.3f}; student {result['student']}; {args.seeds} seeds (mean +- std)")
            print(f"{'method':18s} {'accuracy':>16s} {'consistency':>16s} {'agreement':>16s}")
            for name, values in result["methods"].items():
                cells = [f"{statistics.mean(v):.3f} +- {statistics.pstdev(v):.3f}" for v in values.values()]
                print(f"{name:18s} {cells[0]:>16s} {cells[1]:>16s} {cells[2]:>16s}")
        if args.speed:
            memes = read_dataset(MEMES)
            extract_features(memes, "efficientnet-lite0", store=store, device="cpu", sequence=True)
            setups = {
                f"{args.student} hidden {args.student_hidden}, AV digits (mfcc, pixels)":
                    (train_set, ["mfcc", "pixels"], args.student, {"hidden": args.student_hidden}),
                "tinybert 4 x 312 (weights=minilm), memes (word pieces, efficientnet-lite0:seq)":
                    (memes, ["efficientnet-lite0:seq"], "tinybert", {"weights": "minilm"}),
            }
            result["speed"] = {}
            for setup, (data, features, student, student_args) in setups.items():
                figures = speed(data, features, student, student_args, store, batch_size=args.speed_batch)
                result["speed"][setup] = figures
                print(f"\n{setup}: student step cost, batches of {args.speed_batch} (best of 5 interleaved rounds of 12 steps, one thread)")
                for name, cost in figures.items():
                    print(f"{name:28s} {cost['ms_per_step']:8.1f} ms  {cost['ratio_to_kd']:.2f}x KD")
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))


if __name__ == "__main__":
    main()
