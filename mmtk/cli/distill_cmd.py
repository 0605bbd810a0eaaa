"""``mmtk distill``: a thin layer over ``mmtk.distill.recipe.distill``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, DeviceOpt, Fps, Frames, IdColumn, ImageColumn, Json, MaxLength, OnError, OnErrorOpt, Quiet, Store, TextColumn,
    column_overrides, feature_options, open_store,
)
from mmtk.cli.train_cmd import split_features, split_pairs
from mmtk.errors import UsageError

EXAMPLE = """Examples:

  mmtk distill memes.jsonl --teacher visualbert --teacher-weights minilm --student tinybert --msd meta --features efficientnet-lite0:seq --task label --out runs/student

  mmtk distill examples/memes/train.jsonl --teacher gmu --student concat --msd importance --features efficientnet-lite0,minilm --task label:binary --out runs/kd-importance

  mmtk distill examples/memes/train.jsonl --teacher runs/gmu --student gmu --msd meta --features efficientnet-lite0,minilm --out runs/kd-meta
"""


def _floats(values: list[str] | None, option: str) -> dict[str, float]:
    pairs = {}
    for key, text in split_pairs(values, option).items():
        try:
            pairs[key] = float(text)
        except ValueError:
            raise UsageError(f"{option} {key}={text}: the value is not a number", f"write e.g. {option} {key}=0.5") from None
    return pairs


@handle_errors
def distill_command(
    data: Annotated[str, typer.Argument(help="Training dataset (.csv, .jsonl or a folder).", show_default=False)],
    teacher: Annotated[str, typer.Option("--teacher", help="A teacher run directory, or a model name to fine-tune here first (kept in OUT/teacher).", show_default=False)],
    student: Annotated[str, typer.Option("--student", help="The student model (`mmtk list models`); it must ignore absent modalities for MSD.", show_default=False)],
    features: Annotated[str, typer.Option("--features", "-f", help="The student's features (comma-separated, as for train).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The student's run directory.", show_default=False)],
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="COLUMN[:KIND], repeatable (default: the given teacher run's tasks).", show_default=False)] = None,
    msd: Annotated[str, typer.Option("--msd", help="none (KD) | population | importance | correctness | meta: how unimodal views are weighted.")] = "none",
    lam: Annotated[float, typer.Option("--lambda", help="Weight of the label loss; 1 - lambda weighs the distillation terms.")] = 0.5,
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature of the KL terms (scaled by its square).")] = 4.0,
    msd_weight: Annotated[Optional[list[str]], typer.Option("--msd-weight", help="VIEW=W population weight (views: full, only:MODALITY); without any, a grid on the validation split picks them.", show_default=False)] = None,
    hidden_loss: Annotated[Optional[list[str]], typer.Option("--hidden-loss", help="NAME=BETA hidden-state loss added to the objective: fitnet, rkd_distance, rkd_angle, sp.", show_default=False)] = None,
    teacher_features: Annotated[Optional[str], typer.Option("--teacher-features", help="Features of a teacher trained here (default: --features).", show_default=False)] = None,
    teacher_weights: Annotated[Optional[str], typer.Option("--teacher-weights", help="Pretrained weights of a teacher trained here (NAME or PATH; minilm for the packaged offline weights).", show_default=False)] = None,
    teacher_arg: Annotated[Optional[list[str]], typer.Option("--teacher-arg", help="KEY=VALUE parameter of a teacher trained here, repeatable.", show_default=False)] = None,
    student_arg: Annotated[Optional[list[str]], typer.Option("--student-arg", help="KEY=VALUE parameter of the student, repeatable.", show_default=False)] = None,
    student_layers: Annotated[Optional[int], typer.Option("--student-layers", min=1, help="Encoder layers of a transformer student (same as --student-arg layers=N).", show_default=False)] = None,
    student_hidden: Annotated[Optional[int], typer.Option("--student-hidden", min=1, help="Hidden width of the student (same as --student-arg hidden=N).", show_default=False)] = None,
    lookahead: Annotated[str, typer.Option("--lookahead", help="--msd meta look-ahead: the student's task heads only, or all its parameters (Meta-Weight-Net's exact step, 2-3x dearer).")] = "heads",
    meta_lr: Annotated[float, typer.Option("--meta-lr", min=0.0, help="Adam learning rate of the meta-learner (--msd meta).")] = 1e-3,
    val: Annotated[Optional[str], typer.Option("--val", help="Validation dataset (else a split of DATA); also the meta set.")] = None,
    val_split: Annotated[float, typer.Option("--val-split", min=0.05, max=0.9, help="Fraction of DATA held out.")] = 0.2,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Maximum epochs (default as for train).", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help="AdamW learning rate of teacher and student. Default: each model's, else 0.001.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Training batch size.")] = 64,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Epochs without validation improvement before stopping.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
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
    """Distil a teacher into a small student with modality-specific distillation (MSD).

    The teacher's outputs on the full input and on each modality alone are cached beside it, so later variants cost only the student.
    """
    from mmtk.data import read_dataset
    from mmtk.distill.recipe import distill
    from mmtk.features import parse_feature_refs, required_columns
    from mmtk.training.heap import keep_freed_memory

    output.set_quiet(quiet)
    options = feature_options(max_length, fps, frames)
    refs = parse_feature_refs(split_features(features), options)
    teacher_refs = parse_feature_refs(split_features(teacher_features), options) if teacher_features else None
    student_args = {
        **split_pairs(student_arg, "--student-arg"),
        **({"layers": str(student_layers)} if student_layers is not None else {}),
        **({"hidden": str(student_hidden)} if student_hidden is not None else {}),
    }
    teacher_args = {**split_pairs(teacher_arg, "--teacher-arg"), **({"weights": teacher_weights} if teacher_weights else {})}
    columns = column_overrides(id_column, image_column, text_column, allow_outside_paths)
    needed = list(dict.fromkeys(required_columns(refs) + (required_columns(teacher_refs) if teacher_refs else [])))
    dataset = read_dataset(data, require=needed, on_error=on_error.value, **columns)
    val_dataset = read_dataset(val, require=needed, on_error=on_error.value, **columns) if val else None
    output.warn_skipped(dataset.skipped + (val_dataset.skipped if val_dataset else []))
    keep_freed_memory()  # training reuses each step's buffers (mmtk/training/heap.py)
    with output.progress_bar("training") as progress:
        report = distill(
            dataset, teacher=teacher, student=student, features=refs, tasks=task, out=out, store=open_store(store), msd=msd,
            lam=lam, temperature=temperature, msd_weights=_floats(msd_weight, "--msd-weight"),
            hidden_losses=_floats(hidden_loss, "--hidden-loss"), teacher_features=teacher_refs, teacher_args=teacher_args or None,
            student_args=student_args or None, lookahead=lookahead, meta_lr=meta_lr, val_dataset=val_dataset,
            device=device.value, progress=progress, val_split=val_split, epochs=epochs, lr=lr, batch_size=batch_size,
            patience=patience, seed=seed,
        )
    summary = report.to_json()
    if json_out:
        output.print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    from mmtk.cli.tables import metrics_table

    console = output.stdout()
    teacher = summary["teacher"] + (" (trained here)" if summary["teacher_trained"] else "")
    cached = "read from its cache" if summary["teacher_outputs_cached"] else "computed and cached"
    console.print(f"student run written to {summary['run']}; teacher {teacher}, its outputs {cached}", highlight=False)
    console.print(
        f"best epoch {summary['best_epoch']} of {summary['epochs_run']}, {summary['train_items']} training / "
        f"{summary['val_items']} validation items, {summary['seconds']:.1f} s",
        highlight=False,
    )
    if "population" in summary:
        weights = ", ".join(f"{view} {w:g}" for view, w in summary["population"].items())
        console.print(f"population weights: {weights}", highlight=False)
    console.print(metrics_table(summary["val_metrics"], title="student validation metrics (best epoch)"))
    speed = summary["speed"]
    for role in ("teacher", "student"):
        console.print(
            f"{role}: {speed[role]['parameters']:,} parameters, {speed[role]['items_per_second']:,.0f} items/s", highlight=False
        )
    console.print(f"student speed-up: {speed['speedup']:.1f}x (inference on {speed['items']} items, one CPU thread)", highlight=False)
