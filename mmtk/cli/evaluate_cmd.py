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
    AllowOutsidePaths, Data, DeviceOpt, IdColumn, ImageColumn, OnError, OnErrorOpt, Json, Quiet, RunDir, Store, TextColumn, Tta, column_overrides,
    open_store,
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

  mmtk evaluate runs/memotion test.csv --suite memotion --fail-under task_a.macro_f1=0.3

  mmtk evaluate runs/genres test.jsonl --suite mmimdb --tune-threshold --val dev.jsonl

  mmtk evaluate runs/gmu examples/memes/test.jsonl --suite examples/suites/memes.toml

  mmtk evaluate runs/gmu test.jsonl --tta ten-crop --json
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
    suite_name: Annotated[
        Optional[str],
        typer.Option(
            "--suite",
            help="Score as a shared task does: a suite name (mmtk list suites) or a suite file (.toml/.json, see examples/suites/memes.toml).",
            show_default=False,
        ),
    ] = None,
    suite_map: Annotated[
        Optional[list[str]],
        typer.Option("--suite-map", help="TASK=COLUMN (or SUITE_COLUMN=COLUMN): the data column holding a suite task's labels. Repeatable.", show_default=False),
    ] = None,
    tune_threshold: Annotated[
        bool, typer.Option("--tune-threshold", help="Multi-label suite tasks: decide each label at the threshold with the best F1 on --val.")
    ] = False,
    val: Annotated[Optional[str], typer.Option("--val", help="Validation data for --tune-threshold.", show_default=False)] = None,
    tta: Tta = "none",
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
    With --suite the run is scored as that shared task defines (one entry per suite task).
    """
    from mmtk.evaluate import collect_predictions, evaluate
    from mmtk.inference import open_run, read_for_run, usable_items
    from mmtk.metrics import check_threshold_names, check_thresholds, parse_fail_under

    output.set_quiet(quiet)
    from mmtk.report import check_destination

    if report is not None:
        check_destination(report)
    thresholds = [parse_fail_under(spec) for spec in fail_under or []]
    suite = _suite(suite_name, suite_map, tune_threshold, val)
    loaded = open_run(run, device.value)
    # A mistyped name (macro_f=0.7) or an unmatched suite task is refused now, not after
    # minutes of extraction.
    known = suite.metric_names() if suite else None
    check_threshold_names(thresholds, known or {task: loaded.kind(task) for task in loaded.tasks})
    if suite:
        suite.check_run(loaded)
    columns = column_overrides(id_column, image_column, text_column, allow_outside_paths)

    def usable(path):
        dataset = read_for_run(loaded, path, columns, require_labels=True, on_error=on_error.value, dataset_name=dataset_name)
        output.warn_skipped(dataset.skipped)
        if suite:
            suite.check_data(dataset)
        with output.progress_bar("features") as progress:
            dataset, skipped = usable_items(
                loaded, dataset, features_store, on_error=on_error.value, device=device.value, progress=progress, tta=tta,
            )
        output.warn_skipped(skipped)
        return dataset

    features_store = open_store(store)
    dataset = usable(data)
    if tune_threshold:
        suite = suite.tuned([collect_predictions(loaded, usable(val), store=features_store, device=device.value, dataset_name=dataset_name, tta=tta)])
    with _plots_folder(plots, report) as plots_dir:
        result = evaluate(
            loaded, dataset, store=features_store, plots_dir=plots_dir, device=device.value, dataset_name=dataset_name, projection=projection.value,
            scorer=suite, tta=tta,
        )
        if report is not None:
            from mmtk.plots import LEARNING_CURVES
            from mmtk.report import write_report

            figures = list(result.get("plots", []))
            if (run / LEARNING_CURVES).is_file():  # drawn by train --plots
                figures.append((f"{run / LEARNING_CURVES} (from training)", run / LEARNING_CURVES))
            write_report(report, result, plots=figures, runs=[run], command=shlex.join(["mmtk", *sys.argv[1:]]))
        if plots is None:
            result.pop("plots", None)  # drawn for the report only, in a folder now gone
    misses = check_thresholds(result, thresholds, known)
    if json_out:
        output.print_json(result)
    else:
        from mmtk.cli.tables import metrics_table, suite_table

        table = suite_table if suite else metrics_table
        output.stdout().print(table(result, title=f"{run} on {data}" + (f" ({result['suite']})" if suite else "") + (f" (--tta {tta})" if "tta" in result else "")))
        if "distillation" in result:
            distilled = result["distillation"]
            output.stdout().print(
                f"against its teacher {distilled['teacher']}: agreement {distilled['agreement']:.3f}, "
                f"KL to teacher {distilled['kl_to_teacher']:.4f}, consistency ratio {distilled['consistency_ratio']:.3f}",
                highlight=False,
            )
        for name, entry in (result["tasks"] if "tasks" in result else {result["task"]: result}).items():
            if "thresholds" in entry:  # tuned on --val
                cuts = ", ".join(f"{label} {cut:.2f}" for label, cut in entry["thresholds"].items())
                output.stdout().print(f"{name} thresholds (tuned on {val}): {cuts}", highlight=False, markup=False)
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


def _suite(name, mapping, tune_threshold: bool, val):
    """The ``--suite`` scorer, or None; the options that only work with one are refused without it."""
    from mmtk.errors import UsageError

    if name is None:
        for given, option in ((mapping, "--suite-map"), (tune_threshold, "--tune-threshold"), (val, "--val")):
            if given:
                raise UsageError(f"{option} applies to a metric suite", "add --suite NAME (mmtk list suites)")
        return None
    if tune_threshold != (val is not None):
        raise UsageError(
            "--tune-threshold needs --val DATA" if tune_threshold else "--val is only read by --tune-threshold",
            "give both: --tune-threshold --val DEV_DATA",
        )
    from mmtk.suites import get_suite, parse_mapping

    suite = get_suite(name, parse_mapping(mapping))
    if tune_threshold:
        suite.tuned([])  # refuses a suite without multi-label tasks before any work
    return suite
