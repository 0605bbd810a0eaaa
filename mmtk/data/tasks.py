"""Prediction tasks: parsing ``--task`` specs and turning label columns into arrays.

A ``LabelEncoder`` is fitted on the training data and saved in the run, so evaluation
and prediction map labels exactly as training did. Label values are normalised so a
CSV file (where everything is a string: ``"1"``) and a JSONL file (``1``) of the same
dataset agree: when every value of a column spells an integer, the classes are ints.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmtk.data.records import Dataset, Record
from mmtk.errors import DataError, UsageError, where

KINDS = ("binary", "multiclass", "multilabel", "regression")
_KIND_ALIASES = {"multi-class": "multiclass", "multi-label": "multilabel"}
SPEC_FORMS = (
    "COLUMN, COLUMN:KIND with KIND one of binary|multiclass|multilabel|regression "
    "(multilabel on one column: a list column), or NAME=COL1,COL2,...[:multilabel] for several 0/1 columns"
)
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class TaskSpec:
    """A task: its name (used for output keys), its kind (None = infer from the data)
    and the column(s) holding its labels."""

    name: str
    kind: str | None
    columns: tuple[str, ...]


def parse_task(spec: str) -> TaskSpec:
    """Parse ``label``, ``label:binary``, ``sentiment:multiclass``, ``price:regression``,
    ``labels:multilabel`` (a list column) or ``hate=shaming,stereotype:multilabel``
    (several 0/1 columns; the name comes before ``=``)."""

    def bad(reason: str) -> UsageError:
        return UsageError(f"bad task spec {spec!r}: {reason}", f"write {SPEC_FORMS}")

    body, kind = spec.strip(), None
    if ":" in body:
        body, _, kind_text = body.rpartition(":")
        kind = kind_text.strip().lower()
        kind = _KIND_ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise bad(f"unknown kind {kind_text.strip()!r}")
    if "=" in body:
        name, _, column_list = body.partition("=")
        name = name.strip()
        columns = tuple(column.strip() for column in column_list.split(","))
        if not name:
            raise bad("no task name before '='")
        if not all(columns):
            raise bad("an empty column name after '='")
        if len(set(columns)) != len(columns):
            raise bad("a column is listed twice")
        if len(columns) > 1 and kind not in (None, "multilabel"):
            raise bad(f"several label columns make a multilabel task, not {kind}")
    else:
        name = body.strip()
        if not name:
            raise bad("no label column")
        if "," in name:
            raise bad("several columns need a task name, as in NAME=COL1,COL2")
        columns = (name,)
    return TaskSpec(name=name, kind=kind, columns=columns)


@dataclass(frozen=True)
class LabelEncoder:
    """Maps a task's label column(s) to training targets.

    ``classes`` are the original label values (ints or strings, sorted) for binary and
    multiclass tasks, the label names for multilabel ones (sorted values of a list
    column, or the columns in the order given), and empty for regression.
    """

    task: TaskSpec
    classes: list

    def has_labels(self, dataset: Dataset) -> bool:
        """Whether ``dataset`` carries this task's labels: every label column exists and
        has a value somewhere (a test set without labels has none)."""
        return all(
            column in dataset.column_names and any(not _is_blank(r.values.get(column)) for r in dataset.records)
            for column in self.task.columns
        )

    def encode(self, dataset: Dataset) -> np.ndarray:
        """Targets for every record: int64 (N,) class indices (binary, multiclass),
        float32 (N, C) 0/1 (multilabel) or float32 (N,) (regression).

        A missing label, a value not among ``classes``, a non-numeric regression target
        or a multilabel column value other than 0/1 raises ``DataError`` naming file,
        line and item."""
        _check_columns(self.task, dataset)
        kind = self.task.kind
        if kind == "regression":
            return np.array([self._number(dataset, r) for r in dataset.records], dtype=np.float32)
        if kind == "multilabel":
            out = np.zeros((len(dataset), len(self.classes)), dtype=np.float32)
            if len(self.task.columns) > 1:
                for row, record in enumerate(dataset.records):
                    out[row] = [_zero_one(dataset, record, column) for column in self.task.columns]
                return out
            index = {label: i for i, label in enumerate(self.classes)}
            as_int = _all_ints(self.classes)
            for row, record in enumerate(dataset.records):
                for element in _label_list(dataset, record, self.task.columns[0]):
                    out[row, self._index_of(dataset, record, element, index, as_int)] = 1.0
            return out
        index = {label: i for i, label in enumerate(self.classes)}
        as_int = _all_ints(self.classes)
        column = self.task.columns[0]
        return np.array(
            [self._index_of(dataset, r, _single_label(dataset, r, column), index, as_int) for r in dataset.records],
            dtype=np.int64,
        )

    def _index_of(self, dataset: Dataset, record: Record, value: Any, index: dict, as_int: bool) -> int:
        key = _canonical(value, as_int)
        if key is None or key not in index:
            raise DataError(
                f"{_at(dataset, record)}: label {value!r} is not a known class of task {self.task.name!r} "
                f"(known: {', '.join(map(str, self.classes))})",
                "fix the value, or retrain with data that has this label",
            )
        return index[key]

    def _number(self, dataset: Dataset, record: Record) -> float:
        value = _single_label(dataset, record, self.task.columns[0])
        number = _as_float(value)
        if number is None:
            raise DataError(
                f"{_at(dataset, record)}: {self.task.name} target {value!r} is not a number",
                "regression targets must be finite numbers",
            )
        return number

    def to_json(self) -> dict:
        """Plain JSON data for a run's config."""
        return {
            "task": {"name": self.task.name, "kind": self.task.kind, "columns": list(self.task.columns)},
            "classes": list(self.classes),
        }

    @classmethod
    def from_json(cls, data: dict) -> LabelEncoder:
        """Inverse of ``to_json``."""
        try:
            task = data["task"]
            spec = TaskSpec(name=str(task["name"]), kind=task["kind"], columns=tuple(map(str, task["columns"])))
            classes = list(data["classes"])
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed label encoder (missing {exc})", "the run's config.json is damaged; retrain") from None
        if spec.kind not in KINDS or not spec.columns:
            raise DataError(f"malformed label encoder for task {spec.name!r}", "the run's config.json is damaged; retrain")
        return cls(task=spec, classes=classes)


