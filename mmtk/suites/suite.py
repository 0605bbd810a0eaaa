"""A metric suite as a scorer: ``suite(predictions, indices=None)`` returns the
evaluate-shaped result of a run's ``RunPredictions`` scored the way a shared task scores
them, so ``--fail-under``, tables, bootstrap comparisons and the report take it as they
take ``mmtk.evaluate.score_predictions``.

Each suite task is matched to one of the run's heads by its column: the head whose label
columns include it (a multi-label head of several 0/1 columns gives that column's
probability), or for a multi-label suite task the head named like it. The head's classes
are mapped onto the suite task's scored classes through the task's levels, so a 5-level
sentiment head scores Memotion's 3-way task A and an intensity head scores task B
(presence) as well as task C. Gold labels of single-label tasks are read from the data's
column and checked against the task's levels; a multi-label task's gold labels are the
run's encoded labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mmtk.errors import DataError, UsageError, where
from mmtk.suites.scoring import averaged, multilabel_metrics, single_label_metrics, tune_thresholds
from mmtk.suites.spec import DEFAULT_THRESHOLD, Average, SuiteTask, canonical, check_suite, with_columns


@dataclass(frozen=True)
class Head:
    """Where a suite task's outputs come from: the run's ``task``, its ``column_index``
    (a column of a multi-label head, else None) and ``to_scored``, the 0/1 matrix taking
    the head's classes to the suite task's scored classes (None for multi-label tasks)."""

    task: str
    column_index: int | None = None
    to_scored: np.ndarray | None = None
    labels: tuple[str, ...] = ()  # a multi-label head's label names

    def scored(self, outputs: np.ndarray) -> np.ndarray:
        """The head's outputs as probabilities over the suite task's scored classes."""
        if self.to_scored is None:
            return outputs
        if self.column_index is not None:
            present = outputs[:, self.column_index]
            outputs = np.stack([1.0 - present, present], axis=1)
        return outputs @ self.to_scored


@dataclass(frozen=True)
class Suite:
    """A named set of suite tasks and averages; call it to score (see the module doc).
    ``thresholds`` holds tuned per-label thresholds by run path and task (``tuned``)."""

    name: str
    tasks: tuple[SuiteTask, ...]
    averages: tuple[Average, ...] = ()
    description: str = ""
    thresholds: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    # Gold labels per dataset and heads per run, kept so a bootstrap's thousand calls
    # read the data and match heads once.
    _gold: dict = field(default_factory=dict, repr=False, compare=False)
    _heads: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_suite(self.name, self.tasks, self.averages)

    # --- names -------------------------------------------------------------------------
    def metric_names(self) -> dict[str, tuple[str, ...]]:
        """Every reported task (and average) with the metrics it reports, for checking
        ``--fail-under`` names before any work."""
        names = {task.name: task.metrics for task in self.tasks}
        names.update({entry.name: tuple(name for name, _ in entry.metrics) for entry in self.averages})
        return names

    def mapped(self, mapping: Mapping[str, str] | None) -> Suite:
        """This suite reading other columns: ``{task or column: column}`` (``--suite-map``)."""
        if not mapping:
            return self
        return replace(self, tasks=with_columns(self.tasks, mapping), _gold={}, _heads={})

    # --- checks ------------------------------------------------------------------------
    def check_run(self, run, scored: Sequence[str] | None = None) -> dict[str, Head]:
        """The run head of every task (``scored``: the run tasks being scored, default
        all); a task no head reads is a ``UsageError`` naming task, column and the fix."""
        key = (id(run), tuple(scored) if scored is not None else None)
        if key not in self._heads:
            self._heads[key] = (run, {task.name: _find_head(self.name, task, run, scored) for task in self.tasks})
        return self._heads[key][1]

    def check_data(self, dataset) -> None:
        """Every single-label task's column is in ``dataset`` (a ``UsageError`` naming
        task, column and the fix otherwise)."""
        for task in self.tasks:
            if task.kind != "multilabel" and task.column not in dataset.column_names:
                raise UsageError(
                    f"suite {self.name!r} task {task.name!r} needs gold labels in column {task.column!r}, which {dataset.source} lacks "
                    f"(columns: {', '.join(dataset.column_names)})",
                    f"name the column that holds them with --suite-map {task.name}=COLUMN",
                )

    # --- scoring -----------------------------------------------------------------------
    def __call__(self, predictions, indices: Sequence[int] | np.ndarray | None = None) -> dict:
        from mmtk.metrics import task_result

        heads = self.check_run(predictions.run, list(predictions.tasks))
        chosen = predictions if indices is None else predictions.subset(indices)
        gold = self._gold_labels(predictions.dataset)
        rows = _positions(predictions.dataset, predictions.ids)
        if indices is not None:
            rows = rows[np.asarray(indices, dtype=np.int64)]
        tuned = self._thresholds_of(predictions.run)
        per_task: dict[str, dict[str, Any]] = {}
        positives: dict[str, int] = {}
        for task in self.tasks:
            head = heads[task.name]
            entry = chosen.tasks[head.task]
            if task.kind == "multilabel":
                cut = tuned.get(task.name, DEFAULT_THRESHOLD)
                metrics = multilabel_metrics(entry.labels, entry.outputs, cut, task.metrics)
                per_task[task.name] = {"task": task.name, "n": len(chosen), "metrics": metrics}
                if task.name in tuned:
                    per_task[task.name]["thresholds"] = {label: float(t) for label, t in zip(head.labels, cut)}
                continue
            labels = gold[task.name][rows]
            probs = head.scored(entry.outputs)
            metrics = single_label_metrics(labels, probs, task.metrics, binary=task.kind == "binary")
            per_task[task.name] = {"task": task.name, "n": len(chosen), "metrics": metrics}
            if task.kind == "binary":
                positives[task.name] = int(labels.sum())
        for entry in self.averages:
            weights = [positives[name] for name in entry.of] if entry.weights == "positives" else None
            values = {
                name: averaged([per_task[task]["metrics"].get(source) for task in entry.of], weights) for name, source in entry.metrics
            }
            per_task[entry.name] = {"task": entry.name, "n": len(chosen), "metrics": {k: v for k, v in values.items() if v is not None}}
        ordered = {name: per_task[name] for name in self.report_order()}
        return {**task_result(ordered), "suite": self.name}

    def tuned(self, validation: Iterable) -> Suite:
        """This suite deciding each multi-label task's labels at thresholds tuned per
        label on ``validation`` (``RunPredictions`` of each run to be scored, on
        validation data): best F1 per label (``scoring.tune_thresholds``)."""
        multilabel = [task for task in self.tasks if task.kind == "multilabel"]
        if not multilabel:
            raise UsageError(f"suite {self.name!r} has no multi-label task whose thresholds could be tuned", "leave out --tune-threshold")
        thresholds = dict(self.thresholds)
        for predictions in validation:
            heads = self.check_run(predictions.run, list(predictions.tasks))
            thresholds[_run_key(predictions.run)] = {
                task.name: tune_thresholds(predictions.tasks[heads[task.name].task].labels, predictions.tasks[heads[task.name].task].outputs)
                for task in multilabel
            }
        return replace(self, thresholds=thresholds, _gold={}, _heads={})

    def _thresholds_of(self, run) -> Mapping[str, np.ndarray]:
        if not self.thresholds:
            return {}
        try:
            return self.thresholds[_run_key(run)]
        except KeyError:
            raise ValueError(f"suite {self.name!r} has thresholds tuned for other runs, not {run.path}") from None

    def report_order(self) -> list[str]:
        """Tasks in suite order, each average right after the last task it covers."""
        order = [task.name for task in self.tasks]
        for entry in self.averages:
            order.insert(max(order.index(name) for name in entry.of) + 1, entry.name)
        return order

    def _gold_labels(self, dataset) -> dict[str, np.ndarray]:
        """Scored-class indices of every single-label task's gold labels, all items."""
        cached = self._gold.get(id(dataset))
        if cached is None:
            self.check_data(dataset)
            cached = (dataset, {task.name: _read_gold(self.name, task, dataset) for task in self.tasks if task.kind != "multilabel"})
            self._gold[id(dataset)] = cached
        return cached[1]


