"""mmtk tune: hyper-parameter search over `mmtk train` (``mmtk.tune.tune``)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, DeviceOpt, IdColumn, ImageColumn, Json, MaxLength, OnError, OnErrorOpt, Quiet, Store, TextColumn,
)
from mmtk.errors import UsageError
from mmtk.tune.recipe import PRUNE_STARTUP, PRUNE_WARMUP

EXAMPLE = """Examples:

  mmtk tune examples/memes/train.jsonl --features efficientnet-lite0,minilm --model concat --task label:binary --space examples/tune-space.yaml --trials 6 --epochs 5 --out tuned/concat --retrain

  mmtk tune reviews.csv --features "minilm@Review Text,tabular" --columns column_info.json --model gmu --space space.yaml --trials 40 --folds 5 --metric macro_f1 --out tuned/reviews
"""

#: Options passed on to `mmtk train` as given (they also make up best.json's command).
TRAIN_OPTIONS = (
    "task", "val", "val_split", "epochs", "batch_size", "patience", "model_arg", "class_weights", "cat_cols", "num_cols",
    "columns_file", "scaling", "missing_modality", "max_length", "seed", "store", "device", "id_column", "image_column",
    "text_column", "allow_outside_paths", "on_error",
)


@handle_errors
def tune_command(
    ctx: typer.Context,
    data: Annotated[Optional[str], typer.Argument(help="Training dataset: a .csv, .jsonl or .parquet file, or a folder.", show_default=False)] = None,
    features: Annotated[
        Optional[str], typer.Option("--features", "-f", help="Comma-separated FEATURE list, as for `mmtk train`.", show_default=False)
    ] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (see `mmtk list models`).", show_default=False)] = None,
    space: Annotated[
        Optional[Path],
        typer.Option("--space", help="Search space: a .yaml/.yml/.json file mapping lr, weight_decay, batch_size, label_smoothing or --model-arg keys to ranges (README, tune).", show_default=False),
    ] = None,
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Finished trials the study should hold (a resumed study runs only the missing ones).")] = 20,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for the study, trials.csv/.json and best.json.", show_default=False)] = None,
    task: Annotated[
        Optional[list[str]], typer.Option("--task", "-t", help="COLUMN[:KIND], repeatable, as for `mmtk train`. Default: label_col of --columns.", show_default=False)
    ] = None,
    val: Annotated[Optional[str], typer.Option("--val", help="Validation dataset for every trial (else a split of DATA, or --folds).")] = None,
    val_split: Annotated[float, typer.Option("--val-split", min=0.05, max=0.9, help="Fraction of DATA held out for validation (without --val or --folds; and for --retrain).")] = 0.2,
    folds: Annotated[
        Optional[int], typer.Option("--folds", min=2, help="Score each trial by stratified K-fold cross-validation (the folds' mean); pruning watches fold 1.", show_default=False)
    ] = None,
    metric: Annotated[
        str, typer.Option("--metric", help="What trials are scored and early-stopped on: val_loss, a validation metric (accuracy, macro_f1, rmse, ...), or auto (as train --monitor auto).")
    ] = "val_loss",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler, the splits and every trial's training.")] = 0,
    storage: Annotated[
        Optional[Path], typer.Option("--storage", help="The study's SQLite file. Default: OUT/study.db. Running the same command again resumes it.", show_default=False)
    ] = None,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="Median pruning: stop a trial whose epoch is worse than the median of earlier trials at that epoch.")] = True,
    prune_startup: Annotated[int, typer.Option("--prune-startup", min=0, help="Complete trials before pruning starts.")] = PRUNE_STARTUP,
    prune_warmup: Annotated[int, typer.Option("--prune-warmup", min=0, help="Epochs every trial trains before it can be pruned.")] = PRUNE_WARMUP,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train the best configuration into a run (--run-out).")] = False,
    run_out: Annotated[Optional[Path], typer.Option("--run-out", help="Run directory of --retrain. Default: OUT/best-run.", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Maximum epochs per training, as for `mmtk train`.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Training batch size (unless the space tunes batch_size).")] = 64,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Epochs without improvement of --metric before a training stops.")] = 10,
    model_arg: Annotated[
        Optional[list[str]], typer.Option("--model-arg", help="KEY=VALUE model parameter kept fixed in every trial, repeatable.", show_default=False)
    ] = None,
    class_weights: Annotated[bool, typer.Option("--class-weights", help="Weight the loss by inverse class frequency.")] = False,
    cat_cols: Annotated[Optional[str], typer.Option("--cat-cols", help="Categorical columns of the tabular feature, comma-separated.")] = None,
    num_cols: Annotated[Optional[str], typer.Option("--num-cols", help="Numerical columns of the tabular feature, comma-separated.")] = None,
    columns_file: Annotated[Optional[Path], typer.Option("--columns", help="A JSON file like column_info.json: cat_cols, num_cols, label_col.")] = None,
    scaling: Annotated[Optional[str], typer.Option("--scaling", help="Numerical scaling of the tabular feature: standard | minmax | quantile.")] = None,
    missing_modality: Annotated[
        str, typer.Option("--missing-modality", help="Items lacking a modality: fail | skip | zero | mask, as for `mmtk train`.")
    ] = "fail",
    max_length: MaxLength = 128,
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
    """Search hyper-parameters of a model with an Optuna study (TPE sampler, median pruning).

    Each trial trains like `mmtk train` with settings drawn from --space and is scored by --metric on the validation split
    (or --val, or the --folds mean). OUT gets the study (resumable), trials.csv/.json and best.json, whose "command" trains the best settings.
    """
    from mmtk.cli import train_cmd

    output.set_quiet(quiet)
    missing = [name for name, value in (("DATA", data), ("--features", features), ("--model", model), ("--space", space), ("--out", out)) if not value]
    if missing:
        raise UsageError(f"tune needs {', '.join(missing)}", "e.g. mmtk tune data.jsonl --features minilm --model gmu --space space.yaml --out tuned")
    if data == "-":
        raise UsageError("tune reads its data once per trial and cannot take stdin", "write the data to a file and name that")
    given = {name: value for name, value in locals().items() if name in TRAIN_OPTIONS}
    train_argv = [data, "--features", features, "--model", model, *_given_options(ctx, given)]
    defaults = {name: p.default for name, p in inspect.signature(train_cmd.train_command).parameters.items()}
    call = train_cmd.make_call({**defaults, **given, "data": [data], "features": features, "model": model, "out": out})
    dataset, common = train_cmd.read_inputs(call)
    for key in ("record", "monitor"):
        common.pop(key)
    from mmtk.tune.space import TRAIN_KEYS

    for key in TRAIN_KEYS:  # train's defaults, unless given here: the space may tune them
        if key not in given or ctx.get_parameter_source(key).name.startswith("DEFAULT"):
            common.pop(key)
    from mmtk.training.heap import keep_freed_memory
    from mmtk.tune import tune

    keep_freed_memory()  # every trial trains: reuse each step's buffers (mmtk/training/heap.py)

    def on_trial(row: dict) -> None:
        value = "" if row["value"] is None else f" {metric} {row['value']:.4f}"
        output.log(f"trial {row['number']}: {row['state']}{value} after {row['epochs']} epoch(s)")

    report = tune(
        dataset, model=model, space=space, trials=trials, out=out, folds=folds, metric=metric, storage=storage, pruning=prune,
        prune_startup=prune_startup, prune_warmup=prune_warmup, retrain=retrain, run_out=run_out, command=["mmtk", "train", *train_argv],
        progress=output.progress_bar, on_trial=on_trial, model_args=common.pop("model_args"), **common,
    )
    if json_out:
        output.print_json(report.to_json())
        return
    _print_summary(report)


def _given_options(ctx: typer.Context, values: dict) -> list[str]:
    """The `mmtk train` options for the ``values`` given on this command line (not
    left at their defaults), spelled as train spells them."""
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    argv = []
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        # By name: Typer may bring its own copy of click, whose enum is another class.
        if source is None or source.name.startswith("DEFAULT"):
            continue
        value = getattr(value, "value", value)
        if isinstance(value, bool):
            argv += [flags[name]] if value else []
        else:
            for item in value if isinstance(value, list) else [value]:
                argv += [flags[name], str(item)]
    return argv


def _print_summary(report) -> None:
    console = output.stdout()
    counts = ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items()))
    console.print(f"study {report.storage}: {len(report.rows)} trials ({counts}), {report.ran} run now, {report.seconds:.1f} s", highlight=False)
    best = report.best
    params = ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in best["params"].items())
    console.print(f"best trial {best['trial']}: {best['metric']} {best['value']:.4f} with {params}", highlight=False, markup=False)
    console.print(f"trials in {report.files['trials_csv']} and {report.files['trials_json']}, best config in {report.files['best']}", highlight=False)
    if report.run is not None:
        console.print(f"run written to {report.run}", highlight=False)
    else:
        console.print(f"train it: {best['command']}", highlight=False, markup=False)