def fit_label_encoder(task: TaskSpec, dataset: Dataset) -> LabelEncoder:
    """Fit the label mapping of ``task`` on (training) ``dataset``.

    When ``task.kind`` is None it is inferred: several columns or list values ->
    multilabel; numbers with fractional values and more than two distinct values ->
    regression; two distinct values -> binary; otherwise multiclass (so an integer
    target such as a price needs an explicit ``:regression``).
    """
    _check_columns(task, dataset)
    if len(task.columns) > 1:
        encoder = LabelEncoder(TaskSpec(task.name, "multilabel", task.columns), list(task.columns))
        encoder.encode(dataset)  # checks every value is 0/1, naming the first bad one
        return encoder

    column = task.columns[0]
    kind = task.kind
    if kind != "multilabel":
        # A declared multilabel column may hold empty cells (items without labels), which
        # a single label may not; only single-label values are read here.
        values = [_single_label(dataset, record, column) for record in dataset.records]
        kind = kind or _infer_kind(values)
    if kind == "regression":
        encoder = LabelEncoder(TaskSpec(task.name, kind, task.columns), [])
        encoder.encode(dataset)  # checks every target is a number
        return encoder
    if kind == "multilabel":
        elements = [e for record in dataset.records for e in _label_list(dataset, record, column)]
        if not elements:
            raise DataError(f"column {column!r} of {dataset.source} holds no labels at all", "check the column and the file")
        return LabelEncoder(TaskSpec(task.name, kind, task.columns), _classes(elements))

    for record, value in zip(dataset.records, values):
        if isinstance(value, (list, dict)):
            raise DataError(
                f"{_at(dataset, record)}: {task.name} label {value!r} is not a single value",
                f"declare the task as {task.name}:multilabel for list labels",
            )
    classes = _classes(values)
    if len(classes) < 2:
        raise DataError(
            f"column {column!r} of {dataset.source} has only one label value ({', '.join(map(str, classes))})",
            "a classifier needs at least two classes; check the column and the file",
        )
    if kind == "binary" and len(classes) > 2:
        shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
        raise DataError(
            f"task {task.name!r} is binary but column {column!r} of {dataset.source} has {len(classes)} values ({shown})",
            f"declare it as {task.name}:multiclass",
        )
    return LabelEncoder(TaskSpec(task.name, kind, task.columns), classes)


