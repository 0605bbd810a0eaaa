"""``train``: fit a fusion model on cached features and write a run directory.

The whole training set lives in memory as tensors (10,000 items x 1,664 floats is 67 MB)
and batches are index slices of them, so an epoch costs the model's arithmetic and
nothing else: no DataLoader, no per-item Python.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmtk.errors import DataError, UsageError


@dataclass
class TrainReport:
    """What a training run did. ``val_metrics`` has evaluate's JSON shape."""

    run: Path
    best_epoch: int
    epochs_run: int
    train_items: int
    val_items: int
    seconds: float
    val_metrics: dict
    samples_per_second: float
    log: list[dict] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {
            "run": str(self.run),
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "train_items": self.train_items,
            "val_items": self.val_items,
            "seconds": self.seconds,
            "samples_per_second": self.samples_per_second,
            "val_metrics": self.val_metrics,
        }


def train(
    dataset,
    *,
    features: Sequence[str],
    model: str,
    tasks: Sequence[str],
    out: str | Path,
    store,
    val_dataset=None,
    val_split: float = 0.2,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    patience: int = 10,
    class_weights: bool = False,
    seed: int = 0,
    hidden: int = 256,
    dropout: float = 0.2,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    tabular=None,
) -> TrainReport:
    """Train ``model`` on the stored ``features`` of ``dataset`` for ``tasks`` and write
    the run directory ``out``.

    A ``tabular`` entry in ``features`` is built from the columns that ``tabular`` (a
    ``mmtk.tabular.TabularSpec``) names, by preprocessors fitted on the training part
    only and saved in the run.

    Label encoders are fitted on the training part only. Without ``val_dataset`` a
    seeded split stratified on the first classification task holds out ``val_split`` of
    the items. AdamW; early stopping on validation loss after ``patience`` epochs without
    improvement, keeping the best epoch's weights. ``class_weights`` weights the loss by
    inverse label frequency. Seeds python, numpy and torch; on CPU two runs with the same
    inputs give identical weights.
    """
    import torch

    from mmtk.data import fit_label_encoder, parse_task
    from mmtk.device import resolve_device
    from mmtk.features import gather_features, parse_feature_refs, resolve_features
    from mmtk.models import MODELS
    from mmtk.models.inference import as_tensors, cpu_threads
    from mmtk.models.objectives import Objective, balancing_weights, head_units, target_tensor
    from mmtk.runs import check_run_target, save_run

    started = time.perf_counter()
    builder = MODELS.get(model)
    refs = parse_feature_refs(features)
    specs = _parse_tasks(tasks, parse_task)
    check_run_target(out)
    _check_settings(epochs=epochs, batch_size=batch_size, patience=patience, val_split=val_split, has_val=val_dataset is not None)
    torch_device = resolve_device(device)
    seed_everything(seed)

    tabular = _check_tabular(refs, tabular, specs)
    if val_dataset is None:
        train_idx, val_idx = split_indices(_strata(dataset, specs), val_split, seed, dataset.source)
        train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)
        resolved = resolve_features(dataset, refs)
        every = gather_features(dataset, resolved, store)
        train_x = {name: array[train_idx] for name, array in every.items()}
        val_x = {name: array[val_idx] for name, array in every.items()}
    else:
        train_ds, val_ds = dataset, val_dataset
        resolved = resolve_features(train_ds, refs)
        train_x = gather_features(train_ds, resolved, store)
        val_x = gather_features(val_ds, _same_backbones(resolve_features(val_ds, refs), resolved), store)

    preprocessor = None
    if tabular is not None:
        from mmtk.features import TABULAR
        from mmtk.tabular import fit_tabular

        preprocessor = fit_tabular(tabular, train_ds)
        train_x[TABULAR], val_x[TABULAR] = preprocessor.transform(train_ds), preprocessor.transform(val_ds)
    # Model inputs in the order the features were named (tabular included).
    train_x = {ref.name: train_x[ref.name] for ref in refs}
    val_x = {ref.name: val_x[ref.name] for ref in refs}

    encoders = {spec.name: fit_label_encoder(spec, train_ds) for spec in specs}
    train_y = {name: enc.encode(train_ds) for name, enc in encoders.items()}
    val_y = {name: enc.encode(val_ds) for name, enc in encoders.items()}
    kinds = {name: enc.task.kind for name, enc in encoders.items()}
    stats = {name: _target_stats(train_y[name]) for name, kind in kinds.items() if kind == "regression"}
    for name, st in stats.items():
        train_y[name] = ((train_y[name] - st["mean"]) / st["std"]).astype(np.float32)
        val_y[name] = ((val_y[name] - st["mean"]) / st["std"]).astype(np.float32)

    input_dims = {name: int(array.shape[1]) for name, array in train_x.items()}
    heads = {name: head_units(kinds[name], len(enc.classes)) for name, enc in encoders.items()}
    hyper = {"hidden": hidden, "dropout": dropout}
    net = builder(input_dims, heads, **hyper).to(torch_device)
    objectives = {}
    for name, kind in kinds.items():
        weight = balancing_weights(kind, train_y[name], len(encoders[name].classes)) if class_weights else None
        objectives[name] = Objective(kind, None if weight is None else torch.as_tensor(weight, device=torch_device))

    with cpu_threads(torch_device):
        fit = _fit(
            net, objectives, kinds, stats, encoders,
            train=(as_tensors(train_x, torch_device), {n: target_tensor(kinds[n], y).to(torch_device) for n, y in train_y.items()}),
            val=(as_tensors(val_x, torch_device), {n: target_tensor(kinds[n], y).to(torch_device) for n, y in val_y.items()}),
            val_labels=val_y, epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            patience=patience, seed=seed, progress=progress,
        )
    net.load_state_dict(fit["best_state"])

    training = {
        "seed": seed, "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
        "patience": patience, "class_weights": class_weights, "device": torch_device,
        "dataset": str(dataset.source), "dataset_items": len(dataset),
        "val_dataset": str(val_dataset.source) if val_dataset is not None else None,
        "val_split": None if val_dataset is not None else val_split,
        "train_items": len(train_ds), "val_items": len(val_ds),
        "best_epoch": fit["best_epoch"], "epochs_run": fit["epochs_run"],
    }
    model_config = {"name": model, "hyperparameters": hyper, "input_dims": input_dims, "heads": heads}
    config = _run_config(model_config, refs, resolved, encoders, stats, training, preprocessor)
    run = save_run(out, config=config, model=net, metrics=fit["best_metrics"], log=fit["log"])
    return TrainReport(
        run=run, best_epoch=fit["best_epoch"], epochs_run=fit["epochs_run"], train_items=len(train_ds),
        val_items=len(val_ds), seconds=time.perf_counter() - started, val_metrics=fit["best_metrics"],
        samples_per_second=fit["samples_per_second"], log=fit["log"],
    )


