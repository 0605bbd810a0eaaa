"""mmtk extract-features: run backbones over a dataset into the feature store."""

from __future__ import annotations

from enum import Enum
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

  mmtk extract-features examples/memes/train.jsonl --backbone efficientnet-lite0 --backbone minilm

  mmtk extract-features memes.jsonl --backbone clip:ViT-B-32@laion2b_s34b_b79k --device cuda

  mmtk extract-features listings.csv --backbone minilm --column title --on-error skip --json

  mmtk extract-features memes.jsonl --backbone minilm --backbone efficientnet-lite0 --sequence

  mmtk extract-features clips.csv --backbone efficientnet-lite0 --column video --fps 1 --backbone mfcc

  mmtk extract-features memes.jsonl --backbone efficientnet-lite0 --engine ray --address auto --workers 4
"""


class Engine(str, Enum):
    local = "local"
    ray = "ray"



def parse_batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise UsageError(f"--batch-size {value!r} is not a positive integer", "pass a number such as 16, or auto")


def ray_options(engine: Engine, address: str | None, gpus_per_worker: float | None) -> dict:
    """The Ray executor's options; refused with the local engine, which has none."""
    given = {"address": address, "gpus_per_worker": gpus_per_worker}
    if engine is Engine.local:
        if address is not None or gpus_per_worker is not None:
            flag = "--address" if address is not None else "--gpus-per-worker"
            raise UsageError(f"{flag} applies to the Ray engine only", f"add --engine ray, or drop {flag}")
        return {}
    if gpus_per_worker is not None and not 0 < gpus_per_worker <= 64:
        raise UsageError(f"--gpus-per-worker {gpus_per_worker} must be above 0", "pass e.g. 1, or 0.5 to put two actors on a GPU")
    return {name: value for name, value in given.items() if value is not None}


@handle_errors
def extract_features_command(
    data: Data,
    backbone: Annotated[
        list[str],
        typer.Option("--backbone", "-b", help="Backbone name, repeatable (see `mmtk list backbones`).", show_default=False),
    ],
    column: Annotated[
        Optional[str], typer.Option("--column", help="Column to read instead of the backbone modality's default.")
    ] = None,
    sequence: Annotated[
        bool, typer.Option("--sequence", help="Store the sequence (token states, spatial grid) instead of the pooled vector; train reads it as BACKBONE:seq.")
    ] = False,
    max_length: MaxLength = 128,
    fps: Fps = 1.0,
    frames: Frames = None,
    store: Store = None,
    batch_size: Annotated[str, typer.Option("--batch-size", help="Items per forward pass, or auto.")] = "auto",
    device: DeviceOpt = "auto",
    num_workers: Annotated[
        Optional[int],
        typer.Option(
            "--num-workers", "--workers",
            help="Workers: threads sharing the model on CPU (processes for audio backbones), decode workers on CUDA (default: one per core); with --engine ray, model actors (default: one per CPU, or per GPU with --gpus-per-worker).",
        ),
    ] = None,
    # Not `engine`: that parameter name means an OCR engine elsewhere in the CLI.
    compute_engine: Annotated[
        Engine, typer.Option("--engine", help="Where the backbone runs: this machine, or a Ray cluster (pip install 'mmtk[ray]').")
    ] = Engine.local,
    address: Annotated[
        Optional[str],
        typer.Option("--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT (default: a local Ray started for this run).", show_default=False),
    ] = None,
    gpus_per_worker: Annotated[
        Optional[float], typer.Option("--gpus-per-worker", help="GPUs each Ray actor holds, e.g. 1 or 0.5 (default: none, CPU actors).", show_default=False)
    ] = None,
    on_error: OnErrorOpt = OnError.fail,
    id_column: IdColumn = None,
    image_column: ImageColumn = None,
    text_column: TextColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Compute backbone features for every item of DATA and cache them in the store.

    Only items whose features are not stored yet are computed, so re-running is cheap and a killed run resumes where it stopped.
    """
    from mmtk.backbones import resolve_backbone
    from mmtk.data import read_dataset
    from mmtk.extract import extract_features

    output.set_quiet(quiet)
    if any(spec.strip() == "tabular" for spec in backbone):
        from mmtk.tabular import not_extracted_error

        raise not_extracted_error()
    sizes = parse_batch_size(batch_size)
    options = feature_options(max_length, fps, frames)
    engine_options = ray_options(compute_engine, address, gpus_per_worker)
    configs = [resolve_backbone(spec) for spec in backbone]
    required = sorted({column or config.modality for config in configs})
    dataset = read_dataset(
        data, require=required, on_error=on_error.value, **column_overrides(id_column, image_column, text_column, allow_outside_paths)
    )
    feature_store = open_store(store)
    reports = []
    for config in configs:
        with output.progress_bar(f"{config.spec}") as progress:
            reports.append(
                extract_features(
                    dataset,
                    config,
                    store=feature_store,
                    column=column,
                    sequence=sequence,
                    options=options,
                    batch_size=sizes,
                    device=device.value,
                    num_workers=num_workers,
                    on_error=on_error.value,
                    progress=progress,
                    engine=compute_engine.value,
                    engine_options=engine_options,
                )
            )
    skipped = list(dataset.skipped) + [item for report in reports for item in report.skipped]
    output.warn_skipped(skipped)
    if json_out:
        output.print_json(
            {
                "dataset": str(dataset.source),
                "store": str(feature_store.root),
                "items": len(dataset),
                "skipped": [item.one_line() for item in skipped],
                "backbones": [
                    {
                        "backbone": r.backbone,
                        "fingerprint": r.fingerprint,
                        "total": r.total,
                        "unique": r.unique,
                        "cached": r.cached,
                        "computed": r.computed,
                        "skipped": len(r.skipped),
                        "seconds": round(r.seconds, 3),
                        "engine": r.engine,
                    }
                    for r in reports
                ],
            }
        )
        return
    from rich.table import Table

    table = Table(title=f"{dataset.source} -> {feature_store.root}")
    for name in ("backbone", "items", "unique", "cached", "computed", "skipped", "seconds"):
        table.add_column(name, justify="left" if name == "backbone" else "right")
    for r in reports:
        table.add_row(r.backbone, str(r.total), str(r.unique), str(r.cached), str(r.computed), str(len(r.skipped)), f"{r.seconds:.1f}")
    output.stdout().print(table)
