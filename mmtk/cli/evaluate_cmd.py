"""mmtk evaluate: score a run on a labelled dataset, optionally gating on thresholds."""

from __future__ import annotations

import shlex
import sys
import tempfile
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, Data, DeviceOpt, IdColumn, ImageColumn, OnError, OnErrorOpt, Json, Quiet, RunDir, Store, TextColumn, column_overrides, open_store,
)
from mmtk.errors import CheckFailed

class Projection(str, Enum):
    """``mmtk.plots.models.PROJECTIONS`` (not imported here: it would load numpy for --help)."""

    pca = "pca"
    tsne = "tsne"


EXAMPLE = """Examples:

  mmtk evaluate runs/gmu examples/memes/test.jsonl

  mmtk evaluate runs/gmu test.jsonl --json --fail-under macro_f1=0.70 --plots plots/

  mmtk evaluate runs/multitask dev.csv --fail-under sentiment.macro_f1=0.5

  mmtk evaluate runs/gmu examples/memes/test.jsonl --plots plots/ --report report.html
"""


@handle_errors
def evaluate_command(
    run: RunDir,
    data: Data,
    plots: Annotated[
        Optional[Path],
        typer.Option(
            "--plots",
            help="Write PNG plots here: confusion matrices, ROC/PR curves, reliability (ECE), F1 per class; modality weights "
            "per class (models with gates); a class-query decoder's outputs in 2-D.",
        ),
    ] = None,
    report: Annotated[
        Optional[Path],
        typer.Option("--report", help="Write one self-contained HTML page: the tables, the plots (and the run's learning_curves.png), its config, this command line.", show_default=False),
    ] = None,
    projection: Annotated[Projection, typer.Option("--projection", help="How a class-query decoder's outputs are drawn in 2-D.")] = Projection.pca,
    fail_under: Annotated[
        Optional[list[str]],
        typer.Option(
            "--fail-under",
            help="METRIC=VALUE or TASK.METRIC=VALUE: exit 1 when the metric is below VALUE; for the error metrics "
            "rmse and mae VALUE is a ceiling (exit 1 when above). Names are checked before any work. Repeatable.",
        ),
    ] = None,
    dataset_name: Annotated[
        Optional[str],
        typer.Option("--dataset-name", help="A run trained on several datasets: use this dataset's heads (see the run's config.json).", show_default=False),
    ] = None,
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
    """Evaluate RUN on DATA with the shared-task metrics.

    Features missing from the store are extracted first with the run's own backbones.
    """
    from mmtk.evaluate import evaluate
    from mmtk.inference import open_run, read_for_run, usable_items
    from mmtk.metrics import check_threshold_names, check_thresholds, parse_fail_under

    output.set_quiet(quiet)
    from mmtk.report import check_destination

    if report is not None:
        check_destination(report)
    thresholds = [parse_fail_under(spec) for spec in fail_under or []]
    loaded = open_run(run, device.value)
    # A mistyped name (macro_f=0.7) is refused now, not after minutes of extraction.
    check_threshold_names(thresholds, {task: loaded.kind(task) for task in loaded.tasks})
    dataset = read_for_run(
        loaded, data, column_overrides(id_column, image_column, text_column, allow_outside_paths), require_labels=True, on_error=on_error.value,
        dataset_name=dataset_name,
    )
    output.warn_skipped(dataset.skipped)
    features_store = open_store(store)
    with output.progress_bar("features") as progress:
        dataset, skipped = usable_items(loaded, dataset, features_store, on_error=on_error.value, device=device.value, progress=progress)
    output.warn_skipped(skipped)
    with _plots_folder(plots, report) as plots_dir:
        result = evaluate(loaded, dataset, store=features_store, plots_dir=plots_dir, device=device.value, dataset_name=dataset_name, projection=projection.value)
        if report is not None:
            from mmtk.plots import LEARNING_CURVES
            from mmtk.report import write_report

            figures = list(result.get("plots", []))
            if (run / LEARNING_CURVES).is_file():  # drawn by train --plots
                figures.append((f"{run / LEARNING_CURVES} (from training)", run / LEARNING_CURVES))
            write_report(report, result, plots=figures, runs=[run], command=shlex.join(["mmtk", *sys.argv[1:]]))
        if plots is None:
            result.pop("plots", None)  # drawn for the report only, in a folder now gone
    misses = check_thresholds(result, thresholds)
    if json_out:
        output.print_json(result)
    else:
        from mmtk.cli.tables import metrics_table

        output.stdout().print(metrics_table(result, title=f"{run} on {data}"))
        if "distillation" in result:
            report = result["distillation"]
            output.stdout().print(
                f"against its teacher {report['teacher']}: agreement {report['agreement']:.3f}, "
                f"KL to teacher {report['kl_to_teacher']:.4f}, consistency ratio {report['consistency_ratio']:.3f}",
                highlight=False,
            )
        for path in result.get("plots", []):
            output.stdout().print(f"plot: {path}", highlight=False)
        if report is not None:
            output.stdout().print(f"report: {report}", highlight=False)
    if misses:
        raise CheckFailed("; ".join(misses))


@contextmanager
def _plots_folder(plots: Path | None, report: Path | None) -> Iterator[Path | None]:
    """Where evaluate draws: ``--plots``, else for ``--report`` alone a temporary folder
    (the report embeds the images), else nowhere."""
    if plots is not None or report is None:
        yield plots
        return
    with tempfile.TemporaryDirectory(prefix="mmtk-plots-") as folder:
        yield Path(folder)
