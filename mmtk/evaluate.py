"""``evaluate``: score a run on a labelled dataset with the shared-task metrics.

Two stages, so that every consumer (metric suites, bootstrap comparisons, test-time
augmentation, plots and the HTML report) shares one seam:

- :func:`collect_predictions` runs the model once and returns ``RunPredictions``: per
  task the encoded labels and the model's outputs (probabilities, or values for
  regression), in the dataset's item order, with the item ids;
- :func:`score_predictions` turns them (or a subset of items, e.g. a bootstrap
  resample) into the evaluate-shaped result.

Result shape (docs/ARCHITECTURE.md, "Evaluate and predict"): ``{"task": name, "n": N, "metrics": {...}}`` for one task;
``{"n": N, "tasks": {name: {"task": name, "n": N, "metrics": {...}}}}`` for several;
with ``plots_dir`` a ``"plots"`` list of the PNG files written. A run trained on several
datasets reports the heads (``DATASET/TASK``) whose label columns the data has, or the
heads of ``dataset_name`` (``mmtk.multidata.pick_tasks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mmtk.errors import DataError, UsageError


@dataclass(frozen=True)
class TaskPredictions:
    """One task's labels and outputs, as :func:`mmtk.metrics.compute_metrics` takes them:
    ``labels`` class indices ``(N,)`` (binary/multiclass), a 0/1 matrix ``(N, C)``
    (multilabel) or values ``(N,)`` (regression); ``outputs`` probabilities ``(N, C)``
    (binary: column 1 the positive class) or predicted values ``(N,)``."""

    task: str
    kind: str
    classes: list[str]
    labels: np.ndarray
    outputs: np.ndarray

    def subset(self, indices: np.ndarray) -> TaskPredictions:
        return replace(self, labels=self.labels[indices], outputs=self.outputs[indices])


@dataclass(frozen=True)
class RunPredictions:
    """What one run predicted for every item of a labelled dataset: ``tasks`` in the
    run's order, ``ids`` the items' ids in dataset order (what aligns two runs' items),
    and the loaded ``run`` and ``dataset`` for consumers that need more (a suite reading
    raw label columns, the distillation report, a plot of a model's gates)."""

    run: Any
    dataset: Any
    ids: list[str]
    tasks: dict[str, TaskPredictions]
    # What collect_predictions computed on the way that consumers may reuse (the gathered
    # batch source and raw logits), so nothing runs the model twice.
    extras: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: Sequence[int] | np.ndarray) -> RunPredictions:
        """The predictions of the items at ``indices`` (repeats allowed: a bootstrap resample)."""
        indices = np.asarray(indices, dtype=np.int64)
        return replace(
            self, ids=[self.ids[i] for i in indices], tasks={name: entry.subset(indices) for name, entry in self.tasks.items()}, extras={}
        )


def collect_predictions(
    run_dir,
    data,
    *,
    store,
    device: str = "auto",
    extract_missing: bool = True,
    progress: Callable[[int, int], None] | None = None,
    columns: Mapping[str, str | None] | None = None,
    dataset_name: str | None = None,
    explain: bool = False,
    class_queries: bool = False,
    tta: str = "none",
) -> RunPredictions:
    """Run the model of ``run_dir`` (a path or a loaded ``Run``) over ``data`` (a
    ``Dataset`` or a dataset path) and keep labels and outputs per task.

    From the same pass, for the plots: ``explain`` keeps each item's modality weights in
    ``extras["explain"]`` (``{modality: (N,)}``; a model without gates is a
    ``UsageError``), ``class_queries`` a class-query decoder's outputs in
    ``extras["class_queries"]`` (``{"outputs": {task: (N, units, hidden)}, "queries":
    {task: (units, hidden)}}``; ``UsageError`` for other models).

    Every item needs its features' columns and its labels; features missing from the
    store are extracted first unless ``extract_missing`` is False. Labels are encoded
    with the run's encoders, so a label value unseen in training raises ``DataError``
    naming file and line. For a run trained on several datasets ``dataset_name`` picks
    whose heads are scored (default: those whose label columns ``data`` has).
    ``tta="ten-crop"`` averages the run's log-probabilities over test-time views of its
    image features (``mmtk.tta``; ``explain`` weights are the views' mean); there is
    then no single batch source, so ``extras`` holds no ``source``, and a class-query
    decoder's outputs are not collected.
    """
    from mmtk.inference import forward_run, open_run, read_for_run, run_source
    from mmtk.tta.apply import check_tta, tta_forward
    from mmtk.models.derived import task_labels
    from mmtk.models.objectives import to_outputs
    from mmtk.multidata import pick_tasks

    run = open_run(run_dir, device)
    _check_extras(run, explain=explain, class_queries=class_queries)
    dataset = read_for_run(run, data, columns)
    tasks = pick_tasks(run, dataset, dataset_name)
    _check_labels(run, dataset, tasks)
    # A derived task's labels come from its column, else from its fine task's.
    labels = task_labels(run, dataset) if tasks == run.tasks else {task: run.encoders[task].encode(dataset) for task in tasks}
    method = check_tta(run, dataset, tta)
    if method is not None:
        if class_queries:
            raise UsageError(f"--tta {method.name}: class-query outputs are not averaged over views", "collect them without --tta")
        source = None
        logits, weights = tta_forward(run, dataset, store, method, device=device, extract_missing=extract_missing, progress=progress, explain=explain)
    else:
        source = run_source(run, dataset, store, device=device, extract_missing=extract_missing, progress=progress)
        forwarded = forward_run(run, source, device=device, explain=explain, queries=class_queries)
        logits, weights = forwarded.logits, forwarded.weights
    per_task = {}
    for task in tasks:
        kind = run.kind(task)
        per_task[task] = TaskPredictions(
            task=task, kind=kind, classes=[str(c) for c in run.encoders[task].classes], labels=np.asarray(labels[task]),
            outputs=np.asarray(to_outputs(kind, logits[task], run.target_stats.get(task)), dtype=np.float64),
        )
    extras = {"logits": logits, **({"source": source} if source is not None else {"tta": method.name})}
    if explain:
        extras["explain"] = {name: weight.float().cpu().numpy() for name, weight in weights.items()}
    if class_queries:
        extras["class_queries"] = {
            "outputs": {task: out.float().cpu().numpy() for task, out in forwarded.queries.items() if task in per_task},
            "queries": {task: q.float().cpu().numpy() for task, q in run.model.class_queries().items() if task in per_task},
        }
    return RunPredictions(run=run, dataset=dataset, ids=list(dataset.ids), tasks=per_task, extras=extras)


def _check_extras(run, *, explain: bool, class_queries: bool) -> None:
    from mmtk.models import explainable_models
    from mmtk.models.inference import has_class_queries

    if explain and not callable(getattr(run.model, "explain", None)):
        raise UsageError(
            f"model {run.model_name!r} of run {run.path} has no per-modality weights", f"train with a model that has them: {', '.join(explainable_models())}"
        )
    if class_queries and not has_class_queries(run.model):
        raise UsageError(
            f"model {run.model_name!r} of run {run.path} has no class-query decoder", "train mm-transformer with --model-arg classifier=class-query"
        )


def score_predictions(predictions: RunPredictions, indices: Sequence[int] | np.ndarray | None = None) -> dict:
    """The evaluate-shaped result of ``predictions`` (all items, or those at ``indices``)."""
    from mmtk.metrics import compute_metrics, task_result

    chosen = predictions if indices is None else predictions.subset(indices)
    per_task = {
        name: {"task": name, "n": len(chosen), "metrics": compute_metrics(entry.kind, entry.labels, entry.outputs, entry.classes)}
        for name, entry in chosen.tasks.items()
    }
    return task_result(per_task)


def evaluate(
    run_dir,
    data,
    *,
    store,
    plots_dir: str | Path | None = None,
    device: str = "auto",
    extract_missing: bool = True,
    progress: Callable[[int, int], None] | None = None,
    columns: Mapping[str, str | None] | None = None,
    dataset_name: str | None = None,
    projection: str = "pca",
    scorer: Callable[[RunPredictions, Any], dict] | None = None,
    bootstrap: int | None = None,
    seed: int = 0,
    tta: str = "none",
) -> dict:
    """Evaluate the run at ``run_dir`` on ``data``: :func:`collect_predictions` then
    ``scorer`` (default :func:`score_predictions`; a metric suite of ``mmtk.suites`` is
    another), plus plots (``plots_dir``, see ``mmtk.plots``; a class-query decoder's
    outputs are projected by ``projection``: ``pca`` or ``tsne``) and, for a student run,
    how closely it follows its teacher. ``bootstrap`` resamples (seeded by ``seed``) add
    95% percentile intervals beside each task's metrics: ``"intervals": {metric: [low,
    high]}`` (``mmtk.comparison.add_intervals``).
    ``tta="ten-crop"`` averages over test-time views of the image features
    (``mmtk.tta``) and the result records ``"tta"``; the class-query projection plot
    and a student's teacher comparison then stay on the plain features."""
    from mmtk.inference import open_run
    from mmtk.models.inference import has_class_queries
    from mmtk.plots.models import PROJECTIONS

    if projection not in PROJECTIONS:
        raise UsageError(f"projection {projection!r} is not one of {', '.join(PROJECTIONS)}", f"choose one of: {', '.join(PROJECTIONS)}")
    run = open_run(run_dir, device)
    plotting = plots_dir is not None
    predictions = collect_predictions(
        run, data, store=store, device=device, extract_missing=extract_missing, progress=progress, columns=columns, dataset_name=dataset_name,
        explain=plotting and callable(getattr(run.model, "explain", None)),
        class_queries=plotting and has_class_queries(run.model) and tta == "none", tta=tta,
    )
    result = (scorer or score_predictions)(predictions, None)
    if "tta" in predictions.extras:
        result["tta"] = predictions.extras["tta"]
    if bootstrap:
        from mmtk.comparison import add_intervals

        add_intervals(result, predictions, scorer=scorer, bootstrap=bootstrap, seed=seed)
    if "distillation" in run.config:  # a student run: how closely it follows its teacher
        from mmtk.distill.report import distillation_report

        # With --tta the teacher comparison runs on the plain features, which the teacher saw.
        student = (predictions.extras["source"], predictions.extras["logits"]) if "source" in predictions.extras else None
        result["distillation"] = distillation_report(run, predictions.dataset, store, device=device, student=student)
    if plots_dir is not None:
        from mmtk.plots import plot_predictions

        result["plots"] = [str(path) for path in plot_predictions(predictions, Path(plots_dir), projection=projection)]
    return result


def _check_labels(run, dataset, tasks) -> None:
    chosen = set(tasks)
    columns = [c for entry in run.config["tasks"] if entry["name"] in chosen and "derived" not in entry for c in entry["encoder"]["task"]["columns"]]
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise DataError(
            f"{dataset.source} has no label column {missing[0]!r}: evaluation needs the label column {missing[0]}",
            f"add the labels, or use `mmtk predict {run.path} {dataset.source}` for unlabelled data",
        )
