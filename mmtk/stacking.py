"""``train_stack``: a stacking ensemble of member runs with a meta-estimator per task
(``mmtk train --model stack``; the model is ``mmtk.models.stack``).

Members are either trained here, one per feature (``--features minilm,tabular``: the
member model ``--member-model``, default ``logreg``, through ``mmtk.train.train`` like
any run), or given as runs (``--members RUN,RUN``, i.e. ``run:PATH`` features). Every
member predicts the stack's tasks with the same label values.

The recipe:
1. Split the data as ``train`` splits it (seeded, stratified on the first
   classification task; or the given validation set). Members are fitted on the
   training part only and stop early on the validation part, so the stack's
   validation metrics are measured on items no member or meta-estimator learned from.
2. Out-of-fold scores: the training part is cut into ``folds`` stratified folds; for
   each fold every member is trained on the other folds and scores the held-out one.
   A given run is retrained per fold from the settings its config.json records (model,
   parameters, features, tasks, tabular columns, training and preprocessing settings),
   so that ``--members`` and ``--features`` give the same stack: its own scores on its
   own training items are in-sample, confident where it memorised. Measured on Clothing
   and PetFinder (BENCHMARKS.md, "Stacking ensembles"), that leak did not hurt members
   that stop early on a validation set (a meta-estimator fitted on in-sample scores
   scored within a seed's spread on Clothing and higher on PetFinder); the out-of-fold
   recipe is kept as the one whose validation and cross-validation figures are honest
   whatever the members. Runs whose training cannot be repeated from their config
   (trained on several datasets, distillation students, stacks) are refused as members.
3. The meta-estimator of each task (each label of a multi-label task) is fitted on the
   out-of-fold scores; ``auto`` tries each (``mmtk.models.stack.AUTO_ORDER``) by
   ``folds``-fold cross-validated macro-F1 on those scores and keeps the best (ties: the
   simpler, earlier one).
4. The members for prediction are trained on the whole training part (a given run is
   copied as it is) into ``RUN/members/NAME``; the stack's inputs are the relative
   ``run:members/NAME`` features, so the run directory is self-contained and can move.

``mmtk evaluate`` and ``mmtk predict`` then need nothing special: the ``run`` feature
source runs each member over the data (extracting its missing features), and the model
applies the meta-estimators.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmtk.errors import UsageError

#: Folder of the member runs inside a stack run.
MEMBERS = "members"


@dataclass
class Member:
    """One member: its folder name, and how to train it (``mmtk.train.train``'s keyword
    arguments); ``run`` is the given run directory (None: trained on one feature here)."""

    name: str
    call: dict
    run: Path | None = None

    def describe(self) -> dict:
        if self.run is not None:
            return {"name": self.name, "run": str(self.run), "model": self.call["model"]}
        return {"name": self.name, "feature": self.call["features"][0].name, "model": self.call["model"]}


def train_stack(
    dataset,
    *,
    features: Sequence,
    tasks: Sequence,
    out: str | Path,
    store,
    meta: str = "auto",
    folds: int = 5,
    member_model: str = "logreg",
    member_args: dict | None = None,
    val_dataset=None,
    val_split: float = 0.2,
    seed: int = 0,
    class_weights: bool = False,
    device: str = "auto",
    tabular=None,
    progress: Callable[[int, int], None] | None = None,
    member_options: dict | None = None,
):
    """Train a stacking ensemble on ``dataset`` and write its run directory ``out``;
    returns a ``mmtk.train.TrainReport`` (one "epoch": the meta-estimators' fit).

    ``features``: feature references; each ``run:PATH`` is a given member, each other
    feature gets a member of model ``member_model`` (``member_args``: its
    ``--model-arg``s; ``tabular``: the ``TabularSpec`` of a ``tabular`` feature;
    ``class_weights``: inverse class frequency weights; ``member_options``: other
    ``mmtk.train.train`` settings, e.g. epochs, lr, pool). ``meta``: a name of
    ``mmtk.models.stack.META`` or ``auto``; ``folds``: out-of-fold folds (at least 2, at
    most the training items of the rarest class). Regression tasks are refused: the
    meta-estimators classify.
    """
    from mmtk.data import fit_label_encoder, parse_task
    from mmtk.features import parse_feature_refs
    from mmtk.runs import check_run_target
    from mmtk.train import _parse_tasks, _strata, seed_everything, split_indices

    started = time.perf_counter()
    _check_settings(meta, folds, member_model, member_options or {})
    refs = parse_feature_refs(features)
    specs = _parse_tasks(tasks, parse_task)
    check_run_target(out)
    members = _members(refs, member_model, member_args or {}, specs, tabular, class_weights, seed, member_options or {})
    seed_everything(seed)
    if val_dataset is None:
        train_idx, val_idx = split_indices(_strata(dataset, specs), val_split, seed, dataset.source)
        train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)
    else:
        train_ds, val_ds = dataset, val_dataset
    encoders = {spec.name: fit_label_encoder(spec, train_ds) for spec in specs}
    regression = [name for name, enc in encoders.items() if enc.task.kind == "regression"]
    if regression:
        raise UsageError(f"a stack classifies, but task {regression[0]!r} is a regression", "stack classification tasks only")
    encoders = _check_member_tasks(members, encoders)
    train_y = {name: enc.encode(train_ds) for name, enc in encoders.items()}
    splits = _fold_splits(train_y, encoders, folds, seed, len(train_ds))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.stack-", dir=out.parent))
    try:
        report = _fit(
            members, encoders, train_ds, val_ds, train_y, splits, work, out, store, meta, folds, member_model, seed, device, class_weights, progress
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _fit(members, encoders, train_ds, val_ds, train_y, splits, work, out, store, meta, folds, member_model, seed, device, class_weights, progress):
    import torch

    from mmtk.features import RUN_PREFIX, FeatureRef
    from mmtk.models import MODELS
    from mmtk.models.inference import forward_all
    from mmtk.models.objectives import head_units
    from mmtk.runs import save_run
    from mmtk.train import TrainReport, _metrics

    kinds = {name: enc.task.kind for name, enc in encoders.items()}
    heads = {name: head_units(kinds[name], len(enc.classes)) for name, enc in encoders.items()}
    width = sum(heads.values())
    total, done = len(members) * (len(splits) + 1), 0
    oof = np.zeros((len(train_ds), len(members) * width), dtype=np.float32)
    fitting = time.perf_counter()
    for m, member in enumerate(members):
        for k, (fit_rows, held_rows) in enumerate(splits):
            fold_run = work / "folds" / f"{member.name}-{k}"
            _train_member(member, train_ds.subset(fit_rows), val_ds, fold_run, store, device)
            oof[held_rows, m * width:(m + 1) * width] = member_scores(fold_run, train_ds.subset(held_rows), store)
            shutil.rmtree(fold_run)
            done += 1
            if progress is not None:
                progress(done, total)
        target = work / MEMBERS / member.name
        if member.run is not None:
            shutil.copytree(member.run, target)
        else:
            _train_member(member, train_ds, val_ds, target, store, device)
        done += 1
        if progress is not None:
            progress(done, total)

    refs = [FeatureRef(backbone=f"{RUN_PREFIX}{MEMBERS}/{member.name}", base=str(work)) for member in members]
    params = {"meta": meta, "folds": folds, "member": member_model}
    inputs = {ref.name: width for ref in refs}
    model = MODELS.get("stack")(inputs, heads, **params)
    parts, choices = fit_meta(model, oof, train_y, kinds, meta, folds, seed)
    model.fit_parts(parts).eval()
    meta_seconds = time.perf_counter() - fitting

    val_scores = {ref.name: torch.as_tensor(member_scores(ref.run_dir, val_ds, store)) for ref in refs}
    logits, _ = forward_all(model, val_scores)
    val_y = {name: enc.encode(val_ds) for name, enc in encoders.items()}
    metrics = _metrics(logits, val_y, kinds, {}, encoders)
    entry = {"epoch": 1, "val_metrics": metrics, "lr": None, "seconds": meta_seconds, "meta": choices}
    config = _config(model, refs, members, encoders, params, choices, train_ds, val_ds, seed, device, class_weights)
    run = save_run(out, config=config, model=model, metrics=metrics, log=[entry], folders={MEMBERS: work / MEMBERS})
    return TrainReport(
        run=run, best_epoch=1, epochs_run=1, train_items=len(train_ds), val_items=len(val_ds), seconds=0.0,
        val_metrics=metrics, samples_per_second=len(train_ds) * len(members) * (len(splits) + 1) / max(meta_seconds, 1e-9), log=[entry],
    )


def fit_meta(model, scores: np.ndarray, targets: dict, kinds: dict, meta: str, folds: int, seed: int) -> tuple[dict, dict]:
    """The fitted parts of each task of ``model`` (a ``StackModel``) on the members'
    out-of-fold ``scores`` (N, width) and encoded ``targets``, and what was chosen:
    ``{task: {"meta": name, "cv_macro_f1": {name: score}}}`` (a multi-label task: a list,
    one per label). ``meta="auto"`` picks per task and label by cross-validated macro-F1."""
    from threadpoolctl import threadpool_limits

    from mmtk.device import cpu_threads_per_process

    parts, choices = {}, {}
    x = np.asarray(scores, dtype=np.float64)
    with threadpool_limits(limits=cpu_threads_per_process()):
        for task in model.tasks:
            columns, y = model.task_columns(task), np.asarray(targets[task])
            if kinds[task] == "multilabel":
                fitted = [_fit_part(columns[:, [label]], x, y[:, label].astype(np.int64), 2, meta, folds, seed) for label in range(y.shape[1])]
                parts[task] = [part for part, _ in fitted]
                choices[task] = [choice for _, choice in fitted]
            else:
                part, choices[task] = _fit_part(columns, x, y.astype(np.int64), max(columns.shape[1], 2), meta, folds, seed)
                parts[task] = [part]
    return parts, choices


def _fit_part(columns: np.ndarray, x: np.ndarray, y: np.ndarray, classes: int, meta: str, folds: int, seed: int):
    from mmtk.models.stack import AUTO, AUTO_ORDER, META

    flat = x[:, columns.reshape(-1)]
    if meta != AUTO:
        return META.get(meta)(columns, flat, y, classes, seed), {"meta": meta}
    scores = {name: cross_validated_f1(name, columns, flat, y, classes, folds, seed) for name in AUTO_ORDER}
    best = max(AUTO_ORDER, key=lambda name: (scores[name], -AUTO_ORDER.index(name)))
    return META.get(best)(columns, flat, y, classes, seed), {"meta": best, "cv_macro_f1": scores}


def cross_validated_f1(name: str, columns: np.ndarray, flat: np.ndarray, y: np.ndarray, classes: int, folds: int, seed: int) -> float:
    """Macro-F1 of meta-estimator ``name`` over ``folds`` stratified folds of the
    out-of-fold scores (fewer folds where the rarest class has fewer items)."""
    import torch
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    from mmtk.models.stack import META

    rarest = int(np.bincount(y, minlength=classes).min())
    if rarest < 2:
        return float("-inf")
    predicted = np.zeros(len(y), dtype=np.int64)
    local = np.arange(columns.size).reshape(columns.shape)  # the part reads ``flat`` itself
    for fit_rows, held_rows in StratifiedKFold(min(folds, rarest), shuffle=True, random_state=seed).split(flat, y):
        part = META.get(name)(local, flat[fit_rows], y[fit_rows], classes, seed)
        with torch.no_grad():
            predicted[held_rows] = part.probabilities(torch.as_tensor(flat[held_rows])).argmax(dim=1).numpy()
    return float(f1_score(y, predicted, average="macro", labels=list(range(classes)), zero_division=0))


def member_scores(run_dir: Path, dataset, store) -> np.ndarray:
    """A member run's outputs over ``dataset`` as the ``run`` feature source gives them."""
    from mmtk.features import FEATURE_SOURCES, RUN_PREFIX, FeatureRef, GatherContext

    ref = FeatureRef(backbone=RUN_PREFIX + str(Path(run_dir).absolute()))
    return FEATURE_SOURCES.get("run").gather(dataset, ref, GatherContext(store=store)).values


def _train_member(member: Member, train_part, val_ds, out: Path, store, device: str) -> None:
    from mmtk.train import train

    train(train_part, out=out, store=store, val_dataset=val_ds, device=device, **member.call)


def _check_settings(meta: str, folds: int, member_model: str, options: dict) -> None:
    from mmtk.models import MODELS
    from mmtk.models.stack import check_meta

    check_meta(meta)
    if folds < 2:
        raise UsageError(f"--folds {folds} must be at least 2", "e.g. --folds 5")
    MODELS.get(member_model)
    if MODELS.capabilities(member_model).get("fits") == "members":
        raise UsageError(f"--member-model {member_model}: a member trained per feature cannot be a stack", "choose a model such as logreg or gmu")
    if options.get("missing_modality") == "skip":
        raise UsageError(
            "--missing-modality skip drops items from each member's training, but a stack needs every member's score for every item",
            "use --missing-modality zero (or mask with a model that takes it)",
        )


def _members(refs, member_model, member_args, specs, tabular, class_weights, seed, options) -> list[Member]:
    """The members: a given run per ``run:`` feature, a member to train per other feature."""
    members, names = [], set()
    for ref in refs:
        if ref.source == "run":
            member = Member(_unique(ref.run_dir.name, names), _recorded_call(ref.run_dir), run=ref.run_dir)
        else:
            call = {
                "features": [ref], "model": member_model, "model_args": dict(member_args), "tasks": list(specs),
                "tabular": tabular if ref.is_tabular else None, "class_weights": class_weights, "seed": seed, **options,
            }
            member = Member(_unique(ref.name, names), call)
        members.append(member)
    if len(members) < 2:
        raise UsageError(f"a stack needs at least two members, {len(members)} given", "name two or more features (--features A,B) or runs (--members RUN,RUN)")
    return members


def _unique(text: str, taken: set) -> str:
    """A folder name for a member: the feature or run name with path-unsafe characters
    replaced, numbered when two members would share it."""
    base = re.sub(r"[^A-Za-z0-9._@=+-]+", "_", text).strip("._") or "member"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def _recorded_call(run_dir: Path) -> dict:
    """``mmtk.train.train``'s keyword arguments that train ``run_dir``'s model again, from
    its config.json; runs whose training cannot be repeated from it are refused."""
    from mmtk.data.tasks import TaskSpec
    from mmtk.features import FeatureRef
    from mmtk.runs import CONFIG, is_run_dir

    path = Path(run_dir)
    if not is_run_dir(path):
        raise UsageError(f"member {path} is not an mmtk run directory (no readable {CONFIG})", "name run directories written by mmtk train")
    config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    why = (
        "it was trained on several datasets" if config.get("datasets")
        else "it is a distillation student" if "distillation" in config
        else "it is a stack itself" if config["model"]["name"] == "stack" else None
    )
    if why:
        raise UsageError(
            f"member {path}: {why}, so it cannot be retrained per fold for the stack's out-of-fold scores",
            "stack runs trained by `mmtk train` on one dataset, or let the stack train its members (--features)",
        )
    training, preprocessing = config["training"], config.get("preprocessing", {})
    perturb = training.get("perturb") or {}
    tabular = None
    if "tabular" in config:
        from mmtk.tabular import TabularSpec

        tabular = TabularSpec.from_json(config["tabular"]["spec"])
    return {
        "features": [FeatureRef.from_json(entry) for entry in config["features"]],
        "model": config["model"]["name"], "model_args": dict(config["model"]["params"]),
        "tasks": [TaskSpec(t["name"], t["kind"], tuple(t["columns"])) for t in config["tasks"] if "derived" not in t],
        "tabular": tabular, "seed": training["seed"], "epochs": training["epochs"], "lr": training["lr"],
        "weight_decay": training["weight_decay"], "batch_size": training["batch_size"], "patience": training["patience"],
        "class_weights": training["class_weights"], "schedule": training.get("schedule", "cosine"), "warmup": training.get("warmup", 0.05),
        "clip_norm": training.get("clip_norm"), "accumulate": training.get("accumulate", 1), "amp": training.get("amp", True),
        "monitor": training.get("monitor", "val_loss"), "label_smoothing": training.get("label_smoothing", 0.0),
        "task_weights": training.get("task_weights") or None, "missing_modality": preprocessing.get("missing_modality", "fail"),
        "pool": preprocessing.get("pool") or "mean-std", "standardize": preprocessing.get("standardize_mode", "auto"),
        "perturb": perturb.get("method"), "perturb_eps": perturb.get("eps", 0.0),
    }


def _check_member_tasks(members: list[Member], encoders: dict) -> dict:
    """The stack's encoders in the members' task order, after checking that every given
    member predicts exactly these tasks with the same label values."""
    from mmtk.data import LabelEncoder
    from mmtk.runs import CONFIG

    wanted = [(name, enc.task.kind, [str(c) for c in enc.classes]) for name, enc in encoders.items()]
    order = None
    for member in members:
        if member.run is None:
            continue
        config = json.loads((member.run / CONFIG).read_text(encoding="utf-8"))
        given = []
        for entry in config["tasks"]:
            encoder = LabelEncoder.from_json(entry["encoder"])
            given.append((entry["name"], encoder.task.kind, [str(c) for c in encoder.classes]))
        if sorted(given) != sorted(wanted) or (order is not None and [g[0] for g in given] != order):
            raise UsageError(
                f"member {member.run} predicts {_describe(given)}, but the stack's members must all predict {_describe(wanted)}",
                "stack runs trained for the same tasks (--task) with the same label values, on the same data",
            )
        order = [g[0] for g in given]
    return {name: encoders[name] for name in (order or list(encoders))}


def _describe(tasks: list) -> str:
    return "; ".join(f"{name} ({kind}: {', '.join(classes)})" for name, kind, classes in tasks)


def _fold_splits(train_y: dict, encoders: dict, folds: int, seed: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (fit rows, held-out rows) pairs over the training part, stratified on the
    first single-label task; a fold count above its rarest class's items is refused."""
    from sklearn.model_selection import KFold, StratifiedKFold

    single = [name for name, enc in encoders.items() if enc.task.kind in ("binary", "multiclass")]
    if not single:
        if folds > n:
            raise UsageError(f"--folds {folds} is more than the {n} training items", f"give --folds {n} or fewer")
        return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n)))
    task, y = single[0], train_y[single[0]]
    counts = np.bincount(y, minlength=len(encoders[task].classes))
    rarest = int(np.argmin(counts))
    if folds > counts[rarest]:
        label = encoders[task].classes[rarest]
        raise UsageError(
            f"--folds {folds} is more than the {counts[rarest]} training items of class {label!r} of task {task!r}",
            f"give --folds {max(2, int(counts[rarest]))} or fewer, or more items of that class" if counts[rarest] >= 2
            else "give that class at least 2 training items",
        )
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), y))