# --- helpers -----------------------------------------------------------------------------


def _check_columns(task: TaskSpec, dataset: Dataset) -> None:
    for column in task.columns:
        if column not in dataset.column_names:
            raise UsageError(
                f"task {task.name!r}: no column {column!r} in {dataset.source} (columns: {', '.join(dataset.column_names)})",
                "name the label column with --task COLUMN[:KIND]",
            )


def _at(dataset: Dataset, record: Record) -> str:
    return where(dataset.source, record.line, record.id)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _single_label(dataset: Dataset, record: Record, column: str) -> Any:
    value = record.values.get(column)
    if _is_blank(value):
        raise DataError(f"{_at(dataset, record)}: missing label in column {column!r}", "fill in the label or drop the row")
    return value


def _label_list(dataset: Dataset, record: Record, column: str) -> list:
    """A multilabel list value: a JSON list, a JSON list string or ``a|b``; CSV's empty
    cell means no labels, while a missing (null) value is an error."""
    value = record.values.get(column)
    if value is None:
        raise DataError(f"{_at(dataset, record)}: missing labels in column {column!r}", "write [] for an item with no labels")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise DataError(
                    f"{_at(dataset, record)}: labels {text!r} are not a JSON list", 'write ["a", "b"] or a|b'
                ) from None
        else:
            value = [part.strip() for part in text.split("|") if part.strip()]
    if not isinstance(value, list):
        value = [value]
    for element in value:
        if isinstance(element, (list, dict)) or element is None:
            raise DataError(f"{_at(dataset, record)}: label {element!r} in column {column!r} is not a plain value", 'write ["a", "b"] or a|b')
    return value


def _zero_one(dataset: Dataset, record: Record, column: str) -> float:
    value = _single_label(dataset, record, column)
    number = _as_int(value)
    if number not in (0, 1):
        raise DataError(
            f"{_at(dataset, record)}: value {value!r} in label column {column!r} is not 0/1",
            "multilabel columns hold 0 or 1 per label",
        )
    return float(number)


def _as_int(value: Any) -> int | None:
    """The integer a label spells (1, 1.0, True, "1", " 1.0 "), else None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        number = _as_float(text)
        return int(number) if number is not None and number.is_integer() else None
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _all_ints(classes: list) -> bool:
    return bool(classes) and all(isinstance(c, int) and not isinstance(c, bool) for c in classes)


def _canonical(value: Any, as_int: bool) -> int | str | None:
    """A label value as a class key: an int when the classes are ints, else a string
    (a JSON number 1 and a CSV "1" both become "1")."""
    if as_int:
        return _as_int(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.strip() if isinstance(value, str) else str(value)


def _classes(values: list) -> list:
    """Sorted distinct label values: ints when every value spells an integer."""
    as_int = all(_as_int(v) is not None for v in values)
    return sorted({_canonical(v, as_int) for v in values})


def _infer_kind(values: list) -> str:
    if any(isinstance(v, list) or (isinstance(v, str) and v.strip().startswith("[")) for v in values):
        return "multilabel"
    numbers = [_as_float(v) for v in values]
    if all(n is not None for n in numbers):
        fractional = any(not n.is_integer() for n in numbers)
        if fractional and len(set(numbers)) > 2:
            return "regression"
    return "binary" if len(_classes(values)) == 2 else "multiclass"