def _run_config(model: dict, refs, resolved, encoders: dict, stats: dict, training: dict, preprocessor=None) -> dict:
    """The run's config.json: everything predict needs, and how the run was made. The
    fitted tabular preprocessor (plain JSON) sits under ``"tabular"``."""
    from mmtk import __version__

    stored = {feature.name: feature for feature in resolved}
    features = []
    for ref in refs:
        if ref.is_tabular:
            features.append({**ref.to_json(), "modality": "tabular", "dim": model["input_dims"][ref.name]})
            continue
        feature = stored[ref.name]
        features.append({
            **feature.ref.to_json(),
            "backbone_spec": feature.backbone.spec,
            "modality": feature.backbone.modality,
            "fingerprint": feature.backbone.fingerprint,
            "dataset_column": feature.column,
            "dim": model["input_dims"][feature.name],
        })
    return {
        "mmtk_version": __version__,
        "model": model,
        "features": features,
        **({"tabular": preprocessor.to_json()} if preprocessor is not None else {}),
        "tasks": [
            {
                "name": name, "kind": enc.task.kind, "columns": list(enc.task.columns),
                "encoder": enc.to_json(), "target_stats": stats.get(name),
            }
            for name, enc in encoders.items()
        ],
        "training": training,
    }


def _fit(net, objectives, kinds, stats, encoders, *, train, val, val_labels, epochs, lr, weight_decay, batch_size, patience, seed, progress) -> dict:
    """The epoch loop: AdamW over shuffled index slices, validation after each epoch,
    early stopping on validation loss with the best weights kept."""
    import torch

    from mmtk.models.inference import forward_all

    train_x, train_y = train
    val_x, val_y = val
    n = len(next(iter(train_y.values())))
    optimizer = _adamw(net, lr=lr, weight_decay=weight_decay)
    shuffler = torch.Generator().manual_seed(seed)
    best_loss, best_epoch, best_state, best_metrics = float("inf"), 0, None, {}
    log, stale, train_seconds = [], 0, 0.0
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        net.train()
        order = torch.randperm(n, generator=shuffler).to(next(iter(train_x.values())).device)
        total = torch.zeros((), device=order.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            logits = net({name: x[idx] for name, x in train_x.items()})
            loss = sum(objectives[t].loss(logits[t], y[idx]) for t, y in train_y.items())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        train_seconds += time.perf_counter() - tick
        val_logits, _ = forward_all(net, val_x)
        with torch.no_grad():
            val_loss = float(sum(objectives[t].loss(val_logits[t], y) for t, y in val_y.items()))
        metrics = _metrics(val_logits, val_labels, kinds, stats, encoders)
        log.append({
            "epoch": epoch, "train_loss": float(total) / n, "val_loss": val_loss,
            "val_metrics": metrics, "seconds": time.perf_counter() - tick,
        })
        if val_loss < best_loss:
            best_loss, best_epoch, best_metrics, stale = val_loss, epoch, metrics, 0
            best_state = {name: tensor.detach().clone() for name, tensor in net.state_dict().items()}
        else:
            stale += 1
        if progress is not None:
            progress(epoch, epochs)
        if stale >= patience:
            break
    return {
        "best_state": best_state, "best_epoch": best_epoch, "best_metrics": best_metrics, "log": log,
        "epochs_run": len(log), "samples_per_second": n * len(log) / max(train_seconds, 1e-9),
    }


def _adamw(net, *, lr: float, weight_decay: float):
    """AdamW, fused where torch has a fused kernel for the device: the per-parameter
    update then costs one pass instead of a dozen temporaries (measured on CPU: GMU
    training 2x faster; the step was half the epoch)."""
    import torch

    try:
        return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # torch < 2.4 on CPU has no fused AdamW
        return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)


