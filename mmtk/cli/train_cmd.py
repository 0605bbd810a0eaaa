"""mmtk train: fit a fusion model on cached features and write a run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, DeviceOpt, Fps, Frames, IdColumn, ImageColumn, Json, MaxLength, OnError, OnErrorOpt, Quiet, Store, TextColumn,
    column_overrides, feature_options, open_store,
)
from mmtk.errors import UsageError

TRAIN_CHOICES = {"schedule": ("constant", "linear", "cosine"), "pool": ("mean", "mean-std", "max"),
                 "missing_modality": ("fail", "skip", "zero", "mask"), "standardize": ("auto", "all", "none"), "perturb": ("none", "fgsm"),
                 "mix": ("proportional", "round-robin"), "finetune": ("none", "text", "image", "all")}

EXAMPLE = """Examples:

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model gmu --task label:binary --out runs/gmu

  mmtk train memotion.csv --features clip,clip@text --model concat --task sentiment:multiclass --task humour:binary --out runs/mt --val dev.csv

  mmtk train listings.csv --features minilm@description,tabular --cat-cols type,city --num-cols age,fee --scaling quantile --model gmu --task price:regression --out runs/price

  mmtk train reviews.csv --features "minilm@Review Text,tabular" --columns column_info.json --model concat --out runs/reviews

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model gmu --model-arg hidden=128 --standardize all --schedule cosine --warmup 0.05 --missing-modality mask --task label --out runs/gmu-mask

  mmtk train memotion.csv --features clip,clip@text --model gmu --task sentiment --task humour --task-weight sentiment=0.6 --out runs/mt

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model concat,gmu --task label:binary --out runs/cmp

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model gmu --task label:binary --plots --out runs/gmu-curves

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model gmu --perturb fgsm --perturb-eps 0.05 --task label:binary --out runs/gmu-fgsm

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model stack --meta auto --folds 3 --task label:binary --out runs/stack

  mmtk train hateful.jsonl mami.jsonl --features clip,clip@text --model gmu --task label --mix round-robin --out runs/hate-mami

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model gmu --finetune text --model-arg text_pool=mean --lr 5e-3 --backbone-lr 5e-5 --max-length 32 --epochs 3 --batch-size 32 --task label:binary --out runs/memes-ft
"""


BATCH_SOURCES = {"store": "read from the store", "media": "decoded from the raw data (fine-tuning)"}


def split_features(value: str) -> list[str]:
    refs = [part.strip() for part in value.split(",") if part.strip()]
    if not refs:
        raise UsageError("--features is empty", "name at least one stored feature, e.g. --features efficientnet-lite0,minilm")
    return refs


def split_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``KEY=VALUE`` options (repeatable) as a dict; a malformed one is a usage error."""
    pairs: dict[str, str] = {}
    for value in values or []:
        key, equals, text = value.partition("=")
        if not equals or not key.strip() or not text.strip():
            raise UsageError(f"{option} {value!r} is not KEY=VALUE", f"write e.g. {option} hidden=128")
        pairs[key.strip()] = text.strip()
    return pairs


def task_weights(values: list[str] | None) -> dict[str, float]:
    weights = {}
    for task, text in split_pairs(values, "--task-weight").items():
        try:
            weights[task] = float(text)
        except ValueError:
            raise UsageError(f"--task-weight {task}={text}: the weight is not a number", "write e.g. --task-weight sentiment=0.4") from None
    return weights