def _read_gold(suite: str, task: SuiteTask, dataset) -> np.ndarray:
    index = {name: i for i, name in enumerate(task.classes)}
    gold = np.empty(len(dataset), dtype=np.int64)
    for row, record in enumerate(dataset.records):
        value = record.values.get(task.column)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{where(dataset.source, record.line, record.id)}: no {task.column} label", f"fill it in (suite {suite!r} task {task.name!r} scores every item)")
        level = canonical(value)
        if level not in task.level_class:
            raise DataError(
                f"{where(dataset.source, record.line, record.id)}: {task.column} {value!r} is not a level of suite {suite!r} task {task.name!r} "
                f"(allowed: {', '.join(task.levels)})",
                f"fix the value, or map the task to another column with --suite-map {task.name}=COLUMN",
            )
        gold[row] = index[task.level_class[level]]
    return gold


def _positions(dataset, ids: list[str]) -> np.ndarray:
    """Rows of ``dataset`` holding ``ids``: all in order for what ``collect_predictions``
    returns, others for predictions already subset (``RunPredictions.subset`` keeps the
    whole dataset)."""
    own = dataset.ids
    if ids == own:
        return np.arange(len(own))
    row_of = {item: row for row, item in enumerate(own)}
    return np.array([row_of[item] for item in ids], dtype=np.int64)


