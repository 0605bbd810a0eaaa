"""mmtk evaluate: score a run on a labelled dataset, optionally gating on thresholds; with
several runs, compare them (``mmtk.comparison``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, Data, DeviceOpt, IdColumn, ImageColumn, OnError, OnErrorOpt, Json, Quiet, Store, TextColumn, column_overrides, open_store,
)
from mmtk.errors import CheckFailed, UsageError

EXAMPLE = """Examples:

  mmtk evaluate runs/gmu examples/memes/test.jsonl

  mmtk evaluate runs/gmu test.jsonl --json --fail-under macro_f1=0.70 --plots plots/

  mmtk evaluate runs/multitask dev.csv --fail-under sentiment.macro_f1=0.5

  mmtk evaluate runs/gmu examples/memes/test.jsonl --bootstrap 1000 --json

  mmtk evaluate 'runs/cmp/*' examples/memes/test.jsonl --seed 1
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
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write PNG plots (confusion matrix, ROC/PR curves) here.")] = None,
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
    """Evaluate RUN on DATA with the shared-task metrics, or compare several runs.

    Features missing from the store are extracted first with the run's own backbones.
    Several runs (trained on any features or models, predicting the same tasks) are
    scored on the items all of them have; --fail-under then applies to each run.
    """
    from mmtk.comparison import expand_runs
    from mmtk.metrics import parse_fail_under

    output.set_quiet(quiet)
    if not run:
        raise UsageError(f"evaluate got {data} only: it takes one or more run directories, then DATA", f"e.g. mmtk evaluate {data} test.jsonl")
    thresholds = [parse_fail_under(spec) for spec in fail_under or []]
    runs, skipped = expand_runs(run)
    for path in skipped:
        output.log(f"skipped {path}: not a run directory")
    columns = column_overrides(id_column, image_column, text_column, allow_outside_paths)
    options = {"store": store, "device": device.value, "columns": columns, "on_error": on_error.value, "dataset_name": dataset_name}
    if len(runs) > 1:
        _compare(runs, data, thresholds, plots=plots, bootstrap=bootstrap or DEFAULT_BOOTSTRAP, seed=seed, json_out=json_out, **options)
        return
    _evaluate_one(runs[0], data, thresholds, plots=plots, bootstrap=bootstrap, seed=seed, json_out=json_out, **options)


def _evaluate_one(run, data, thresholds, *, plots, bootstrap, seed, json_out, store, device, columns, on_error, dataset_name) -> None:
    from mmtk.evaluate import evaluate
    from mmtk.inference import open_run, read_for_run, usable_items
    from mmtk.metrics import check_threshold_names, check_thresholds

    loaded = open_run(run, device)
    # A mistyped name (macro_f=0.7) is refused now, not after minutes of extraction.
    check_threshold_names(thresholds, {task: loaded.kind(task) for task in loaded.tasks})
    dataset = read_for_run(loaded, data, columns, require_labels=True, on_error=on_error, dataset_name=dataset_name)
    output.warn_skipped(dataset.skipped)
    features_store = open_store(store)
    with output.progress_bar("features") as progress:
        dataset, skipped = usable_items(loaded, dataset, features_store, on_error=on_error, device=device, progress=progress)
    output.warn_skipped(skipped)
    result = evaluate(
        loaded, dataset, store=features_store, plots_dir=plots, device=device, dataset_name=dataset_name, bootstrap=bootstrap, seed=seed,
    )
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
    if misses:
        raise CheckFailed("; ".join(misses))


def _compare(runs, data, thresholds, *, plots, bootstrap, seed, json_out, store, device, columns, on_error, dataset_name) -> None:
    """Several runs: each read, its missing features extracted and its model run once,
    then ``compare_predictions``; one table per task, one row per run."""
    from mmtk.comparison import check_same_tasks, compare_predictions, run_labels
    from mmtk.evaluate import collect_predictions, plot_predictions
    from mmtk.inference import open_run, read_for_run, usable_items
    from mmtk.metrics import check_threshold_names, check_thresholds
    from mmtk.multidata import pick_tasks

    if data == "-":
        raise UsageError("DATA - (standard input) can be read once, and each run reads it", "save the data to a file to compare several runs")
    names, labels = [str(run) for run in runs], run_labels(runs)
    loaded = [open_run(run, device) for run in runs]
    # Cheap checks first (names, columns, tasks), before any feature is extracted.
    for each in loaded:
        check_threshold_names(thresholds, {task: each.kind(task) for task in each.tasks})
    datasets = [read_for_run(each, data, columns, require_labels=True, on_error=on_error, dataset_name=dataset_name) for each in loaded]
    check_same_tasks(names, [pick_tasks(each, dataset, dataset_name) for each, dataset in zip(loaded, datasets)])
    features_store = open_store(store)
    warned: set[str] = set()  # several runs skip the same bad rows: say so once
    predictions = []
    for label, each, dataset in zip(labels, loaded, datasets):
        with output.progress_bar(f"features ({label})") as progress:
            dataset, skipped = usable_items(each, dataset, features_store, on_error=on_error, device=device, progress=progress)
        output.warn_skipped([item for item in [*dataset.skipped, *skipped] if item.one_line() not in warned])
        warned |= {item.one_line() for item in [*dataset.skipped, *skipped]}
        predictions.append(collect_predictions(each, dataset, store=features_store, device=device, dataset_name=dataset_name))
    result = compare_predictions(predictions, names=names, data=data, bootstrap=bootstrap, seed=seed, notify=output.warn)
    if plots is not None:
        for label, entry, each in zip(labels, result["runs"], predictions):
            entry["result"]["plots"] = [str(path) for path in plot_predictions(each, plots / label.replace("/", "_"))]
    misses = [f"{entry['run']}: {miss}" for entry in result["runs"] for miss in check_thresholds(entry["result"], thresholds)]
    if json_out:
        output.print_json(result)
    else:
        from mmtk.cli.tables import print_tables, runs_tables

        print_tables(runs_tables(result, labels))
        for entry in result["runs"]:
            for path in entry["result"].get("plots", []):
                output.stdout().print(f"plot: {path}", highlight=False)
    if misses:
        raise CheckFailed("; ".join(misses))
