"""Derived tasks: a coarse task a model outputs without training a head for it, computed
from a fine task it does train (an emotion's presence from its intensity, Memotion's
task B from task C).

A run records a derived task in ``config.json["tasks"]`` like a trained one (a binary
label encoder with classes ``[0, 1]``, so predict writes it like any binary task) plus
``"derived": {"from": FINE_TASK, "absent": [fine classes meaning "not present"]}``. The
model's ``forward`` outputs its logit. Evaluation reads its labels from the column named
like the task when the data has one, and otherwise derives them from the fine task's
labels the same way (any class outside ``absent`` counts as present).
"""

from __future__ import annotations

import numpy as np

PRESENCE_CLASSES = [0, 1]


def derived_task_entry(name: str, source: str, absent: list) -> dict:
    """The ``config.json`` task entry of presence task ``name`` derived from ``source``."""
    encoder = {"task": {"name": name, "kind": "binary", "columns": [name]}, "classes": list(PRESENCE_CLASSES)}
    return {
        "name": name, "kind": "binary", "columns": [name], "encoder": encoder, "target_stats": None,
        "derived": {"from": source, "absent": list(absent)},
    }


def derived_presence(fine: np.ndarray, classes: list, absent: list) -> np.ndarray:
    """Presence labels (int64 ``(N,)``, 1 = present) from a fine task's class indices
    ``fine`` over ``classes``: present when the class is not one of ``absent``."""
    not_present = np.array([c in absent for c in classes], dtype=bool)
    return (~not_present[np.asarray(fine, dtype=np.int64)]).astype(np.int64)


def is_derived(entry: dict) -> bool:
    """Whether a ``config.json`` task entry is a derived task."""
    return "derived" in entry


def task_labels(run, dataset) -> dict[str, np.ndarray]:
    """Encoded labels of every task of ``run`` on ``dataset``: trained tasks from their
    columns; a derived task from its own column when ``dataset`` has it, else from its
    fine task's labels."""
    entries = {entry["name"]: entry for entry in run.config["tasks"]}
    labels = {task: run.encoders[task].encode(dataset) for task in run.tasks if not is_derived(entries[task])}
    for task in run.tasks:
        entry = entries[task]
        if not is_derived(entry):
            continue
        encoder = run.encoders[task]
        if encoder.has_labels(dataset):
            labels[task] = encoder.encode(dataset)
        else:
            source = entry["derived"]["from"]
            labels[task] = derived_presence(labels[source], run.encoders[source].classes, entry["derived"]["absent"])
    return {task: labels[task] for task in run.tasks}