def _metrics(logits: dict, labels: dict, kinds: dict, stats: dict, encoders: dict) -> dict:
    """Validation metrics in evaluate's JSON shape (targets de-standardised for regression)."""
    from mmtk.metrics import compute_metrics
    from mmtk.models.objectives import to_outputs

    per_task = {}
    for name, kind in kinds.items():
        y = labels[name]
        if kind == "regression":
            y = y * stats[name]["std"] + stats[name]["mean"]
        outputs = to_outputs(kind, logits[name], stats.get(name))
        classes = [str(c) for c in encoders[name].classes]
        per_task[name] = {"task": name, "n": len(y), "metrics": compute_metrics(kind, y, outputs, classes)}
    return task_result(per_task)


def task_result(per_task: dict[str, dict]) -> dict:
    """Evaluate's JSON shape: the single task's entry, or ``{"n", "tasks"}`` for several."""
    if len(per_task) == 1:
        return next(iter(per_task.values()))
    return {"n": next(iter(per_task.values()))["n"], "tasks": per_task}


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (weights init and dropout draw from torch's global RNG)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_indices(strata: Sequence[Any] | None, val_fraction: float, seed: int, source: Any = "dataset") -> tuple[list[int], list[int]]:
    """Seeded train/validation split of ``len(strata)`` items, stratified on ``strata``
    (one key per item; None for a plain random split given as ``[None] * n``).

    Each stratum gives ``round(size * val_fraction)`` items to validation but keeps at
    least one for training, so a rare class is never only in validation (its label would
    be unknown to the encoder fitted on the training part). Indices come back sorted.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(strata):
        groups[repr(key)].append(i)
    train_idx, val_idx = [], []
    for key in sorted(groups):
        members = np.array(groups[key])
        rng.shuffle(members)
        take = min(int(round(len(members) * val_fraction)), len(members) - 1)
        val_idx += members[:take].tolist()
        train_idx += members[take:].tolist()
    if not val_idx:
        raise DataError(
            f"{source}: a {val_fraction:g} validation split of {len(strata)} items is empty",
            "give a larger --val-split or a validation set with --val DATA",
        )
    return sorted(train_idx), sorted(val_idx)


def _strata(dataset, specs) -> list:
    """Stratification keys: the raw label of the first single-column classification-like
    task (regression and multilabel tasks split at random)."""
    for spec in specs:
        if spec.kind in (None, "binary", "multiclass") and len(spec.columns) == 1:
            values = [record.values.get(spec.columns[0]) for record in dataset.records]
            keys = [str(v).strip() for v in values]
            # Lists are multilabel; near-unique values are an (inferred) regression target.
            if not any(isinstance(v, (list, dict)) for v in values) and 2 * len(set(keys)) <= len(keys):
                return keys
    return [None] * len(dataset)


def _parse_tasks(tasks, parse_task) -> list:
    specs = [parse_task(t) if isinstance(t, str) else t for t in tasks]
    if not specs:
        raise UsageError("no task given", "name the label column, e.g. --task label")
    names = [spec.name for spec in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"task {repeated[0]!r} is given twice", "give each task once (name several-column tasks with NAME=...)")
    return specs


def _check_tabular(refs, tabular, specs):
    """The tabular spec when ``tabular`` is among the features (checked, and holding no
    label column), None otherwise; a spec without the feature, or the feature without a
    spec, is a usage error."""
    wanted = any(ref.is_tabular for ref in refs)
    if tabular is None and not wanted:
        return None
    if tabular is None:
        raise UsageError(
            "feature tabular needs its columns",
            "name them with --cat-cols A,B and/or --num-cols C,D, or --columns column_info.json",
        )
    if not wanted:
        raise UsageError(
            "tabular columns are given but --features does not list tabular",
            "add it, e.g. --features minilm,tabular",
        )
    tabular.check()
    tabular.check_not_labels([column for spec in specs for column in spec.columns])
    return tabular


def _check_settings(*, epochs: int, batch_size: int, patience: int, val_split: float, has_val: bool) -> None:
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise UsageError("--epochs, --batch-size and --patience must be at least 1", "pass positive values")
    if not has_val and not 0 < val_split < 1:
        raise UsageError(
            f"--val-split {val_split:g} leaves no validation data for early stopping",
            "give --val DATA, or --val-split between 0 and 1 (e.g. 0.2)",
        )


def _same_backbones(val_resolved, train_resolved):
    """The validation set must resolve every feature to the training fingerprints (a
    column playing another role there would pick another clip tower)."""
    for v, t in zip(val_resolved, train_resolved):
        if v.backbone.fingerprint != t.backbone.fingerprint:
            raise UsageError(
                f"feature {t.name} resolves to {t.backbone.modality} on the training data but {v.backbone.modality} on --val",
                "give both datasets the same column roles (--image-column / --text-column)",
            )
    return val_resolved


def _target_stats(targets: np.ndarray) -> dict:
    """Mean and standard deviation of regression targets (std 1 for a constant target,
    so standardising never divides by zero)."""
    std = float(np.std(targets))
    return {"mean": float(np.mean(targets)), "std": std if std > 0 else 1.0}
