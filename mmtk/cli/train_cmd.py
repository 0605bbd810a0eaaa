"""mmtk train: fit a fusion model on cached features and write a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, Data, DeviceOpt, Fps, Frames, IdColumn, ImageColumn, Json, MaxLength, OnError, OnErrorOpt, Quiet, Store, TextColumn,
    column_overrides, feature_options, open_store,
)
from mmtk.errors import UsageError

EXAMPLE = """Examples:

  mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model gmu --task label:binary --out runs/gmu

  mmtk train memotion.csv --features clip,clip@text --model concat --task sentiment:multiclass --task humour:binary --out runs/mt --val dev.csv

  mmtk train listings.csv --features minilm@description,tabular --cat-cols type,city --num-cols age,fee --scaling quantile --model gmu --task price:regression --out runs/price

  mmtk train reviews.csv --features "minilm@Review Text,tabular" --columns column_info.json --model concat --out runs/reviews
"""


def split_features(value: str) -> list[str]:
    refs = [part.strip() for part in value.split(",") if part.strip()]
    if not refs:
        raise UsageError("--features is empty", "name at least one stored feature, e.g. --features efficientnet-lite0,minilm")
    return refs


@handle_errors
def train_command(
    data: Data,
    features: Annotated[
        str,
        typer.Option("--features", "-f", help="Comma-separated FEATURE list, each BACKBONE[:seq][@COLUMN].", show_default=False),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `mmtk list models`).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.", show_default=False)],
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
    val: Annotated[Optional[str], typer.Option("--val", help="Validation dataset (else a split of DATA).")] = None,
    val_split: Annotated[float, typer.Option("--val-split", min=0.05, max=0.9, help="Fraction of DATA held out for early stopping.")] = 0.2,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Maximum epochs.")] = 100,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, help="AdamW weight decay.")] = 1e-2,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Training batch size.")] = 64,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Epochs without validation improvement before stopping.")] = 10,
    class_weights: Annotated[bool, typer.Option("--class-weights", help="Weight the loss by inverse class frequency.")] = False,
    hidden: Annotated[int, typer.Option("--hidden", min=1, help="Hidden width of the fusion model.")] = 256,
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=0.95, help="Dropout rate.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (splits, initialisation, batches).")] = 0,
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
    """
    from mmtk.data import read_dataset
    from mmtk.features import items_with_features, parse_feature_refs, required_columns, resolve_features
    from mmtk.tabular import column_spec
    from mmtk.train import train

    output.set_quiet(quiet)
    # The run records these options with each feature, so evaluate/predict match them.
    refs = parse_feature_refs(split_features(features), feature_options(max_length, fps, frames))
    tabular = column_spec(cat_cols=cat_cols, num_cols=num_cols, columns_file=columns_file, scaling=scaling)
    has_tabular = any(ref.is_tabular for ref in refs)
    if tabular is not None and not has_tabular and (cat_cols or num_cols or scaling):
        raise UsageError("--cat-cols/--num-cols/--scaling describe the tabular feature, but --features does not list it", "add it, e.g. --features minilm,tabular")
    tasks = task or ([tabular.label_col] if tabular is not None and tabular.label_col else [])
    if not tasks:
        raise UsageError("no task given", "name the label column with --task COLUMN[:KIND], or give label_col in the --columns file")
    columns = column_overrides(id_column, image_column, text_column, allow_outside_paths)
    needed = required_columns(refs)
    dataset = read_dataset(data, require=needed, on_error=on_error.value, **columns)
    val_dataset = read_dataset(val, require=needed, on_error=on_error.value, **columns) if val else None
    output.warn_skipped(dataset.skipped + (val_dataset.skipped if val_dataset else []))
    features_store = open_store(store)
    if on_error is OnError.skip:
        # Items skipped at extraction have no features: leave them out too, listed.
        dataset, skipped = items_with_features(dataset, resolve_features(dataset, refs), features_store, on_error="skip")
        if val_dataset is not None:
            val_dataset, val_skipped = items_with_features(
                val_dataset, resolve_features(val_dataset, refs), features_store, on_error="skip"
            )
            skipped += val_skipped
        output.warn_skipped(skipped)
    with output.progress_bar("training") as progress:
        report = train(
            dataset,
            features=refs,
            model=model,
            tasks=tasks,
            out=out,
            store=features_store,
            val_dataset=val_dataset,
            val_split=val_split,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            patience=patience,
            class_weights=class_weights,
            seed=seed,
            hidden=hidden,
            dropout=dropout,
            device=device.value,
            progress=progress,
            tabular=tabular if has_tabular else None,
        )
    summary = report.to_json()
    if json_out:
        output.print_json(summary)
        return
    console = output.stdout()
    console.print(f"run written to {summary['run']}", highlight=False)
    console.print(
        f"best epoch {summary['best_epoch']} of {summary['epochs_run']}, "
        f"{summary['train_items']} training / {summary['val_items']} validation items, {summary['seconds']:.1f} s",
        highlight=False,
    )
    from mmtk.cli.tables import metrics_table

    console.print(metrics_table(summary["val_metrics"], title="validation metrics (best epoch)"))
