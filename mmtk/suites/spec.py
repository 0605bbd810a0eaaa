"""What a metric suite is made of, as plain frozen data: its tasks (a label column, the
values it may hold, how they map to the scored classes, the metrics) and the averages
over tasks. Built-in suites (``mmtk.suites.builtin``) and suite files
(``mmtk.suites.custom``) both build these; ``mmtk.suites.suite.Suite`` scores them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from mmtk.errors import UsageError

KINDS = ("multiclass", "binary", "multilabel")
#: The metrics each kind of suite task can report.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "multiclass": ("accuracy", "macro_f1", "micro_f1", "weighted_f1"),
    "binary": ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "f1", "roc_auc"),
    "multilabel": ("accuracy", "micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_ap", "macro_ap", "samples_ap"),
}
#: How an average weighs its tasks: equally, or by each binary task's positive gold
#: labels (MAMI's sub-task B).
WEIGHTS = ("equal", "positives")
#: Where multilabel decisions are made unless tuned (``Suite.tuned``).
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class SuiteTask:
    """One scored task. ``column`` holds its gold labels (for ``multilabel``: the name or
    a label column of the run's multi-label task, whose encoded labels are the gold).
    ``levels`` are the values the column may hold, ``level_class`` maps each to one of
    ``classes`` (the scored classes; ``("0", "1")`` for binary: absent, present)."""

    name: str
    column: str
    kind: str
    metrics: tuple[str, ...]
    levels: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    level_class: Mapping[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Average:
    """A figure over other tasks: each ``(name, source)`` of ``metrics`` is the mean of
    the ``source`` metric of the tasks ``of``, weighted as ``weights`` says."""

    name: str
    of: tuple[str, ...]
    metrics: tuple[tuple[str, str], ...]
    weights: str = "equal"
    description: str = ""


def multiclass_task(name: str, column: str, levels: Sequence, metrics: Sequence[str], *, merge: Mapping | None = None, description: str = "") -> SuiteTask:
    """A single-label task over ``levels``; ``merge`` maps a level to the class it is
    scored as (Memotion's ``very_positive`` -> ``positive``). Classes keep the order of
    the levels they first come from."""
    levels = tuple(canonical(level) for level in levels)
    merged = {canonical(k): canonical(v) for k, v in (merge or {}).items()}
    unknown = [k for k in merged if k not in levels]
    if unknown:
        raise UsageError(f"task {name!r}: {unknown[0]!r} in its level mapping is not one of its levels ({', '.join(levels)})", "map only listed levels")
    level_class = {level: merged.get(level, level) for level in levels}
    return SuiteTask(
        name=name, column=column, kind="multiclass", metrics=_checked(name, "multiclass", metrics), levels=levels,
        classes=tuple(dict.fromkeys(level_class.values())), level_class=level_class, description=description,
    )


def binary_task(name: str, column: str, metrics: Sequence[str], *, levels: Sequence = (0, 1), absent: Sequence = (0,), description: str = "") -> SuiteTask:
    """A present/absent task. ``levels`` the column may hold: those in ``absent`` count as
    absent, any other as present (Memotion's task B from its intensity levels: anything
    above "not" is present). 0 and 1 are always accepted (a 0/1 column)."""
    levels = tuple(dict.fromkeys([canonical(level) for level in levels] + ["0", "1"]))
    absent = {canonical(level) for level in absent} | {"0"}
    unknown = sorted(absent - set(levels))
    if unknown:
        raise UsageError(f"task {name!r}: absent level {unknown[0]!r} is not one of its levels ({', '.join(levels)})", "list it among the levels")
    level_class = {level: "0" if level in absent else "1" for level in levels}
    return SuiteTask(
        name=name, column=column, kind="binary", metrics=_checked(name, "binary", metrics), levels=levels, classes=("0", "1"),
        level_class=level_class, description=description,
    )


def multilabel_task(name: str, column: str, metrics: Sequence[str], *, description: str = "") -> SuiteTask:
    """A multi-label task: the run's multi-label head named ``column`` (or reading it)
    gives both outputs and gold labels; decisions at ``DEFAULT_THRESHOLD`` unless tuned."""
    return SuiteTask(name=name, column=column, kind="multilabel", metrics=_checked(name, "multilabel", metrics), description=description)


def average(name: str, of: Sequence[str], metrics: Mapping[str, str] | Sequence[str], *, weights: str = "equal", description: str = "") -> Average:
    """An :class:`Average`; ``metrics`` is a list of names (each the mean of the same
    name) or ``{reported name: source metric}``."""
    pairs = tuple(metrics.items()) if isinstance(metrics, Mapping) else tuple((m, m) for m in metrics)
    if weights not in WEIGHTS:
        raise UsageError(f"average {name!r}: unknown weights {weights!r}", f"choose one of: {', '.join(WEIGHTS)}")
    return Average(name=name, of=tuple(of), metrics=pairs, weights=weights, description=description)


def check_suite(name: str, tasks: Sequence[SuiteTask], averages: Sequence[Average]) -> None:
    """Task names unique, averages over known tasks of metrics those tasks report;
    positives-weighted averages over binary tasks only."""
    by_name = {task.name: task for task in tasks}
    if not tasks:
        raise UsageError(f"suite {name!r} has no tasks", "list at least one task")
    names = [task.name for task in tasks] + [a.name for a in averages]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UsageError(f"suite {name!r} names {duplicate!r} twice", "give every task and average its own name")
    for entry in averages:
        if not entry.of:
            raise UsageError(f"suite {name!r}: average {entry.name!r} is over no tasks", "list the tasks it averages")
        for task_name in entry.of:
            task = by_name.get(task_name)
            if task is None:
                raise UsageError(f"suite {name!r}: average {entry.name!r} is over unknown task {task_name!r}", f"choose among: {', '.join(by_name)}")
            if entry.weights == "positives" and task.kind != "binary":
                raise UsageError(f"suite {name!r}: average {entry.name!r} weighs by positives, but {task_name!r} is {task.kind}", "use weights = \"equal\"")
            for _, source in entry.metrics:
                if source not in task.metrics:
                    raise UsageError(
                        f"suite {name!r}: average {entry.name!r} takes {source!r} of {task_name!r}, which reports {', '.join(task.metrics)}",
                        f"add {source!r} to that task's metrics",
                    )


def with_columns(tasks: Sequence[SuiteTask], mapping: Mapping[str, str]) -> tuple[SuiteTask, ...]:
    """``tasks`` with columns re-mapped: a key is a task name (that task only) or one of
    the suite's column names (every task reading it); task names win. An unknown key is a
    ``UsageError`` listing the valid ones."""
    names = {task.name for task in tasks}
    columns = {task.column for task in tasks}
    for key in mapping:
        if key not in names and key not in columns:
            raise UsageError(
                f"--suite-map {key}={mapping[key]}: {key!r} is neither a task nor a column of this suite",
                f"map one of: {', '.join(dict.fromkeys([*names, *sorted(columns)]))}",
            )
    return tuple(replace(task, column=mapping.get(task.name, mapping.get(task.column, task.column))) for task in tasks)


def parse_mapping(specs: Sequence[str] | None) -> dict[str, str]:
    """``--suite-map TASK=COLUMN`` options (repeatable) as a dict."""
    mapping: dict[str, str] = {}
    for spec in specs or []:
        key, equals, column = spec.partition("=")
        if not equals or not key.strip() or not column.strip():
            raise UsageError(f"--suite-map {spec!r} is not TASK=COLUMN", "write e.g. --suite-map task_a=sentiment")
        mapping[key.strip()] = column.strip()
    return mapping


def canonical(value) -> str:
    """A label value as the string suites compare: booleans and whole numbers as
    ``"0"``/``"1"``/``"3"`` (a JSON 1, a CSV "1" and a 1.0 agree), text stripped."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else text
    return str(value)


def _checked(task: str, kind: str, metrics: Sequence[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    if not metrics:
        raise UsageError(f"task {task!r} lists no metrics", f"choose among: {', '.join(TASK_METRICS[kind])}")
    for metric in metrics:
        if metric not in TASK_METRICS[kind]:
            raise UsageError(f"task {task!r}: unknown metric {metric!r} for a {kind} task", f"choose among: {', '.join(TASK_METRICS[kind])}")
    return metrics
