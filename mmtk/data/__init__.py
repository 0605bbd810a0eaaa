"""Datasets: reading and validating CSV/JSONL/folder datasets, label tasks, content keys.

See ``docs/ARCHITECTURE.md`` ("Datasets") for how the pieces fit together.
"""

from __future__ import annotations

from mmtk.data.content import content_key, content_keys
from mmtk.data.readers import read_dataset
from mmtk.data.records import BadItem, Columns, Dataset, Record
from mmtk.data.tasks import LabelEncoder, TaskSpec, fit_label_encoder, parse_task

__all__ = [
    "BadItem",
    "Columns",
    "Dataset",
    "LabelEncoder",
    "Record",
    "TaskSpec",
    "content_key",
    "content_keys",
    "fit_label_encoder",
    "parse_task",
    "read_dataset",
]
