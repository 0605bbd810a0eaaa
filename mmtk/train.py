"""``train``: fit a model on cached features and write a run directory.

This is the recipe ``mmtk train`` runs: gather the inputs through the feature sources,
split, fit encoders and standardisation on the training part, build the model from the
registry, and hand batch sources, an objective, AdamW and a schedule to the one loop in
``mmtk.training`` (``fit``). Inputs that fit the memory budget live in memory as tensors
(10,000 items x 1,664 floats is 67 MB) and batches are index slices of them, so an
epoch costs the model's arithmetic and nothing else.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

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
    batch_source: str = "memory"
    skipped: list = field(default_factory=list, repr=False)  # items left out by --missing-modality skip
    monitor: str = "val_loss"  # what early stopping ranked epochs by (``auto`` resolved)

    def to_json(self) -> dict:
        return {
            "run": str(self.run),
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "train_items": self.train_items,
            "val_items": self.val_items,
            "seconds": self.seconds,
            "samples_per_second": self.samples_per_second,
            "batch_source": self.batch_source,
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
    epochs: int | None = None,
    lr: float | None = None,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    patience: int = 10,
    class_weights: bool = False,
    seed: int = 0,
    hidden: int | None = None,
    dropout: float | None = None,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    tabular=None,
    model_args: dict | None = None,
    task_weights: dict[str, float] | None = None,
    label_smoothing: float = 0.0,
    schedule: str = "cosine",
    warmup: float = 0.05,
    clip_norm: float | None = None,
    accumulate: int = 1,
    amp: bool = True,
    monitor: str = "auto",
    missing_modality: str = "fail",
    pool: str = "mean-std",
    standardize: bool | str = "auto",
    max_memory: int | str | None = None,
    resume: bool = False,
    checkpoint_every: float = 10.0,
    record: dict | None = None,
    perturb: str | None = None,
    perturb_eps: float = 0.0,
    teaching=None,
    mix: str = "proportional",
    callbacks: Sequence[Callable] = (),
    finetune=None,
) -> TrainReport:
    """Train ``model`` on the ``features`` of ``dataset`` for ``tasks`` and write the run
    directory ``out``.

    Features come from the feature sources of ``mmtk.features``: stored backbone
    features, ``tabular`` (built from the columns ``tabular``, a ``TabularSpec``, names,
    by preprocessors fitted on the training part) and ``run:PATH`` outputs. Sequences
    are pooled by ``pool`` unless the model takes sequences. ``standardize`` ("auto",
    "all", "none"; True/False for all/none) fits per-feature statistics on the training
    part (saved in the run); "auto" only for inputs whose dimensions differ widely in
    scale (``mmtk.training.normalize``). Label encoders are
    fitted on the training part only. Without ``val_dataset`` a seeded split stratified
    on the first classification task holds out ``val_split`` of the items. Items that
    lack a modality are refused, dropped, zero-filled or masked (``missing_modality``).

    The loop (``mmtk.training.fit``): AdamW at ``lr`` (None: the model's ``lr``
    capability, else ``DEFAULT_LR``), ``schedule`` with ``warmup`` (a fraction of
    the planned steps; ``epochs`` None plans the model's ``epochs`` capability, else ``auto_epochs``), ``clip_norm``, ``accumulate`` batches per step, AMP on CUDA,
    early stopping on ``monitor`` after ``patience`` epochs without improvement, keeping
    the best epoch's weights (``auto``: see ``auto_monitor``). Models registered with ``fits="arrays"`` (``svm``,
    ``logreg``) are fitted whole by their own ``fit_arrays`` instead (``class_weights``:
    balanced classes) and validated once. ``class_weights`` weights the loss by inverse label
    frequency, ``task_weights`` each task's loss in the total. Inputs larger than
    ``max_memory`` (bytes or "2G"; default: half the available memory) are read from the
    store per batch. A checkpoint is written beside ``out`` at most every
    ``checkpoint_every`` seconds; ``resume`` continues from it (``record``: what the CLI
    needs to start the same run again). ``perturb="fgsm"`` trains on clean and
    FGSM-perturbed inputs (step ``perturb_eps``; ``mmtk.training.perturb``), validation
    stays clean. ``teaching`` (``mmtk.distill.recipe.Teaching``) makes the run a
    distillation student: the teacher's outputs join the training targets and the
    objective becomes its distillation objective. Seeds python, numpy and torch; on CPU
    two runs with the same inputs give identical weights.

    ``dataset`` may be a mapping ``{name: Dataset}`` of several datasets
    (``mmtk.multidata``): each task makes one head per dataset that has its columns
    (``NAME/TASK``), each dataset is split by ``val_split``, and each training batch
    comes from one dataset, ordered by ``mix`` (``mmtk.training.mix``).

    ``callbacks`` are called after every epoch of the loop, after the checkpoint and
    progress callbacks, with its ``FitContext`` (``state.log[-1]`` is the epoch's entry:
    losses and validation metrics); an exception raised there ends training and
    propagates, writing no run (``mmtk.tune`` raises ``optuna.TrialPruned`` to prune a
    trial). Models fitted whole (``fits="arrays"``) have no epochs and never call them.

    ``finetune`` ("text", "image", "all" or a ``mmtk.finetune.FinetuneSettings``) runs
    the backbones of those modalities' features inside the model on the raw data instead
    of reading stored features (``mmtk.finetune``): their towers train at the settings'
    ``backbone_lr``, images are augmented and decoded by DataLoader workers, texts are
    tokenised once; the run holds the fine-tuned weights and predicts from raw media.
    """
    from mmtk.data import parse_task
    from mmtk.device import resolve_device
    from mmtk.features import GatherContext, parse_feature_refs
    from mmtk.finetune import recipe as tuning
    from mmtk.models import MODELS, check_model_params, model_capabilities, model_params
    from mmtk.models.inference import cpu_threads
    from mmtk.models.objectives import head_units, target_tensor
    from mmtk.runs import check_run_target, save_run
    from mmtk.tokens import check_token_model
    from mmtk.training import FitSettings, Standardizer, adamw, fit, make_schedule
    from mmtk.training.checkpoint import Checkpointer
    from mmtk.training.data import hide_presence, input_specs, pick_source
    from mmtk.training.perturb import check_perturbation, perturbed_objective
    from mmtk.training.sources import default_memory_budget, parse_memory
    from mmtk.training.world import World, joined, rank_batch

    started = time.perf_counter()
    builder = MODELS.get(model)
    if MODELS.capabilities(model).get("fits") == "members":  # a stacking ensemble: its own recipe
        if finetune not in (None, "none"):
            raise UsageError("--finetune does not apply to --model stack (its members are trained on stored features)",
                             "fine-tune a member with `mmtk train --finetune` and give it with --members RUN")
        return _stack(
            dataset, model=model, features=features, tasks=tasks, out=out, store=store, val_dataset=val_dataset, val_split=val_split,
            seed=seed, class_weights=class_weights, device=device, progress=progress, tabular=tabular, model_args=model_args,
            resume=resume, teaching=teaching, member_options=dict(
                epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, patience=patience, hidden=hidden, dropout=dropout,
                task_weights=task_weights, label_smoothing=label_smoothing, schedule=schedule, warmup=warmup, clip_norm=clip_norm,
                accumulate=accumulate, amp=amp, monitor=monitor, missing_modality=missing_modality, pool=pool, standardize=standardize,
                max_memory=max_memory, perturb=perturb, perturb_eps=perturb_eps,
            ),
        )
    tune, model_args = tuning.split_settings(finetune, model_args)
    given = {**({"hidden": hidden} if hidden is not None else {}), **({"dropout": dropout} if dropout is not None else {})}
    params = {**model_params(model), **check_model_params(model, {**given, **(model_args or {})})}
    capabilities = model_capabilities(model, params)
    lr = capabilities.get("lr", DEFAULT_LR) if lr is None else lr
    refs = parse_feature_refs(features)
    check_token_model(model, capabilities, refs)
    specs = _parse_tasks(tasks, parse_task)
    several = _several(dataset, val_dataset, mix)
    if several is None and isinstance(dataset, Mapping):
        (dataset,) = dataset.values()
    if several is not None:
        from mmtk.multidata import bind_tasks, task_weights_for

        if capabilities.get("fits") == "arrays" or teaching is not None:
            raise UsageError(
                f"{'a distillation student' if teaching is not None else f'model {model!r} (fitted whole)'} trains on one dataset, not several",
                "give one dataset, or choose a model trained by gradient steps (e.g. gmu)",
            )
        bindings = bind_tasks(several, specs)
        task_weights = task_weights_for(bindings, task_weights)
        specs = [b.spec for b in bindings]
    if not resume:
        check_run_target(out)
    _check_settings(epochs=epochs or 1, batch_size=batch_size, patience=patience, val_split=val_split, has_val=val_dataset is not None)
    _check_options(model, capabilities, missing_modality, pool, task_weights, specs, accumulate, label_smoothing, schedule, warmup)
    perturbation = check_perturbation(perturb, perturb_eps)
    if perturbation and capabilities.get("fits") == "arrays":
        raise UsageError(f"model {model!r} is fitted whole, not by gradient steps: --perturb does not apply to it",
                         "drop --perturb, or choose a model trained by gradient steps (e.g. gmu)")
    tuning.check_supported(tune, model=model, capabilities=capabilities, several=several, teaching=teaching, perturbation=perturbation)
    if standardize not in (True, False, "auto", "all", "none"):
        raise UsageError(f"unknown --standardize {standardize!r}", "choose one of: auto, all, none")
    budget = default_memory_budget() if max_memory is None else _memory(max_memory, parse_memory)
    world = World.from_environment()  # several processes under torchrun: see mmtk.training.world
    torch_device = world.device(resolve_device(device))
    seed_everything(seed)  # the same on every rank: same split, statistics and initial weights
    towers, tower_configs, tower_columns = {}, {}, {}
    if tune is not None:
        refs, towers, tower_configs, tower_columns = tuning.prepare(tune, refs, dataset, torch_device)

    tabular = _check_tabular(refs, tabular, specs)
    if missing_modality == "skip" and several is None:  # several: each dataset in multidata.prepare
        from mmtk.features import drop_incomplete

        known = (len(dataset.skipped), len(val_dataset.skipped) if val_dataset is not None else 0)
        dataset = drop_incomplete(dataset, refs)
        val_dataset = drop_incomplete(val_dataset, refs) if val_dataset is not None else None
        dropped = dataset.skipped[known[0]:] + (val_dataset.skipped[known[1]:] if val_dataset is not None else [])
    else:
        dropped = []
    sequences = bool(capabilities.get("sequences"))
    context = GatherContext(
        store=store, pool=None if sequences else pool, lazy=sequences,
        missing="fail" if missing_modality in ("fail", "skip") else missing_modality, towers=towers,
    )
    masks: tuple[dict, dict] = ({}, {})
    val_rows = None
    if several is not None:
        from mmtk.multidata import prepare

        prepared = prepare(several, refs, bindings, context, val_split=val_split, seed=seed, tabular=tabular, missing_modality=missing_modality)
        train_x, val_x, resolved, preprocessor = prepared.train_x, prepared.val_x, prepared.resolved, prepared.preprocessor
        encoders, train_y, val_y, dropped = prepared.encoders, prepared.train_y, prepared.val_y, prepared.dropped
        masks, val_rows = (prepared.train_masks, prepared.val_masks), prepared.val_rows
        train_items, val_items = sum(map(len, prepared.train_groups)), sum(map(len, prepared.val_groups))
    else:
        train_x, val_x, resolved, preprocessor, encoders, train_y, val_y, train_ds, val_ds = _prepare_one(
            dataset, val_dataset, refs, specs, context, tabular, val_split, seed
        )
        train_items, val_items = len(train_ds), len(val_ds)
    standardizer = Standardizer.fit(
        tuning.not_raw(train_x), {True: "all", False: "none"}.get(standardize, standardize), scaled=tuple(r.name for r in refs if r.source == "tabular")
    )
    kinds = {name: enc.task.kind for name, enc in encoders.items()}
    monitor_option, monitor = monitor, _monitor(monitor, kinds, val_items)
    labelled = {name: y[masks[0][name]] if name in masks[0] else y for name, y in train_y.items()}
    stats = {name: _target_stats(labelled[name]) for name, kind in kinds.items() if kind == "regression"}
    for name, st in stats.items():
        train_y[name] = ((train_y[name] - st["mean"]) / st["std"]).astype(np.float32)
        val_y[name] = ((val_y[name] - st["mean"]) / st["std"]).astype(np.float32)

    inputs = tuning.model_inputs(train_x, towers) if towers else input_specs(train_x)
    heads = {name: head_units(kinds[name], len(enc.classes)) for name, enc in encoders.items()}
    net = builder(inputs, heads, **params).to(torch_device)
    if towers:
        from mmtk.finetune.model import FinetunedModel

        net = FinetunedModel(towers, net).to(torch_device)
    task_weights, derived = _planned_tasks(getattr(net, "fusion", net), encoders, task_weights)  # fusion: behind fine-tuned towers
    objective = _objective(kinds, encoders, labelled, class_weights, label_smoothing, task_weights, torch_device)
    if capabilities.get("auxiliary"):
        from mmtk.training import AuxiliaryObjective

        objective = AuxiliaryObjective(objective)
    objective = perturbed_objective(objective, perturb, perturb_eps)
    if towers:
        train_source, val_source = tuning.sources(
            tune, towers, train_x, val_x, {n: target_tensor(kinds[n], y) for n, y in train_y.items()},
            {n: target_tensor(kinds[n], y) for n, y in val_y.items()}, (_mask_tensors(masks[0]), _mask_tensors(masks[1])),
            torch_device, standardizer, train_ds, val_ds,
        )
    else:
        train_source = pick_source(
            train_x, {n: target_tensor(kinds[n], y) for n, y in train_y.items()}, _mask_tensors(masks[0]), torch_device, standardizer, budget
        )
        val_source = pick_source(
            val_x, {n: target_tensor(kinds[n], y) for n, y in val_y.items()}, _mask_tensors(masks[1]), torch_device, standardizer, budget
        )
    if missing_modality == "zero":
        hide_presence(train_source)
        hide_presence(val_source)
    if several is not None:
        from mmtk.training.mix import MixedSource

        train_source = MixedSource(train_source, prepared.train_groups, mix)
    whole = capabilities.get("fits") == "arrays"  # fitted by the model itself (svm, logreg): no optimizer steps
    trainable = list(net.parameters())
    if teaching is not None:  # a distillation student (mmtk.distill.recipe.Teaching)
        if whole or perturbation:
            raise UsageError(f"a distillation student cannot be {'--perturb trained' if perturbation else model}", "choose a student trained by gradient steps, without --perturb")
        objective, extra = _teach(teaching, objective, net, train_source, val_source, train_ds, kinds, refs, context, lr, batch_size, seed, torch_device)
        trainable += [p for module in extra for p in module.parameters()]
    if towers:  # the backbones train at their own, lower learning rate
        from mmtk.finetune.model import param_groups

        trainable = param_groups(net, lr, tune.backbone_lr)
    optimizer = None if whole else adamw(trainable, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-train_source.num_batches(rank_batch(batch_size, world), world) // accumulate)
    epochs = epochs or capabilities.get("epochs") or auto_epochs(steps_per_epoch)
    steps = epochs * steps_per_epoch
    lr_schedule = None if whole else make_schedule(optimizer, schedule, total_steps=steps, warmup_steps=round(warmup * steps))
    settings = FitSettings(
        epochs=epochs, batch_size=batch_size, patience=patience, seed=seed, monitor=monitor,
        accumulate=accumulate, clip_norm=clip_norm, amp=amp,
    )
    signature = {
        "model": model, "params": params, "features": [ref.name for ref in refs], "tasks": [s.name for s in specs],
        "seed": seed, "epochs": epochs, "batch_size": batch_size, "train_items": train_items,
        **({"datasets": list(several), "mix": mix} if several is not None else {}),
        **({"perturb": perturbation} if perturbation else {}),  # absent otherwise: older checkpoints still resume
        **({"finetune": tune.to_json()} if tune is not None else {}),
    }
    checkpointer = Checkpointer(out, {"call": record, "signature": signature}, every_s=checkpoint_every)
    callbacks = [checkpointer] + ([lambda ctx: progress(ctx.state.epoch, epochs)] if progress is not None else []) + list(callbacks)
    restore = _resume_from(out, signature) if resume else None

    def validate(network) -> dict:
        return _validate(network, objective, val_source, val_y, kinds, stats, encoders, val_rows)

    with cpu_threads(torch_device), joined(torch_device) as world:
        if whole:
            result = _fit_whole(net, objective, train_source, validate, train_y, kinds, balanced=class_weights, seed=seed)
        else:
            result = fit(
                net, objective, train_source, validate, optimizer, lr_schedule, settings=settings, world=world, callbacks=callbacks, restore=restore,
            )
    net.load_state_dict(result.best_state)

    if several is not None:
        sources = {"dataset": [entry["source"] for entry in prepared.datasets], "dataset_items": sum(e["items"] for e in prepared.datasets)}
    else:
        sources = {"dataset": str(dataset.source), "dataset_items": len(dataset)}
    training = {
        "seed": seed, "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
        "patience": patience, "class_weights": class_weights, "device": torch_device,
        **sources,
        "val_dataset": str(val_dataset.source) if val_dataset is not None else None,
        "val_split": None if val_dataset is not None else val_split,
        "train_items": train_items, "val_items": val_items,
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "schedule": schedule, "warmup": warmup, "clip_norm": clip_norm, "accumulate": accumulate, "amp": amp,
        "monitor": monitor, "monitor_option": monitor_option, "label_smoothing": label_smoothing, "task_weights": dict(task_weights or {}),
        "missing_modality": missing_modality, "batch_source": train_source.kind, "perturb": perturbation,
        **({"finetune": tune.to_json(), "data_wait_seconds": train_source.wait_seconds} if tune is not None else {}),
        **({"mix": mix} if several is not None else {}),
        **({"processes": world.size} if world.size > 1 else {}),
    }
    model_config = {
        "name": model, "params": params, "hyperparameters": params,
        "input_dims": {name: spec.dim for name, spec in inputs.items()}, "heads": heads,
        "inputs": [spec.to_json() for spec in inputs.values()],
    }
    preprocessing = {
        "pool": None if sequences else pool, "missing_modality": missing_modality,
        "standardize": standardizer.to_json() if standardizer is not None else None, "standardize_mode": standardize,
    }
    finetuned = {name: tuning.feature_entry(ref, tower_configs[name], tower_columns[name], inputs[name].dim)
                 for ref in refs if (name := ref.name) in towers}
    config = _run_config(model_config, refs, resolved, encoders, stats, training, preprocessor, preprocessing, finetuned)
    if towers:
        from mmtk.finetune.model import run_record

        config["finetune"] = run_record(net, tower_configs, tower_columns, tune)
    config["tasks"] += derived
    if teaching is not None:
        config["distillation"] = teaching.record()
    if several is not None:
        config["datasets"] = prepared.datasets
    if world.is_main:  # the other ranks hold the same weights and write nothing
        run = save_run(out, config=config, model=net, metrics=result.best_metrics, log=result.log)
        checkpointer.remove()
    else:
        run = Path(out)
    return TrainReport(
        run=run, best_epoch=result.best_epoch, epochs_run=result.epochs_run, train_items=train_items,
        val_items=val_items, seconds=time.perf_counter() - started, val_metrics=result.best_metrics,
        samples_per_second=result.samples_per_second, log=result.log, batch_source=train_source.kind, skipped=dropped,
        monitor=monitor,
    )


def _stack(dataset, *, model, model_args, resume, teaching, **options) -> TrainReport:
    """``train`` of a stacking ensemble (``--model stack``): ``mmtk.stacking.train_stack``
    with the stack's ``--model-arg``s (meta, folds, member) and the other settings for
    its members."""
    from mmtk.models import check_model_params, model_params
    from mmtk.stacking import train_stack
    from mmtk.training.world import require_single_process

    require_single_process("train --model stack", "its meta-estimator reads the member runs that rank 0 alone writes")
    if isinstance(dataset, Mapping) and len(dataset) > 1 or resume or teaching is not None:
        what = "several datasets" if isinstance(dataset, Mapping) and len(dataset) > 1 else "--resume" if resume else "distillation"
        raise UsageError(f"a stack ({model}) does not take {what}", "train it on one dataset, afresh, without a teacher")
    if isinstance(dataset, Mapping):
        (dataset,) = dataset.values()
    params = {**model_params(model), **check_model_params(model, model_args or {})}
    return train_stack(dataset, meta=params["meta"], folds=params["folds"], member_model=params["member"], **options)


def _prepare_one(dataset, val_dataset, refs, specs, context, tabular, val_split, seed):
    """One dataset: split it (or take ``val_dataset``), fit the tabular preprocessor on
    the training part, gather the inputs and encode the labels."""
    from mmtk.data import fit_label_encoder
    from mmtk.features import gather_inputs, resolve_features

    if val_dataset is None:
        train_idx, val_idx = split_indices(_strata(dataset, specs), val_split, seed, dataset.source)
        train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)
        resolved = resolve_features(dataset, refs)
    else:
        train_ds, val_ds = dataset, val_dataset
        resolved = resolve_features(train_ds, refs)
    preprocessor = None
    if tabular is not None:
        from mmtk.tabular import fit_tabular

        preprocessor = fit_tabular(tabular, train_ds)
    context.tabular, context.resolved = preprocessor, {feature.name: feature for feature in resolved}
    if val_dataset is None:
        every = gather_inputs(dataset, refs, context)
        train_x = {name: item.subset(train_idx) for name, item in every.items()}
        val_x = {name: item.subset(val_idx) for name, item in every.items()}
    else:
        train_x = gather_inputs(train_ds, refs, context)
        val_resolved = _same_backbones(resolve_features(val_ds, refs), resolved)
        context.resolved = {feature.name: feature for feature in val_resolved}
        val_x = gather_inputs(val_ds, refs, context)
    _check_some_modality(train_x, train_ds)
    encoders = {spec.name: fit_label_encoder(spec, train_ds) for spec in specs}
    train_y = {name: enc.encode(train_ds) for name, enc in encoders.items()}
    val_y = {name: enc.encode(val_ds) for name, enc in encoders.items()}
    return train_x, val_x, resolved, preprocessor, encoders, train_y, val_y, train_ds, val_ds


def _run_config(model: dict, refs, resolved, encoders: dict, stats: dict, training: dict, preprocessor, preprocessing: dict, finetuned: dict | None = None) -> dict:
    """The run's config.json: everything predict needs, and how the run was made. The
    fitted tabular preprocessor (plain JSON) sits under ``"tabular"``; pooling, the
    missing-modality policy and the standardisation statistics under ``"preprocessing"``."""
    from mmtk import __version__
    from mmtk.features import source_for

    stored = {feature.name: feature for feature in resolved}
    features = []
    for ref in refs:
        if ref.name in (finetuned or {}):  # a fine-tuned backbone (mmtk.finetune.recipe.feature_entry)
            features.append(finetuned[ref.name])
            continue
        if ref.source != "stored":  # tabular, run outputs, word pieces: their modality is their source
            record = getattr(source_for(ref), "describe", None)  # word pieces: the tokenizer's identity
            features.append({
                **ref.to_json(), "modality": ref.source, "dim": model["input_dims"][ref.name], **(record(ref) if record else {}),
            })
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
        "preprocessing": preprocessing,
    }


#: The learning rate of models that declare none (fusion heads trained from scratch).
DEFAULT_LR = 1e-3

#: The default epoch cap is relative to optimizer steps, not epochs: at least this many
#: steps (a small set has few steps per epoch: 800 items at 64 a batch make 13, so 100
#: epochs were 1,300 steps, too few to converge), within ``EPOCH_RANGE``.
MIN_STEPS = 3000
EPOCH_RANGE = (100, 1000)


#: ``--monitor auto`` keeps the loss on validation sets smaller than this: there one item
#: moves a decision metric by more than 2 points, so the best of many epochs is mostly
#: the luckiest (16 validation items of a two-sequence mult run peaked at epoch 1 and
#: stopped there, 0.79 training accuracy against 0.8+ when stopping on the loss), where the
#: loss, an average of continuous confidences, ranks epochs steadily.
MIN_METRIC_VAL_ITEMS = 50


def auto_monitor(kinds: Mapping[str, str], val_items: int | None = None) -> str:
    """What ``--monitor auto`` early-stops on: the validation macro-F1 when every task is
    single-label classification (binary, multi-class), else the validation loss.

    The loss ranks epochs by calibration, not by decisions: on a hard, imbalanced task
    (PetFinder's five adoption speeds) the validation cross-entropy is lowest after 2-7
    epochs, while the weights still predict mostly the two largest classes, and then
    rises as the model grows confident, while macro-F1 keeps improving for 10-20 more
    epochs (BENCHMARKS.md, "Early stopping on macro-F1"). Macro-F1 rather than accuracy
    because accuracy rewards the same collapse onto the large classes. Regression and
    multi-label tasks have no such single decision score, so they keep the loss. Ties
    of the metric are broken by the loss (``mmtk.training.loop``). With ``val_items`` known
    and under ``MIN_METRIC_VAL_ITEMS``, the loss."""
    if val_items is not None and val_items < MIN_METRIC_VAL_ITEMS:
        return "val_loss"
    if kinds and all(kind in ("binary", "multiclass") for kind in kinds.values()):
        return "macro_f1"
    return "val_loss"


def _monitor(monitor: str, kinds: Mapping[str, str], val_items: int | None = None) -> str:
    """``--monitor`` resolved and checked: ``auto`` (``auto_monitor``), ``val_loss``, or
    a validation metric some task of the run reports."""
    from mmtk.metrics import METRICS

    if monitor == "auto":
        return auto_monitor(kinds, val_items)
    reported = sorted({metric for kind in kinds.values() for metric in METRICS[kind]})
    if monitor != "val_loss" and monitor not in reported:
        raise UsageError(f"--monitor {monitor!r} is no validation metric of this run's tasks",
                         f"choose auto, val_loss or one of: {', '.join(reported)}")
    return monitor


def auto_epochs(steps_per_epoch: int) -> int:
    """The default ``--epochs``: enough for ``MIN_STEPS`` optimizer steps, within ``EPOCH_RANGE``."""
    return min(EPOCH_RANGE[1], max(EPOCH_RANGE[0], -(-MIN_STEPS // max(1, steps_per_epoch))))


def _teach(teaching, objective, net, train_source, val_source, train_ds, kinds, refs, context, lr, batch_size, seed, device):
    """Add the teacher's outputs for the training items to the train source's targets
    and let ``teaching`` build the distillation objective; returns it and the extra
    modules it trains (a FitNet projection)."""
    from mmtk.distill.teacher import GROUP_OF

    memory = getattr(train_source, "memory", train_source)
    target_device = next(iter(memory.targets.values())).device
    memory.targets.update({key: value.to(target_device) for key, value in teaching.targets(train_ds.ids).items()})
    modalities = {}
    for ref in refs:
        modality = context.resolved[ref.name].backbone.modality if ref.source == "stored" else ref.source
        modalities[ref.name] = GROUP_OF.get(modality, modality)
    return teaching.attach(
        objective, net=net, kinds=kinds, modalities=modalities, val_source=val_source, lr=lr, batch_size=batch_size, seed=seed, device=device
    )


def _fit_whole(net, objective, train_source, validate, encoded: dict, kinds: dict, *, balanced: bool, seed: int):
    """Fit a model registered with ``fits="arrays"`` (the classical baselines) by its own
    ``fit_arrays`` on the whole standardised training arrays, then validate once: the
    result of ``fit`` with one log entry (best epoch 1; ``lr`` None, there is none)."""
    import torch

    from mmtk.models.inference import forward_all
    from mmtk.training import TOTAL, FitResult

    started = time.perf_counter()
    net.fit_arrays(getattr(train_source, "memory", train_source).features, encoded, kinds, balanced=balanced, seed=seed)
    fitted_in = time.perf_counter() - started
    logits, _ = forward_all(net, train_source)
    with torch.no_grad():
        train_terms = {name: float(value) for name, value in objective.terms(logits, train_source.all_targets()).items()}
    checked = validate(net)
    entry = {
        "epoch": 1, "train_loss": train_terms[TOTAL], "val_loss": checked["terms"][TOTAL], "val_metrics": checked["metrics"],
        "train_terms": train_terms, "val_terms": checked["terms"], "lr": None, "seconds": time.perf_counter() - started,
    }
    return FitResult(
        best_state={name: t.detach().clone() for name, t in net.state_dict().items()}, best_epoch=1,
        best_metrics=checked["metrics"], log=[entry], epochs_run=1, samples_per_second=len(train_source) / max(fitted_in, 1e-9),
    )


def _planned_tasks(net, encoders: dict, task_weights: dict | None) -> tuple[dict, list]:
    """The task weights to train with and the derived tasks to record, for a model that
    plans its tasks (``task_plan``, e.g. multitask-heads): its default weights, each
    overridden by ``--task-weight``, and the ``config.json`` entries of the tasks its
    forward derives (``mmtk.models.derived``). Other models: the given weights, none derived."""
    plan = getattr(net, "task_plan", None)
    if plan is None:
        return dict(task_weights or {}), []
    planned = plan({name: (enc.task.kind, list(enc.classes)) for name, enc in encoders.items()})
    return {**planned["weights"], **(task_weights or {})}, planned["derived"]


def _objective(kinds, encoders, train_y, class_weights, label_smoothing, task_weights, device):
    import torch

    from mmtk.models.objectives import balancing_weights
    from mmtk.training import SupervisedObjective, TaskLoss

    losses = {}
    for name, kind in kinds.items():
        weight = balancing_weights(kind, train_y[name], len(encoders[name].classes)) if class_weights else None
        losses[name] = TaskLoss(
            kind, None if weight is None else torch.as_tensor(weight, device=device),
            label_smoothing=label_smoothing if kind != "regression" else 0.0,
        )
    return SupervisedObjective(losses, dict(task_weights or {}))


def _validate(net, objective, source, labels: dict, kinds: dict, stats: dict, encoders: dict, rows: dict | None = None) -> dict:
    """The validation loss terms over the whole set and the metrics (evaluate's shape;
    ``rows``: per task, the items labelled for it, when not all are)."""
    import torch

    from mmtk.models.inference import forward_all

    logits, _ = forward_all(net, source)
    with torch.no_grad():
        terms = {name: float(value) for name, value in objective.terms(logits, source.all_targets()).items()}
    return {"terms": terms, "metrics": _metrics(logits, labels, kinds, stats, encoders, rows)}


def _resume_from(out, signature: dict):
    """The checkpoint's restore function, after checking it was made by the same run."""
    from mmtk.training.checkpoint import read_record, restorer

    saved = read_record(out).get("signature")
    if saved != signature:
        changed = sorted(key for key in signature if (saved or {}).get(key) != signature[key])
        raise UsageError(
            f"--resume {out}: the checkpoint was made with other settings ({', '.join(changed)} differ)",
            "resume with the settings it was started with (mmtk train --resume OUT reads them), or train afresh",
        )
    return restorer(out)


def _check_some_modality(gathered: dict, dataset) -> None:
    """Refuse items that have none of the inputs: nothing to learn or predict from."""
    presence = [item.present for item in gathered.values()]
    if not presence or any(p is None for p in presence):
        return
    none = np.flatnonzero(~np.any(np.stack(presence), axis=0))
    if len(none):
        record = dataset.records[int(none[0])]
        raise DataError(
            f"{dataset.source}:{record.line} (item {record.id!r}) has none of the model's inputs ({len(none)} such items)",
            "drop those items, or train with --missing-modality skip",
        )


def _check_options(model, capabilities, missing_modality, pool, task_weights, specs, accumulate, label_smoothing, schedule, warmup) -> None:
    from mmtk.features import MISSING_MODALITY, POOLS
    from mmtk.models import MODELS
    from mmtk.training.schedule import SCHEDULES

    if missing_modality not in MISSING_MODALITY:
        raise UsageError(f"unknown --missing-modality {missing_modality!r}", f"choose one of: {', '.join(MISSING_MODALITY)}")
    if missing_modality == "mask" and not capabilities.get("missing"):
        able = [name for name in MODELS.names() if MODELS.capabilities(name).get("missing")]
        raise UsageError(f"model {model!r} cannot ignore an absent modality", f"use --missing-modality zero, or one of: {', '.join(able)}")
    if pool not in POOLS:
        raise UsageError(f"unknown --pool {pool!r}", f"choose one of: {', '.join(POOLS)}")
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown --schedule {schedule!r}", f"choose one of: {', '.join(SCHEDULES)}")
    if not 0 <= warmup < 1:
        raise UsageError(f"--warmup {warmup:g} is not a fraction of the steps", "give a value in [0, 1), e.g. 0.05")
    if accumulate < 1:
        raise UsageError("--accumulate must be at least 1", "pass the number of batches per optimizer step")
    if not 0 <= label_smoothing < 1:
        raise UsageError(f"--label-smoothing {label_smoothing:g} is out of range", "give a value in [0, 1), e.g. 0.1")
    names = [spec.name for spec in specs]
    unknown = sorted(set(task_weights or {}) - set(names))
    if unknown:
        raise UsageError(f"--task-weight names no task {unknown[0]!r}", f"the tasks are: {', '.join(names)}")
    negative = sorted(name for name, w in (task_weights or {}).items() if not w >= 0)
    if negative:
        raise UsageError(f"--task-weight {negative[0]}={task_weights[negative[0]]} is negative", "give weights >= 0")


def _memory(value, parse_memory) -> int:
    try:
        return parse_memory(value)
    except ValueError:
        raise UsageError(f"--max-memory {value!r} is not a memory size", "write e.g. 800M, 2G or a byte count") from None


def _metrics(logits: dict, labels: dict, kinds: dict, stats: dict, encoders: dict, rows: dict | None = None) -> dict:
    """Validation metrics in evaluate's JSON shape (targets de-standardised for regression).
    With ``rows`` (several datasets) each task is scored on its own dataset's items, and
    the top-level ``n`` counts every validation item."""
    from mmtk.metrics import METRICS, compute_metrics, task_result
    from mmtk.models.objectives import to_outputs

    per_task = {}
    for name, kind in kinds.items():
        y, scores = labels[name], logits[name]
        if rows is not None:
            import torch

            y, scores = y[rows[name]], scores[torch.as_tensor(rows[name], device=scores.device)]
        if kind == "regression":
            y = y * stats[name]["std"] + stats[name]["mean"]
        outputs = to_outputs(kind, scores, stats.get(name))
        classes = [str(c) for c in encoders[name].classes]
        if not np.all(np.isfinite(outputs)):
            # A diverged epoch (NaN logits): no metric is defined, and scikit-learn
            # would raise on it; NaN is never the best epoch, as for the loss.
            per_task[name] = {"task": name, "n": len(y), "metrics": {metric: float("nan") for metric in METRICS[kind]}}
            continue
        per_task[name] = {"task": name, "n": len(y), "metrics": compute_metrics(kind, y, outputs, classes)}
    if rows is not None and len(per_task) > 1:
        return {"n": len(next(iter(labels.values()))), "tasks": per_task}
    return task_result(per_task)


def _several(dataset, val_dataset, mix: str) -> dict | None:
    """The datasets of a several-dataset run (``{name: Dataset}``, two or more), or None
    for one dataset; ``--val`` and an unknown ``mix`` are refused with several."""
    from mmtk.training.mix import MIXES

    if mix not in MIXES:
        raise UsageError(f"unknown --mix {mix!r}", f"choose one of: {', '.join(MIXES)}")
    if not isinstance(dataset, Mapping) or len(dataset) < 2:
        if isinstance(dataset, Mapping) and not dataset:
            raise UsageError("no dataset given", "pass at least one dataset")
        return None
    if val_dataset is not None:
        raise UsageError(
            "--val takes one validation set, but several datasets are given",
            "leave --val out: each dataset is split by --val-split (seeded, stratified)",
        )
    return dict(dataset)


def _mask_tensors(masks: dict) -> dict:
    import torch

    return {name: torch.as_tensor(mask) for name, mask in masks.items()}


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