@handle_errors
def train_command(
    data: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Dataset: a .csv or .jsonl file, a folder, or - for JSONL on stdin (not with --resume). Several datasets "
            "train one model with a head per dataset and task (NAME/TASK, NAME the file's stem).",
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        Optional[str],
        typer.Option("--features", "-f", help="Comma-separated FEATURE list, each BACKBONE[:seq][@COLUMN], tabular, run:PATH or tokens@COLUMN (word pieces for visualbert/tinybert).", show_default=False),
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Model name (see `mmtk list models`); several, comma-separated, train each into OUT/NAME and print a comparison.", show_default=False),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory to write.", show_default=False)] = None,
    task: Annotated[
        Optional[list[str]],
        typer.Option(
            "--task", "-t",
            # Spaces, not "|", between the kinds: help columns wrap at spaces, and an
            # unbroken word is cut with "..." at 80 columns.
            help="COLUMN[:KIND] with KIND binary, multiclass, multilabel or regression, or NAME=A,B:multilabel "
            "over several 0/1 columns; repeat for several tasks. Default: label_col of --columns.",
            show_default=False,
        ),
    ] = None,
    val: Annotated[Optional[str], typer.Option("--val", help="Validation dataset (else a split of DATA; one dataset only).")] = None,
    val_split: Annotated[float, typer.Option("--val-split", min=0.05, max=0.9, help="Fraction of DATA (of each dataset) held out for early stopping.")] = 0.2,
    dataset: Annotated[
        Optional[list[str]],
        typer.Option("--dataset", help="NAME=PATH: a dataset with its name, repeatable (besides or instead of DATA).", show_default=False),
    ] = None,
    mix: Annotated[
        str,
        typer.Option("--mix", help="Several datasets: each batch from one; proportional (to dataset size) | round-robin (alternate, smaller ones cycled)."),
    ] = "proportional",
    epochs: Annotated[
        Optional[int],
        typer.Option("--epochs", min=1, help="Maximum epochs. Default: the model's (`mmtk list models`), else enough for 3,000 optimizer steps, from 100 to 1,000.", show_default=False),
    ] = None,
    lr: Annotated[
        Optional[float],
        typer.Option("--lr", min=0.0, help="AdamW learning rate (the peak, with a schedule). Default: the model's (`mmtk list models`), else 0.001.", show_default=False),
    ] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, help="AdamW weight decay.")] = 1e-2,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Training batch size.")] = 64,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Epochs without validation improvement before stopping.")] = 10,
    class_weights: Annotated[bool, typer.Option("--class-weights", help="Weight the loss by inverse class frequency.")] = False,
    hidden: Annotated[
        Optional[int], typer.Option("--hidden", min=1, help="Hidden width (same as --model-arg hidden=N). Default: the model's.", show_default=False)
    ] = None,
    dropout: Annotated[
        Optional[float], typer.Option("--dropout", min=0.0, max=0.95, help="Dropout rate (same as --model-arg dropout=P). Default: the model's.", show_default=False)
    ] = None,
    members: Annotated[
        Optional[str],
        typer.Option("--members", help="--model stack: comma-separated run directories to stack (each retrained per fold for out-of-fold scores), besides or instead of --features.", show_default=False),
    ] = None,
    meta: Annotated[
        Optional[str],
        typer.Option("--meta", help="--model stack: meta-estimator over the members' scores: logreg | tree | forest | hard-vote | soft-vote | auto (best per task by cross-validated macro-F1). Default: auto.", show_default=False),
    ] = None,
    folds: Annotated[
        Optional[int], typer.Option("--folds", help="--model stack: folds of the out-of-fold member scores (stratified). Default: 5.", show_default=False)
    ] = None,
    member_model: Annotated[
        Optional[str], typer.Option("--member-model", help="--model stack: the model of the member trained on each feature. Default: logreg.", show_default=False)
    ] = None,
    model_arg: Annotated[
        Optional[list[str]],
        typer.Option("--model-arg", help="KEY=VALUE model parameter, repeatable; `mmtk list models` shows each model's.", show_default=False),
    ] = None,
    task_weight: Annotated[
        Optional[list[str]], typer.Option("--task-weight", help="TASK=WEIGHT of that task's loss in the total (default 1, or the model's: multitask-heads), repeatable.", show_default=False)
    ] = None,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=0.99, help="Label smoothing of classification losses.")] = 0.0,
    schedule: Annotated[str, typer.Option("--schedule", help="Learning-rate schedule after warm-up: constant | linear | cosine.")] = "cosine",
    warmup: Annotated[float, typer.Option("--warmup", min=0.0, max=0.99, help="Linear warm-up, as a fraction of the planned steps.")] = 0.05,
    clip_norm: Annotated[
        Optional[float], typer.Option("--clip-norm", min=0.0, help="Clip the gradient norm to this value.", show_default=False)
    ] = None,
    accumulate: Annotated[int, typer.Option("--accumulate", min=1, help="Batches whose gradients are summed per optimizer step.")] = 1,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA (bfloat16 where supported).")] = True,
    monitor: Annotated[
        str,
        typer.Option("--monitor", help="Early stopping on auto (macro_f1 when every task is binary or multi-class and there are 50+ validation items, else val_loss), val_loss, or a validation metric (accuracy, rmse, ...)."),
    ] = "auto",
    missing_modality: Annotated[
        str, typer.Option("--missing-modality", help="Items lacking a modality: fail (refuse) | skip (drop) | zero (zero-fill) | mask (model ignores it).")
    ] = "fail",
    pool: Annotated[str, typer.Option("--pool", help="How sequences become vectors for vector models: mean | mean-std (statistics pooling) | max.")] = "mean-std",
    standardize: Annotated[
        str,
        typer.Option("--standardize", help="Standardise input dimensions with training statistics: auto (inputs whose dimensions differ widely in scale, e.g. MFCC) | all | none."),
    ] = "auto",
    max_memory: Annotated[
        Optional[str], typer.Option("--max-memory", help="Inputs larger than this (e.g. 2G) are read from the store per batch. Default: half the available memory.", show_default=False)
    ] = None,
    checkpoint_every: Annotated[float, typer.Option("--checkpoint-every", min=0.0, help="Seconds between checkpoints (0: every epoch).")] = 10.0,
    resume: Annotated[
        Optional[Path], typer.Option("--resume", help="Continue the killed run OUT from its last checkpoint, with its settings.", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (splits, initialisation, batches).")] = 0,
    plots: Annotated[
        bool, typer.Option("--plots", help="Draw OUT/learning_curves.png beside train_log.jsonl: every loss term and validation metric per epoch.")
    ] = False,
    finetune: Annotated[
        str, typer.Option("--finetune", help="Run the backbones of these features inside the model on the raw data and train them: none | text | image | all.")
    ] = "none",
    backbone_lr: Annotated[float, typer.Option("--backbone-lr", min=0.0, help="Learning rate of fine-tuned backbones (the rest trains at --lr).")] = 3e-5,
    freeze_layers: Annotated[
        int, typer.Option("--freeze-layers", min=0, help="Fine-tuning: keep the embeddings and the first N transformer layers / image stages fixed.")
    ] = 0,
    grad_checkpoint: Annotated[bool, typer.Option("--grad-checkpoint", help="Fine-tuning: recompute activations in the backward pass (less memory, slower).")] = False,
    lowercase_shouting: Annotated[
        bool, typer.Option("--lowercase-shouting", help="Fine-tuning: lower-case texts that are mostly upper case before tokenising (kept for predict).")
    ] = False,
    data_workers: Annotated[
        Optional[int], typer.Option("--data-workers", min=0, help="Fine-tuning: processes decoding images (0: in the training process). Default: 1.", show_default=False)
    ] = None,
    perturb: Annotated[str, typer.Option("--perturb", help="Adversarial input perturbation while training: none | fgsm (loss: clean and perturbed averaged).")] = "none",
    perturb_eps: Annotated[
        Optional[float], typer.Option("--perturb-eps", min=0.0, help="FGSM step size, in the units the model sees (after --standardize).", show_default=False)
    ] = None,
    cat_cols: Annotated[
        Optional[str], typer.Option("--cat-cols", help="Categorical columns of the tabular feature (one-hot), comma-separated.")
    ] = None,
    num_cols: Annotated[
        Optional[str], typer.Option("--num-cols", help="Numerical columns of the tabular feature, comma-separated.")
    ] = None,
    columns_file: Annotated[
        Optional[Path],
        typer.Option("--columns", help="A JSON file like column_info.json: cat_cols, num_cols (tabular feature), label_col (default task)."),
    ] = None,
    scaling: Annotated[
        Optional[str], typer.Option("--scaling", help="Numerical scaling of the tabular feature: standard | minmax | quantile.")
    ] = None,
    max_length: MaxLength = 128,
    fps: Fps = 1.0,
    frames: Frames = None,
    store: Store = None,
    device: DeviceOpt = "auto",
    id_column: IdColumn = None,
    image_column: ImageColumn = None,
    text_column: TextColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    json_out: Json = False,
    on_error: OnErrorOpt = OnError.fail,
    quiet: Quiet = False,
) -> None:
    """Train a model on features already in the store (run `mmtk extract-features` first).

    The tabular feature (--features ...,tabular) is built from --cat-cols/--num-cols or --columns at train time and saved in the run.
    With --finetune text|image|all the backbones of those features train inside the model on the raw data (see README, "Fine-tuning").
    A killed run continues with `mmtk train --resume OUT`.
    Under torchrun every process trains its share of each batch and rank 0 alone writes and reports (README, "Scaling out").
    """
    from mmtk.cli.errors import other_rank

    main = not other_rank()
    output.set_quiet(quiet or not main)  # under torchrun rank 0 alone warns and draws progress
    if resume is not None:
        from mmtk.training.checkpoint import read_record

        call = read_record(resume).get("call")
        if not call:
            raise UsageError(f"--resume {resume}: the checkpoint was not written by `mmtk train`", "resume it from Python with train(..., resume=True)")
        report = _train(call, resume=True)
    else:
        features, stack_args = _stack_options(model, features, members, meta, folds, member_model)
        call = make_call(locals())
        call["model_args"].update(stack_args)
        stdin = call["data"] == "-"
        if stdin:
            call["data"] = None  # stdin cannot be read again on --resume
        report = _train(call, resume=False, stdin=stdin)
    if not main:  # rank 0 reports the run the ranks trained together
        return
    if "," in call["model"]:
        if call.get("plots"):
            for result in report.results:
                if result.ok:
                    _learning_curves(result.report.run)
        _print_comparison(report, json_out)
        return
    output.warn_skipped(report.skipped)
    summary = report.to_json()
    if call.get("plots"):  # absent in checkpoints written before --plots
        summary["plots"] = [str(_learning_curves(report.run))]
    if json_out:
        output.print_json(summary)
        return
    console = output.stdout()
    console.print(f"run written to {summary['run']}", highlight=False)
    console.print(
        f"best epoch {summary['best_epoch']} of {summary['epochs_run']}, "
        f"{summary['train_items']} training / {summary['val_items']} validation items, {summary['seconds']:.1f} s, "
        f"batches {BATCH_SOURCES.get(summary['batch_source'], 'in memory')}",
        highlight=False,
    )
    from mmtk.cli.tables import metrics_table

    console.print(metrics_table(summary["val_metrics"], title="validation metrics (best epoch)"))
    for path in summary.get("plots", []):
        console.print(f"plot: {path}", highlight=False)


def _learning_curves(run: Path) -> Path:
    from mmtk.plots import plot_learning_curves

    return plot_learning_curves(run)


def _stack_options(model, features, members, meta, folds, member_model) -> tuple[str | None, dict]:
    """The features with ``--members`` added as ``run:`` features, and ``--meta``,
    ``--folds``, ``--member-model`` as the stack's ``--model-arg``s; refused with another model."""
    given = {"meta": meta, "folds": folds, "member": member_model}
    options = {key: value for key, value in given.items() if value is not None}
    if (options or members) and model != "stack":
        flag = "--members" if members else "--" + {"member": "member-model"}.get(next(iter(options)), next(iter(options)))
        raise UsageError(f"{flag} belongs to --model stack, not --model {model}", "add --model stack, or drop it")
    if members:
        runs = [f"run:{part.strip()}" for part in members.split(",") if part.strip()]
        features = ",".join(([features] if features else []) + runs)
    return features, options


def make_call(p: dict) -> dict:
    """The checked settings of a train command as plain JSON, from its parameters by
    name (``p``, as Typer passes them): what ``read_inputs`` and ``--resume`` work from.
    ``mmtk tune`` builds its trials' settings through it too."""
    missing = [name for name, value in (("DATA", p["data"] or p["dataset"]), ("--features", p["features"]), ("--model", p["model"]), ("--out", p["out"])) if not value]
    if missing:
        raise UsageError(f"train needs {', '.join(missing)}", "e.g. mmtk train data.jsonl --features minilm --model gmu --out runs/x (or --resume OUT)")
    if p["perturb"] == "fgsm" and p["perturb_eps"] is None:
        raise UsageError("--perturb fgsm needs a step size", "add --perturb-eps, e.g. --perturb-eps 0.05")
    for option, choices in TRAIN_CHOICES.items():
        value = p.get(option, choices[0])  # a command without the option (tune: --finetune) gets its default
        if value not in choices:
            raise UsageError(f"--{option.replace('_', '-')} {value!r} is not one of {', '.join(choices)}", f"choose one of: {', '.join(choices)}")
    from mmtk.multidata import name_datasets

    named = name_datasets(p["data"] or [], p["dataset"] or [])
    several = len(named) > 1
    if several and any(path == "-" for _, path in named):
        raise UsageError("- (stdin) can be the only dataset, not one of several", "write the stdin data to a file and name that")
    same = (
        "mix", "features", "model", "task", "val", "val_split", "epochs", "lr", "weight_decay", "batch_size", "patience", "class_weights",
        "hidden", "dropout", "label_smoothing", "schedule", "warmup", "clip_norm", "accumulate", "amp", "monitor", "missing_modality",
        "pool", "standardize", "max_memory", "checkpoint_every", "seed", "cat_cols", "num_cols", "scaling", "max_length", "fps", "frames",
        "id_column", "image_column", "text_column", "allow_outside_paths", "perturb", "plots",
    )
    return {
        "data": None if several else named[0][1], "datasets": named if several else None, "out": str(p["out"]),
        **{key: p[key] for key in same},
        "model_args": split_pairs(p["model_arg"], "--model-arg"), "task_weights": task_weights(p["task_weight"]),
        "columns_file": None if p["columns_file"] is None else str(p["columns_file"]),
        "store": None if p["store"] is None else str(p["store"]), "device": getattr(p["device"], "value", p["device"]),
        "on_error": getattr(p["on_error"], "value", p["on_error"]), "perturb_eps": p["perturb_eps"] or 0.0,
        # Commands that build a train call without fine-tuning options (mmtk tune) train on stored features.
        "finetune": None if p.get("finetune", "none") == "none" else {
            "modalities": p["finetune"], "backbone_lr": p["backbone_lr"], "freeze_layers": p["freeze_layers"],
            "grad_checkpoint": p["grad_checkpoint"], "lowercase_shouting": p["lowercase_shouting"], "workers": p["data_workers"],
        },
    }


def _train(call: dict, *, resume: bool, stdin: bool = False):
    """Read the data and train as ``call`` (the command's arguments, JSON) says; the same
    ``call`` is kept in the checkpoint so that ``--resume`` can start it again."""
    from mmtk.train import train
    from mmtk.training.heap import keep_freed_memory

    data, common = read_inputs(call, resume=resume, stdin=stdin)
    keep_freed_memory()  # training reuses each step's buffers (mmtk/training/heap.py)
    if "," in call["model"]:
        from mmtk.compare import compare_models

        return compare_models(data, models=call["model"], out=call["out"], progress=output.progress_bar, **common)
    with output.progress_bar("training") as progress:
        return train(data, model=call["model"], out=call["out"], progress=progress, resume=resume, **common)


def read_inputs(call: dict, *, resume: bool = False, stdin: bool = False) -> tuple:
    """``(dataset or {name: dataset}, train's keyword arguments but model, out, progress
    and resume)`` for ``call``: the datasets read and checked, the features parsed, the
    tabular spec built, the store opened."""
    from mmtk.data import read_dataset
    from mmtk.features import items_with_features, parse_feature_refs, required_columns, resolve_features
    from mmtk.tabular import column_spec

    if resume and call["data"] is None and not call.get("datasets"):
        raise UsageError("--resume: the run read its data from stdin, which cannot be read again", "train it afresh")
    # The run records these options with each feature, so evaluate/predict match them.
    refs = parse_feature_refs(split_features(call["features"]), feature_options(call["max_length"], call["fps"], call["frames"]))
    tabular = column_spec(cat_cols=call["cat_cols"], num_cols=call["num_cols"], columns_file=call["columns_file"], scaling=call["scaling"])
    has_tabular = any(ref.source == "tabular" for ref in refs)
    if tabular is not None and not has_tabular and (call["cat_cols"] or call["num_cols"] or call["scaling"]):
        raise UsageError("--cat-cols/--num-cols/--scaling describe the tabular feature, but --features does not list it", "add it, e.g. --features minilm,tabular")
    tasks = call["task"] or ([tabular.label_col] if tabular is not None and tabular.label_col else [])
    if not tasks:
        raise UsageError("no task given", "name the label column with --task COLUMN[:KIND], or give label_col in the --columns file")
    columns = column_overrides(call["id_column"], call["image_column"], call["text_column"], call.get("allow_outside_paths", False))
    needed = required_columns(refs)
    # With a missing-modality policy the feature columns must exist but may be blank.
    read = {"require": needed} if call["missing_modality"] == "fail" else {"optional": needed}
    named = call.get("datasets") or [(None, "-" if stdin else call["data"])]
    datasets = {name: read_dataset(path, on_error=call["on_error"], **read, **columns) for name, path in named}
    finetune = call.get("finetune")  # absent in older checkpoints
    if finetune:  # fine-tuned features are read raw, never from the store
        from mmtk.finetune.inputs import mark_finetuned
        from mmtk.finetune.settings import FinetuneSettings

        finetune = FinetuneSettings(**finetune)
        refs = mark_finetuned(refs, finetune, next(iter(datasets.values())))
    val_dataset = read_dataset(call["val"], on_error=call["on_error"], **read, **columns) if call["val"] else None
    output.warn_skipped([item for ds in datasets.values() for item in ds.skipped] + (val_dataset.skipped if val_dataset else []))
    features_store = open_store(call["store"])
    if call["on_error"] == "skip":
        # Items skipped at extraction have no features: leave them out too, listed.
        absent_ok = call["missing_modality"] != "fail"
        skipped = []
        for name, ds in datasets.items():
            datasets[name], left_out = items_with_features(ds, resolve_features(ds, refs), features_store, on_error="skip", absent_ok=absent_ok)
            skipped += left_out
        if val_dataset is not None:
            val_dataset, val_skipped = items_with_features(
                val_dataset, resolve_features(val_dataset, refs), features_store, on_error="skip", absent_ok=absent_ok
            )
            skipped += val_skipped
        output.warn_skipped(skipped)
    options = {key: call[key] for key in (
        "val_split", "epochs", "lr", "weight_decay", "batch_size", "patience", "class_weights", "seed", "hidden", "dropout",
        "model_args", "task_weights", "label_smoothing", "schedule", "warmup", "clip_norm", "accumulate", "amp", "monitor",
        "missing_modality", "pool", "standardize", "max_memory", "checkpoint_every",
    )}
    options.update(perturb=call.get("perturb"), perturb_eps=call.get("perturb_eps", 0.0))  # absent in older checkpoints
    options.update(mix=call.get("mix", "proportional"))
    data = datasets if len(datasets) > 1 else datasets[None]
    common = dict(
        features=refs, tasks=tasks, store=features_store, val_dataset=val_dataset, device=call["device"],
        tabular=tabular if has_tabular else None, record=call, finetune=finetune, **options,
    )
    return data, common


def _print_comparison(comparison, json_out: bool) -> None:
    """The comparison's table (or JSON document) on stdout, one ``error:`` line per model
    that failed on stderr, and exit 2 when any did."""
    ok = [r for r in comparison.results if r.ok]
    output.warn_skipped(ok[0].report.skipped if ok else [])
    if json_out:
        output.print_json(comparison.to_json())
    else:
        from mmtk.cli.tables import comparison_table

        console = output.stdout()
        console.print(comparison_table(comparison.rows(), title="validation metrics (best epoch)"))
        console.print(f"runs in {comparison.out}/MODEL, table in {comparison.csv}", highlight=False)
    for result in comparison.failed:
        print(f"error: model {result.model}: {result.error.one_line()}", file=sys.stderr)
    if comparison.exit_code:
        raise typer.Exit(comparison.exit_code)
