"""``evaluate``: score a run on a labelled dataset with the shared-task metrics.

Result shape (docs/ARCHITECTURE.md, "Evaluate and predict"): ``{"task": name, "n": N, "metrics": {...}}`` for one task;
``{"n": N, "tasks": {name: {"task": name, "n": N, "metrics": {...}}}}`` for several;
with ``plots_dir`` a ``"plots"`` list of the PNG files written. A run trained on several
datasets reports the heads (``DATASET/TASK``) whose label columns the data has, or the
heads of ``dataset_name`` (``mmtk.multidata.pick_tasks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from mmtk.errors import DataError


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
    tta: str = "none",
) -> dict:
    """Evaluate the run at ``run_dir`` (a path or a loaded ``Run``) on ``data`` (a ``Dataset`` or a dataset path).

    Every item needs its features' columns and its labels; features missing from the
    store are extracted first unless ``extract_missing`` is False. Labels are encoded
    with the run's encoders, so a label value unseen in training raises ``DataError``
    naming file and line. For a run trained on several datasets ``dataset_name`` picks
    whose heads are scored (default: those whose label columns ``data`` has).
    ``tta="ten-crop"`` averages the run's log-probabilities over test-time views of its
    image features (``mmtk.tta``); the result then records ``"tta"``.
    """
    from mmtk.metrics import compute_metrics
    from mmtk.models.objectives import to_outputs
    from mmtk.inference import forward_source, open_run, read_for_run, run_source
    from mmtk.metrics import task_result
    from mmtk.models.derived import task_labels
    from mmtk.multidata import pick_tasks
    from mmtk.tta.apply import check_tta, tta_forward

    run = open_run(run_dir, device)
    dataset = read_for_run(run, data, columns)
    tasks = pick_tasks(run, dataset, dataset_name)
    _check_labels(run, dataset, tasks)
    # A derived task's labels come from its column, else from its fine task's.
    labels = task_labels(run, dataset) if tasks == run.tasks else {task: run.encoders[task].encode(dataset) for task in tasks}
    method = check_tta(run, dataset, tta)
    if method is None:
        source = run_source(run, dataset, store, device=device, extract_missing=extract_missing, progress=progress)
        logits, _ = forward_source(run, source, device=device)
    else:
        logits, _ = tta_forward(run, dataset, store, method, device=device, extract_missing=extract_missing, progress=progress)
    per_task, plotted = {}, []
    for task in tasks:
        kind = run.kind(task)
        outputs = to_outputs(kind, logits[task], run.target_stats.get(task))
        classes = [str(c) for c in run.encoders[task].classes]
        per_task[task] = {"task": task, "n": len(dataset), "metrics": compute_metrics(kind, labels[task], outputs, classes)}
        if plots_dir is not None:
            from mmtk.plots import plot_task

            # A several-dataset head's name (DATASET/TASK) is not a folder.
            prefix = "" if len(tasks) == 1 else f"{task.replace('/', '_')}_"
            plotted += plot_task(kind, labels[task], outputs, classes, Path(plots_dir), prefix=prefix, title=task)
    result = task_result(per_task)
    if method is not None:
        result["tta"] = method.name
    if "distillation" in run.config:  # a student run: how closely it follows its teacher
        from mmtk.distill.report import distillation_report

        # The teacher comparison is on the plain features, which the teacher saw.
        student = (source, logits) if method is None else None
        result["distillation"] = distillation_report(run, dataset, store, device=device, student=student)
    if plots_dir is not None:
        result["plots"] = [str(path) for path in plotted]
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
