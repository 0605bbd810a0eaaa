"""``predict``: label new data with a trained run, one record per item.

Running the model is ``mmtk.inference`` (shared with ``evaluate``); this module turns its
outputs into records and writes them. Record shapes (docs/ARCHITECTURE.md, "Evaluate and
predict"):
- binary / multi-class: ``{"id": ..., "label": ..., "probs": {"class": p, ...}}``
- multi-label: ``{"id": ..., "labels": [...], "probs": {...}}`` (labels with p >= 0.5)
- regression: ``{"id": ..., "value": x}``
- several tasks: ``{"id": ..., "tasks": {name: {...one of the above without id...}}}``
- ``explain=True`` adds ``"explain": {feature: weight, ...}`` (GMU gates).
A run trained on several datasets predicts with every head (``DATASET/TASK``), or with
``dataset_name``'s heads only.
Labels are the original values (``1``, ``"positive"``); probability keys are their strings.
"""

from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from mmtk.errors import UsageError


def predict(
    run_dir,
    data,
    *,
    store,
    explain: bool = False,
    device: str = "auto",
    extract_missing: bool = True,
    progress: Callable[[int, int], None] | None = None,
    columns: Mapping[str, str | None] | None = None,
    dataset_name: str | None = None,
    tta: str = "none",
) -> list[dict]:
    """Predict every item of ``data`` (a ``Dataset`` or a dataset path, read with the
    columns the run's features need; labels are not needed) with the run at ``run_dir`` (a path or a loaded ``Run``).

    ``explain`` needs a model with per-modality weights (``UsageError`` otherwise).
    Features missing from the store are extracted first unless ``extract_missing`` is
    False. ``columns`` holds ``read_dataset``'s column overrides (``text_column``, ...).
    ``dataset_name`` (a run trained on several datasets) keeps that dataset's heads.
    ``tta="ten-crop"`` averages over test-time views of the image features
    (``mmtk.tta``; ``explain`` weights are the views' mean) and each record then holds
    ``"tta": "ten-crop"``.
    """
    from mmtk.inference import open_run, read_for_run, run_model
    from mmtk.models import explainable_models
    from mmtk.models.objectives import to_outputs
    from mmtk.multidata import pick_tasks

    run = open_run(run_dir, device)
    if explain and not callable(getattr(run.model, "explain", None)):
        raise UsageError(
            f"--explain: model {run.model_name!r} of run {run.path} has no per-modality weights",
            f"train with a model that has them: {', '.join(explainable_models())}",
        )
    dataset = read_for_run(run, data, columns)
    tasks = pick_tasks(run, dataset, dataset_name, labelled=False)
    logits, weights = run_model(
        run, dataset, store, explain=explain, device=device, extract_missing=extract_missing, progress=progress, tta=tta,
    )
    outputs = {task: to_outputs(run.kind(task), logits[task], run.target_stats.get(task)) for task in tasks}
    records = []
    for row, item_id in enumerate(dataset.ids):
        per_task = {task: _task_record(run.kind(task), run.encoders[task].classes, outputs[task][row]) for task in tasks}
        record: dict[str, Any] = {"id": item_id}
        if len(per_task) == 1:
            record.update(next(iter(per_task.values())))
        else:
            record["tasks"] = per_task
        if weights is not None:
            record["explain"] = {name: float(w[row]) for name, w in weights.items()}
        if tta != "none":
            record["tta"] = tta
        records.append(record)
    return records


def _task_record(kind: str, classes: list, output: np.ndarray) -> dict:
    if kind == "regression":
        return {"value": float(output)}
    probs = {str(c): float(p) for c, p in zip(classes, output)}
    if kind == "multilabel":
        return {"labels": [c for c, p in zip(classes, output) if p >= 0.5], "probs": probs}
    return {"label": classes[int(np.argmax(output))], "probs": probs}


def write_predictions(records: Iterable[dict], out: str | Path = "-", fmt: str = "jsonl") -> None:
    """Write prediction records as JSONL (one object per line) or CSV to ``out``
    (``-`` = stdout).

    CSV columns: ``id``; per task ``label`` (multi-label: ``labels`` joined by ``|``;
    regression: ``value``) and one ``prob_<class>`` column per class; ``explain_<feature>``
    per modality weight. With several tasks each task's columns are prefixed ``<task>.``.
    """
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"unknown prediction format {fmt!r}", "use jsonl or csv")
    with _open_out(out) as handle:
        if fmt == "jsonl":
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        rows = [flatten_record(record) for record in records]
        header = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(handle, fieldnames=header or ["id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def flatten_record(record: dict, *, join_labels: bool = True) -> dict:
    """One prediction record as a flat CSV row (see ``write_predictions``); with
    ``join_labels=False`` multi-label ``labels`` stay a list (a DataFrame cell)."""
    row: dict[str, Any] = {"id": record["id"]}
    tasks = record["tasks"] if "tasks" in record else {"": record}
    for task, entry in tasks.items():
        prefix = f"{task}." if task else ""
        if "label" in entry:
            row[prefix + "label"] = entry["label"]
        if "labels" in entry:
            labels = entry["labels"]
            row[prefix + "labels"] = "|".join(str(label) for label in labels) if join_labels else list(labels)
        if "value" in entry:
            row[prefix + "value"] = entry["value"]
        for cls, p in entry.get("probs", {}).items():
            row[f"{prefix}prob_{cls}"] = p
    for name, weight in record.get("explain", {}).items():
        row[f"explain_{name}"] = weight
    if "tta" in record:
        row["tta"] = record["tta"]
    return row


@contextmanager
def _open_out(out: str | Path) -> Iterator:
    if str(out) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(out)
    if path.parent and not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist", "create it or choose another --out")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        yield handle