def _run_key(run) -> str:
    return str(run.path)


def _find_head(suite: str, task: SuiteTask, run, scored: Sequence[str] | None) -> Head:
    """The run head that scores ``task`` (see the module doc)."""
    entries = [entry for entry in run.config["tasks"] if scored is None or entry["name"] in scored]
    columns = {entry["name"]: list(entry["encoder"]["task"]["columns"]) for entry in entries}
    kinds = {entry["name"]: run.kind(entry["name"]) for entry in entries}
    if task.kind == "multilabel":
        found = [name for name in columns if kinds[name] == "multilabel" and (name == task.column or task.column in columns[name])]
        if found:
            return Head(task=found[0], labels=tuple(str(c) for c in run.encoders[found[0]].classes))
    else:
        # Heads of this task's own kind first (a presence head before an intensity head for
        # a binary task); a derived head keeps its place among them.
        candidates = [name for name in columns if task.column in columns[name] and kinds[name] != "regression"]
        candidates.sort(key=lambda name: kinds[name] != task.kind)
        problems = []
        for name in candidates:
            head, problem = _single_label_head(task, name, kinds[name], columns[name], run.encoders[name].classes)
            if head is not None:
                return head
            problems.append(problem)
        if problems:
            raise UsageError(f"suite {suite!r} task {task.name!r}: {problems[0]}", f"map the task to a head with those levels with --suite-map {task.name}=COLUMN")
    heads = ", ".join(f"{name} ({', '.join(cols)})" for name, cols in columns.items())
    what = "multi-label task named or reading" if task.kind == "multilabel" else "task reading"
    raise UsageError(
        f"suite {suite!r} task {task.name!r}: run {run.path} has no {what} column {task.column!r} (its tasks and their columns: {heads})",
        f"map the task to the run's column with --suite-map {task.name}=COLUMN",
    )


def _single_label_head(task: SuiteTask, name: str, kind: str, columns: list[str], classes: list) -> tuple[Head | None, str]:
    if kind == "multilabel":
        index, names = columns.index(task.column), ["0", "1"]
        if len(columns) == 1:  # a list column holds label names, not this task's levels
            return None, f"run task {name!r} is a multi-label list column, not one label per item"
    else:
        index, names = None, [canonical(c) for c in classes]
    scored = {c: i for i, c in enumerate(task.classes)}
    matrix = np.zeros((len(names), len(task.classes)))
    for row, level in enumerate(names):
        if level not in task.level_class:
            return None, f"run task {name!r} predicts {level!r}, which is not a level of this task (allowed: {', '.join(task.levels)})"
        matrix[row, scored[task.level_class[level]]] = 1.0
    return Head(task=name, column_index=index, to_scored=matrix), ""
