"""Option definitions shared by several commands, so each is spelled and documented once."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class OnError(str, Enum):
    fail = "fail"
    skip = "skip"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class PredictFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


Store = Annotated[
    Optional[Path],
    typer.Option("--store", help="Feature store directory (default: $MMTK_STORE, else ~/.cache/mmtk).", show_default=False),
]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where backbones and models run: auto picks CUDA when available.")]
# evaluate and predict: which heads of a run trained on several datasets to use.
DatasetName = Annotated[
    Optional[str],
    typer.Option("--dataset-name", help="A run trained on several datasets: use this dataset's heads (see the run's config.json).", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No logs or progress bars.")]
OnErrorOpt = Annotated[
    OnError, typer.Option("--on-error", help="fail: stop at the first bad item; skip: skip bad items and list them.")
]
Tta = Annotated[
    str,
    typer.Option(
        "--tta",
        help="Test-time augmentation: none, or ten-crop (corners, centre and their mirrors of each image feature's "
        "input, log-probabilities averaged; the views' features are cached in the store). See mmtk list tta.",
    ),
]
IdColumn = Annotated[Optional[str], typer.Option("--id-column", help="Column holding item ids (default: id).")]
ImageColumn = Annotated[Optional[str], typer.Option("--image-column", help="Column holding image paths (default: image or img).")]
TextColumn = Annotated[Optional[str], typer.Option("--text-column", help="Column holding the text (default: text).")]
Data = Annotated[
    str, typer.Argument(help="Dataset: a .csv, .jsonl or .parquet file, a folder, or - for JSONL on stdin.", show_default=False)
]
AllowOutsidePaths = Annotated[
    bool,
    typer.Option(
        "--allow-outside-paths",
        help="Accept relative media paths that leave the dataset's folder; they are refused by default, absolute paths never are.",
    ),
]
MaxLength = Annotated[
    int, typer.Option("--max-length", help="Tokens kept by text backbones' sequence form (:seq / --sequence) and word pieces (tokens@COLUMN).", min=2)
]
Fps = Annotated[
    float, typer.Option("--fps", help="Video frames sampled per second for image backbones over a video column.", min=0.001)
]
Frames = Annotated[
    Optional[int],
    typer.Option("--frames", help="Instead of --fps: the first frame of each of K equal chunks of the video.", min=1, show_default=False),
]
RunDir = Annotated[Path, typer.Argument(help="Run directory written by `mmtk train`.", show_default=False)]


def column_overrides(
    id_column: str | None, image_column: str | None, text_column: str | None, allow_outside_paths: bool = False
) -> dict:
    """Keyword arguments for ``read_dataset`` from the shared dataset options (the column
    names, and --allow-outside-paths where the command has it)."""
    return {
        "id_column": id_column, "image_column": image_column, "text_column": text_column,
        "allow_outside_paths": allow_outside_paths,
    }


def feature_options(max_length: int, fps: float, frames: int | None):
    """The extraction options behind --max-length/--fps/--frames (validated)."""
    from mmtk.backbones.base import FeatureOptions

    return FeatureOptions(max_length=max_length, fps=fps, frames=frames)


def open_store(store: Path | None):
    from mmtk.store import FeatureStore

    return FeatureStore(store)