def _config(model, refs, members, encoders, params, choices, train_ds, val_ds, seed, device, class_weights) -> dict:
    """The stack run's config.json: a run like any other (model, features as relative
    ``run:`` references, tasks), plus ``"stack"``: its members and the meta-estimators chosen."""
    from mmtk import __version__
    from mmtk.training.inputs import InputSpec

    policies = {member.call.get("missing_modality", "fail") for member in members}
    width = model.dims[0]
    return {
        "mmtk_version": __version__,
        "model": {
            "name": "stack", "params": params, "hyperparameters": params, "input_dims": {ref.name: width for ref in refs},
            "heads": dict(zip(model.tasks, model.units)), "inputs": [InputSpec(ref.name, width).to_json() for ref in refs],
        },
        "features": [{**ref.to_json(), "modality": "run", "dim": width} for ref in refs],
        "tasks": [
            {"name": name, "kind": enc.task.kind, "columns": list(enc.task.columns), "encoder": enc.to_json(), "target_stats": None}
            for name, enc in encoders.items()
        ],
        "training": {
            "seed": seed, "device": device, "dataset": str(train_ds.source), "val_dataset": str(val_ds.source),
            "train_items": len(train_ds), "val_items": len(val_ds), "best_epoch": 1, "epochs_run": 1,
            "class_weights": class_weights,
        },
        # Members read blank cells themselves only when none of them refuses them.
        "preprocessing": {
            "pool": None, "missing_modality": "fail" if "fail" in policies else "zero", "standardize": None, "standardize_mode": "none",
        },
        "stack": {
            "members": [member.describe() for member in members], "folds": params["folds"],
            "out_of_fold": "every member retrained on the other folds", "meta": choices,
        },
    }
