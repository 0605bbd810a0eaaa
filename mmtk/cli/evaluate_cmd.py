"""mmtk evaluate: score a run on a labelled dataset, optionally gating on thresholds; with
several runs, compare them (``mmtk.comparison``)."""

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
    AllowOutsidePaths, Data, DatasetName, DeviceOpt, IdColumn, ImageColumn, OnError, OnErrorOpt, Json, Quiet, Store, TextColumn, Tta, column_overrides,
    open_store,
)
from mmtk.errors import CheckFailed, UsageError


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

  mmtk evaluate runs/gmu examples/memes/test.jsonl --bootstrap 1000 --json

  mmtk evaluate 'runs/cmp/*' examples/memes/test.jsonl --seed 1 --report comparison.html

  mmtk evaluate runs/gmu test.jsonl --tta ten-crop --json
"""

#: Resamples of a comparison of several runs when --bootstrap is not given.
DEFAULT_BOOTSTRAP = 1000

# Not required for click: `mmtk evaluate runs/gmu` would give the one word to DATA and
# say "missing argument 'run'"; the command says what is missing instead.
Runs = Annotated[
    Optional[list[Path]],
    typer.Argument(
        help="Run directory written by `mmtk train`. Several (or a glob such as 'runs/cmp/*', quoted or not) compare the runs "
        "side by side on DATA: one row per run, 95% bootstrap intervals, and a paired bootstrap test of each run against the first.",
        show_default=False,
    ),
]


@handle_errors
def evaluate_command(
    run: Runs = None,
    data: Data = ...,
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
    bootstrap: Annotated[
        Optional[int],
        typer.Option(
            "--bootstrap",
            help="Resamples of the items (drawn with replacement) for 95% percentile intervals of every metric, and with several "
            "runs for the paired test against the first. Default: 1000 with several runs, none with one.",
            min=1, show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples (the same seed, the same intervals).")] = 0,
    dataset_name: DatasetName = None,
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
    """Evaluate RUN on DATA with the shared-task metrics, or compare several runs.

    Features missing from the store are extracted first with the run's own backbones.
    With --suite the run is scored as that shared task defines (one entry per suite task).
    Several runs (trained on any features or models, predicting the same tasks) are
    scored on the items all of them have; --fail-under then applies to each run.
    """
    from mmtk.comparison import expand_runs
    from mmtk.metrics import parse_fail_under
    from mmtk.report import check_destination

    output.set_quiet(quiet)
    if not run:
        raise UsageError(f"evaluate got {data} only: it takes one or more run directories, then DATA", f"e.g. mmtk evaluate {data} test.jsonl")
    if report is not None:
        check_destination(report)
    thresholds = [parse_fail_under(spec) for spec in fail_under or []]
    suite = _suite(suite_name, suite_map, tune_threshold, val)
    runs, skipped = expand_runs(run)
    for path in skipped:
        output.log(f"skipped {path}: not a run directory")
    columns = column_overrides(id_column, image_column, text_column, allow_outside_paths)
    options = {
        "suite": suite, "val": val, "plots": plots, "report": report, "projection": projection.value, "seed": seed, "json_out": json_out,
        "store": store, "device": device.value, "columns": columns, "on_error": on_error.value, "dataset_name": dataset_name, "tta": tta,
    }
    if len(runs) > 1:
        _compare(runs, data, thresholds, bootstrap=bootstrap or DEFAULT_BOOTSTRAP, **options)
    else:
        _evaluate_one(runs[0], data, thresholds, bootstrap=bootstrap, **options)


def _evaluate_one(
    run, data, thresholds, *, suite, val, plots, report, projection, bootstrap, seed, json_out, store, device, columns, on_error, dataset_name, tta,
) -> None:
    from mmtk.evaluate import collect_predictions, evaluate
    from mmtk.inference import open_run, read_for_run, usable_items
    from mmtk.metrics import check_threshold_names, check_thresholds

    loaded = open_run(run, device)
    # A mistyped name (macro_f=0.7) or an unmatched suite task is refused now, not after
    # minutes of extraction.
    known = suite.metric_names() if suite else None
    check_threshold_names(thresholds, known or {task: loaded.kind(task) for task in loaded.tasks})
    if suite:
        suite.check_run(loaded)

    def usable(path):
        dataset = read_for_run(loaded, path, columns, require_labels=True, on_error=on_error, dataset_name=dataset_name)
        output.warn_skipped(dataset.skipped)
        if suite:
            suite.check_data(dataset)
        with output.progress_bar("features") as progress:
            dataset, skipped = usable_items(loaded, dataset, features_store, on_error=on_error, device=device, progress=progress, tta=tta)
        output.warn_skipped(skipped)
        return dataset

    features_store = open_store(store)
    dataset = usable(data)
    if suite and val is not None:  # --tune-threshold
        suite = suite.tuned([collect_predictions(loaded, usable(val), store=features_store, device=device, dataset_name=dataset_name, tta=tta)])
    with _plots_folder(plots, report) as plots_dir:
        result = evaluate(
            loaded, dataset, store=features_store, plots_dir=plots_dir, device=device, dataset_name=dataset_name, projection=projection,
            scorer=suite, bootstrap=bootstrap, seed=seed, tta=tta,
        )
        if report is not None:
            from mmtk.report import write_report

            write_report(report, result, plots=list(result.get("plots", [])) + _learning_curves(run), runs=[run], command=_command_line())
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


def _compare(
    runs, data, thresholds, *, suite, val, plots, report, projection, bootstrap, seed, json_out, store, device, columns, on_error, dataset_name, tta,
) -> None:
    """Several runs: each read, its missing features extracted and its model run once,
    then ``compare_predictions``; one table per task, one row per run."""
    from mmtk.comparison import check_same_tasks, compare_predictions, run_labels
    from mmtk.evaluate import collect_predictions
    from mmtk.inference import open_run, read_for_run, usable_items
    from mmtk.metrics import check_threshold_names, check_thresholds
    from mmtk.models.inference import has_class_queries
    from mmtk.multidata import pick_tasks

    if "-" in (data, val):
        raise UsageError("DATA - (standard input) can be read once, and each run reads it", "save the data to a file to compare several runs")
    names, labels = [str(run) for run in runs], run_labels(runs)
    loaded = [open_run(run, device) for run in runs]
    # Cheap checks first (names, columns, tasks), before any feature is extracted.
    known = suite.metric_names() if suite else None
    for each in loaded:
        check_threshold_names(thresholds, known or {task: each.kind(task) for task in each.tasks})
        if suite:
            suite.check_run(each)
    features_store = open_store(store)
    warned: set[str] = set()  # several runs skip the same bad rows: say so once

    def read(each, path):
        return read_for_run(each, path, columns, require_labels=True, on_error=on_error, dataset_name=dataset_name)

    def usable(each, dataset, label):
        if suite:
            suite.check_data(dataset)
        with output.progress_bar(f"features ({label})") as progress:
            kept, skipped = usable_items(each, dataset, features_store, on_error=on_error, device=device, progress=progress, tta=tta)
        output.warn_skipped([item for item in [*dataset.skipped, *skipped] if item.one_line() not in warned])
        warned.update(item.one_line() for item in [*dataset.skipped, *skipped])
        return kept

    datasets = [read(each, data) for each in loaded]
    if not suite:  # a suite's tasks are its own, the same for every run it matched
        check_same_tasks(names, [pick_tasks(each, dataset, dataset_name) for each, dataset in zip(loaded, datasets)])
    plotting = plots is not None or report is not None
    predictions = [
        collect_predictions(
            each, usable(each, dataset, label), store=features_store, device=device, dataset_name=dataset_name,
            explain=plotting and callable(getattr(each.model, "explain", None)),
            class_queries=plotting and has_class_queries(each.model) and tta == "none", tta=tta,
        )
        for label, each, dataset in zip(labels, loaded, datasets)
    ]
    if suite and val is not None:  # --tune-threshold: thresholds of each run, from its own validation outputs
        suite = suite.tuned([
            collect_predictions(each, usable(each, read(each, val), label), store=features_store, device=device, dataset_name=dataset_name, tta=tta)
            for label, each in zip(labels, loaded)
        ])
    result = compare_predictions(predictions, names=names, data=data, scorer=suite, bootstrap=bootstrap, seed=seed, notify=output.warn)
    with _plots_folder(plots, report) as plots_dir:
        if plots_dir is not None:
            from mmtk.plots import plot_predictions

            for label, entry, each in zip(labels, result["runs"], predictions):
                folder = Path(plots_dir) / label.replace("/", "_")
                entry["result"]["plots"] = [str(path) for path in plot_predictions(each, folder, projection=projection)]
        if report is not None:
            from mmtk.report import write_report

            figures = [(f"{label}: {Path(path).name}", path) for label, entry in zip(labels, result["runs"]) for path in entry["result"].get("plots", [])]
            figures += [figure for run in runs for figure in _learning_curves(run)]
            write_report(report, result, plots=figures, runs=list(runs), command=_command_line())
        if plots is None:
            for entry in result["runs"]:
                entry["result"].pop("plots", None)  # drawn for the report only, in a folder now gone
    misses = [f"{entry['run']}: {miss}" for entry in result["runs"] for miss in check_thresholds(entry["result"], thresholds, known)]
    if json_out:
        output.print_json(result)
    else:
        from mmtk.cli.tables import print_tables, runs_tables

        print_tables(runs_tables(result, labels))
        for entry in result["runs"]:
            for path in entry["result"].get("plots", []):
                output.stdout().print(f"plot: {path}", highlight=False)
        if report is not None:
            output.stdout().print(f"report: {report}", highlight=False)
    if misses:
        raise CheckFailed("; ".join(misses))


def _learning_curves(run) -> list:
    """The run's learning curves (drawn by ``train --plots``) as a report figure, if any."""
    from mmtk.plots import LEARNING_CURVES

    path = Path(run) / LEARNING_CURVES
    return [(f"{path} (from training)", path)] if path.is_file() else []


def _command_line() -> str:
    return shlex.join(["mmtk", *sys.argv[1:]])


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
