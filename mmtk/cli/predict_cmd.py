"""mmtk predict: label new data with a trained run."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, Data, DatasetName, DeviceOpt, IdColumn, ImageColumn, OnError, OnErrorOpt, PredictFormat, Quiet, RunDir, Store, TextColumn, Tta, column_overrides,
    open_store,
)

EXAMPLE = """Examples:

  mmtk predict runs/gmu new_memes.jsonl > predictions.jsonl

  mmtk predict runs/gmu new_memes/ --explain --out predictions.csv

  cat items.jsonl | mmtk predict runs/gmu - | jq -r 'select(.label == 1) | .id'

  mmtk predict runs/gmu new_memes.jsonl --tta ten-crop > predictions.jsonl
"""


def infer_format(out: str, fmt: PredictFormat | None) -> str:
    if fmt is not None:
        return fmt.value
    return "csv" if out.lower().endswith(".csv") else "jsonl"


@handle_errors
def predict_command(
    run: RunDir,
    data: Data,
    out: Annotated[str, typer.Option("--out", "-o", help="Output file, or - for stdout.")] = "-",
    fmt: Annotated[
        Optional[PredictFormat], typer.Option("--format", help="jsonl or csv (default: from --out's extension, else jsonl).")
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add per-modality weights (GMU gates) to each record.")] = False,
    dataset_name: DatasetName = None,
    tta: Tta = "none",
    store: Store = None,
    device: DeviceOpt = "auto",
    id_column: IdColumn = None,
    image_column: ImageColumn = None,
    text_column: TextColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    on_error: OnErrorOpt = OnError.fail,
    quiet: Quiet = False,
) -> None:
    """Predict labels for every item of DATA, one record per item.

    Each record holds the label and the class probabilities. Features missing from the store are extracted first.
    """
    from mmtk.inference import open_run, read_for_run, usable_items
    from mmtk.predict import predict, write_predictions

    output.set_quiet(quiet)
    loaded = open_run(run, device.value)
    dataset = read_for_run(loaded, data, column_overrides(id_column, image_column, text_column, allow_outside_paths), on_error=on_error.value)
    output.warn_skipped(dataset.skipped)
    features_store = open_store(store)
    with output.progress_bar("features") as progress:
        dataset, skipped = usable_items(
            loaded, dataset, features_store, on_error=on_error.value, device=device.value, progress=progress, tta=tta,
        )
    output.warn_skipped(skipped)
    records = predict(loaded, dataset, store=features_store, explain=explain, device=device.value, dataset_name=dataset_name, tta=tta)
    write_predictions(records, out, fmt=infer_format(out, fmt))
