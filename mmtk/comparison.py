"""Compare runs on one labelled dataset, with bootstrap confidence intervals and a paired
test of each run against the first (``mmtk evaluate RUN1 RUN2 ... DATA``).

Each run's model runs once (:func:`mmtk.evaluate.collect_predictions`); the runs' items
are aligned by id (runs can score different items when one skipped some: they are
compared on the items all of them scored); then one set of bootstrap resamples of those
items (:mod:`mmtk.bootstrap`, seeded) is scored for every run, which gives each metric a
percentile interval and each run a paired test against the first. Runs trained on
different features or models compare as long as they predict the same tasks.
(``mmtk.compare`` trains several models for ``mmtk train --model a,b,c``; this module
compares trained runs, such as those it writes.)

Scoring goes through a *scorer*, ``(RunPredictions, indices or None) -> evaluate-shaped
dict``: :func:`mmtk.evaluate.score_predictions` by default, or a metric suite. The
default is computed on all resamples at once (:mod:`mmtk.resampled_metrics`); another
scorer is called once per resample, unless it offers the same in a ``score_resamples``
attribute, ``(RunPredictions, counts (B, N)) -> {task: {metric: values (B,)}}``.

Result (the JSON of ``mmtk evaluate RUN1 RUN2 ... DATA --json``)::

    {"data": path, "n": items compared, "bootstrap": B, "seed": int, "confidence": 0.95,
     "suite": scorer's name or None,
     "runs": [{"run": path, "result": evaluate-shaped dict on all items,
               "intervals": {task: {metric: [low, high]}},
               "vs_first": {task: {metric: {"difference": this - first, "p_value": p}}}},  # not on the first
              ...]}
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mmtk.errors import DataError, UsageError

Scorer = Callable[[Any, Any], dict]


def expand_runs(arguments: Sequence) -> tuple[list, list[Path]]:
    """``(runs, skipped)``: the run directories named by ``arguments`` (paths, or glob
    patterns such as ``runs/cmp/*`` that the shell left unexpanded; loaded ``Run``s pass
    through), in the order given, each pattern's matches sorted. Plain files are skipped
    when a directory is among the arguments (the zoo's ``runs/cmp/comparison.csv`` when
    the shell expands ``runs/cmp/*``); a pattern matching nothing is a ``UsageError``.
    Otherwise a path is kept as it is, so that ``load_run`` says what is wrong with it."""
    paths: list = []
    for argument in arguments:
        if not isinstance(argument, (str, Path)):
            paths.append(argument)
            continue
        text = str(argument)
        if glob.has_magic(text) and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise UsageError(f"RUN pattern {text!r} matches nothing", "check the path, e.g. runs/cmp/* for `mmtk train --model a,b --out runs/cmp`")
            paths += [Path(match) for match in matches]
        else:
            paths.append(Path(text))
    files = [path for path in paths if isinstance(path, Path) and path.is_file()]
    if not files or all(path in files for path in paths):
        return paths, []
    return [path for path in paths if path not in files], files


def run_labels(runs: Sequence[str | Path]) -> list[str]:
    """Short names of runs for a table: the fewest trailing path parts that tell them
    apart (``runs/cmp/gmu`` and ``runs/cmp/concat``: ``gmu``, ``concat``)."""
    parts = [Path(run).parts or (str(run),) for run in runs]
    for keep in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-keep:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(run) for run in runs]  # the same run given twice


def tasks_of(result: Mapping) -> dict[str, dict]:
    """``{task: entry}`` of an evaluate-shaped result (one task or several)."""
    return dict(result["tasks"]) if "tasks" in result else {result["task"]: result}


def check_same_tasks(names: Sequence[str], tasks: Sequence[Sequence[str]]) -> None:
    """Refuse runs that do not predict the same tasks as the first (``UsageError`` naming
    the run and the task it lacks): their metrics would not line up."""
    first = list(tasks[0])
    for name, these in zip(names[1:], tasks[1:]):
        lacking = [task for task in first if task not in these]
        if lacking:
            raise UsageError(
                f"run {name} does not predict task {lacking[0]!r}, which run {names[0]} predicts",
                "compare runs trained on the same tasks (task names are in each run's config.json)",
            )
        extra = [task for task in these if task not in first]
        if extra:
            raise UsageError(
                f"run {names[0]} does not predict task {extra[0]!r}, which run {name} predicts",
                "compare runs trained on the same tasks (task names are in each run's config.json)",
            )


def align(predictions: Sequence, names: Sequence[str], notify: Callable[[str], None] | None = None) -> list:
    """The runs' predictions restricted to the items all of them scored, in the first
    run's order; ``notify`` gets one line per run that lacks items (and the count left)."""
    positions = []
    for name, entry in zip(names, predictions):
        index = {item: i for i, item in enumerate(entry.ids)}
        if len(index) != len(entry.ids):
            raise DataError(f"the predictions of run {name} name an item id twice", "give every item of the dataset its own id")
        positions.append(index)
    common = [item for item in predictions[0].ids if all(item in index for index in positions[1:])]
    if not common:
        raise DataError(f"runs {', '.join(names)} scored no item in common", "compare the runs on the same dataset")
    shared, aligned = set(common), []
    for name, entry, index in zip(names, predictions, positions):
        if len(entry.ids) != len(common) and notify is not None:
            left_out = [item for item in entry.ids if item not in shared]
            notify(f"run {name}: {len(left_out)} of its {len(entry.ids)} items are not scored by every run (e.g. {left_out[0]!r}); "
                   f"comparing on the {len(common)} items all runs scored")
        if entry.ids == common:
            aligned.append(entry)
        else:
            aligned.append(entry.subset([index[item] for item in common]))
    return aligned


def _default_scorer():
    from mmtk.evaluate import score_predictions

    return score_predictions


def _score_resamples_default(predictions, counts: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    from mmtk.resampled_metrics import resampled_metrics

    return {name: resampled_metrics(entry.kind, entry.labels, entry.outputs, counts) for name, entry in predictions.tasks.items()}


def bootstrap_values(predictions, *, scorer: Scorer | None = None, bootstrap: int = 1000, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``{task: {metric: values (B,)}}``: the scorer's metrics on each of ``bootstrap``
    resamples of ``predictions``' items (NaN where a metric is undefined on a resample).
    The resamples depend only on the number of items and ``seed``, so two runs' values
    pair up resample by resample."""
    from mmtk.bootstrap import counts_of, resample_indices

    if bootstrap < 1:
        raise UsageError(f"--bootstrap {bootstrap}: at least one resample is needed", "use e.g. --bootstrap 1000")
    scorer = scorer or _default_scorer()
    batched = _score_resamples_default if scorer is _default_scorer() else getattr(scorer, "score_resamples", None)
    n = len(predictions)
    chunks: list[dict[str, dict[str, np.ndarray]]] = []
    for indices in resample_indices(n, bootstrap, seed):
        if batched is not None:
            chunks.append(batched(predictions, counts_of(indices, n)))
            continue
        rows = [tasks_of(scorer(predictions, row)) for row in indices]
        names = {task: list(dict.fromkeys(m for row in rows for m in row[task]["metrics"])) for task in rows[0]}
        chunks.append({
            task: {m: np.array([row[task]["metrics"].get(m, np.nan) for row in rows], dtype=np.float64) for m in metrics}
            for task, metrics in names.items()
        })
    values: dict[str, dict[str, np.ndarray]] = {}
    for task in chunks[0]:
        metrics = dict.fromkeys(m for chunk in chunks for m in chunk[task])
        values[task] = {
            m: np.concatenate([chunk[task].get(m, np.full(len(next(iter(chunk[task].values()))), np.nan)) for chunk in chunks]) for m in metrics
        }
    return values


def intervals_of(result: Mapping, values: Mapping, confidence: float = 0.95) -> dict[str, dict[str, list[float] | None]]:
    """``{task: {metric: [low, high]}}`` for every metric of ``result``."""
    from mmtk.bootstrap import percentile_interval

    return {
        task: {m: percentile_interval(values[task][m], confidence) if m in values.get(task, {}) else None for m in entry["metrics"]}
        for task, entry in tasks_of(result).items()
    }


def add_intervals(result: dict, predictions, *, scorer: Scorer | None = None, bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Put ``"intervals": {metric: [low, high]}`` beside ``"metrics"`` in each task entry
    of ``result`` (what ``scorer`` gave for ``predictions``); returns ``result``."""
    values = bootstrap_values(predictions, scorer=scorer, bootstrap=bootstrap, seed=seed)
    for task, entry in tasks_of(result).items():
        entry["intervals"] = intervals_of({"task": task, "metrics": entry["metrics"]}, values, confidence)[task]
    return result


def compare_predictions(
    predictions: Sequence,
    *,
    names: Sequence[str] | None = None,
    data: Any = None,
    scorer: Scorer | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    notify: Callable[[str], None] | None = None,
) -> dict:
    """The comparison (module docstring) of runs' collected predictions on one dataset.

    ``names`` label the runs (default: each run's path); ``data`` is recorded as given
    (default: the first run's dataset source); ``notify`` gets a line when runs scored
    different items."""
    from mmtk.bootstrap import paired_p_value

    if not predictions:
        raise UsageError("no run to compare", "give at least one run directory")
    names = [str(name) for name in (names or [getattr(entry.run, "path", i) for i, entry in enumerate(predictions)])]
    scorer = scorer or _default_scorer()
    aligned = align(predictions, names, notify)
    results = [scorer(entry, None) for entry in aligned]
    check_same_tasks(names, [list(tasks_of(result)) for result in results])
    for entry, result in zip(predictions, results):  # a run's result records --tta, as evaluate's does
        if "tta" in entry.extras:
            result["tta"] = entry.extras["tta"]
    values = [bootstrap_values(entry, scorer=scorer, bootstrap=bootstrap, seed=seed) for entry in aligned]
    first_tasks, first_values = tasks_of(results[0]), values[0]
    runs = []
    for i, (name, result, these) in enumerate(zip(names, results, values)):
        entry = {"run": name, "result": result, "intervals": intervals_of(result, these, confidence)}
        if i > 0:
            entry["vs_first"] = {
                task: {
                    m: {
                        "difference": value - first_tasks[task]["metrics"][m],
                        "p_value": paired_p_value(first_values[task][m], these[task][m], value - first_tasks[task]["metrics"][m]),
                    }
                    for m, value in task_entry["metrics"].items() if m in first_tasks[task]["metrics"]
                }
                for task, task_entry in tasks_of(result).items()
            }
        runs.append(entry)
    source = data if data is not None else getattr(aligned[0].dataset, "source", None)
    return {
        "data": None if source is None else str(source), "n": len(aligned[0]), "bootstrap": bootstrap, "seed": seed,
        "confidence": confidence, "suite": getattr(scorer, "name", None), "runs": runs,
    }


def compare_runs(
    runs: Sequence,
    data,
    *,
    store,
    scorer: Scorer | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    device: str = "auto",
    columns: Mapping[str, str | None] | None = None,
    dataset_name: str | None = None,
    notify: Callable[[str], None] | None = None,
    tta: str = "none",
) -> dict:
    """Compare ``runs`` (run directories, glob patterns such as ``"runs/cmp/*"``, or
    loaded ``Run``s) on the labelled dataset ``data`` (a path or a ``Dataset``): each
    model runs once (features missing from ``store`` are extracted first), then
    :func:`compare_predictions`. A run that does not predict the first run's tasks is a
    ``UsageError`` naming it and the task, raised before the next run's model runs.
    ``tta`` (``mmtk.tta``) averages every run over test-time views of its image features."""
    from mmtk.evaluate import collect_predictions

    default = scorer is None or scorer is _default_scorer()
    collected, names = [], []
    for run in expand_runs(runs)[0]:
        predictions = collect_predictions(run, data, store=store, device=device, columns=columns, dataset_name=dataset_name, tta=tta)
        names.append(str(predictions.run.path))
        collected.append(predictions)
        if default:  # a suite's tasks are its own, checked on its results
            check_same_tasks([names[0], names[-1]], [list(collected[0].tasks), list(predictions.tasks)])
    source = data if not hasattr(data, "source") else data.source
    return compare_predictions(
        collected, names=names, data=source, scorer=scorer, bootstrap=bootstrap, seed=seed, confidence=confidence, notify=notify,
    )
