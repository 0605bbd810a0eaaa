"""Results as tables for the report: plain data (titles, headers, rows of cells), no HTML.

Two result shapes are read:
- evaluate's (``{"task", "n", "metrics"}`` or ``{"n", "tasks": {...}}``, what a metric
  suite scores too), with ``"intervals"`` (``{metric: [low, high]}``) beside a task's
  ``"metrics"`` when a bootstrap ran, and a student run's ``"distillation"``;
- the multi-run comparison (``{"data", "n", "bootstrap", "seed", "confidence", "suite",
  "runs": [{"run", "result", "intervals", "vs_first"}]}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Cell:
    """One table cell: its value and the smaller lines under it (interval, difference)."""

    text: str
    notes: tuple[str, ...] = ()
    numeric: bool = False


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


def number(value: Any) -> str:
    """A metric as the report prints it: 4 decimals (a p-value below 1e-4 as ``< 0.0001``
    is the caller's choice); non-numbers as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def interval(bounds) -> str:
    return f"[{number(bounds[0])}, {number(bounds[1])}]"


def p_value(value: float) -> str:
    return "p < 0.0001" if value < 1e-4 else f"p = {value:.4f}"


def is_comparison(result: Mapping) -> bool:
    return isinstance(result.get("runs"), list)


def task_entries(result: Mapping) -> dict[str, Mapping]:
    """``{task: entry}`` of an evaluate-shaped result (one task or several)."""
    if "tasks" in result:
        return dict(result["tasks"])
    return {result.get("task", "task"): result}


def result_tables(result: Mapping, *, confidence: float | None = None) -> list[Table]:
    """One table per task of an evaluate-shaped result: metric, value, and the
    bootstrap interval where the entry has ``"intervals"``."""
    tables = []
    level = f"{round(100 * confidence)}% interval" if confidence else "interval"
    for name, entry in task_entries(result).items():
        intervals = entry.get("intervals") or {}
        header = ["metric", "value"] + ([level] if intervals else [])
        rows = []
        for metric, value in entry.get("metrics", {}).items():
            row = [Cell(metric), Cell(number(value), numeric=True)]
            if intervals:
                row.append(Cell(interval(intervals[metric]) if metric in intervals else "", numeric=True))
            rows.append(row)
        tables.append(Table(f"{name} (n = {entry.get('n', result.get('n', '?'))})", header, rows))
    if "distillation" in result:
        tables.append(key_value_table("against the teacher", result["distillation"]))
    return tables


def comparison_tables(comparison: Mapping) -> list[Table]:
    """The comparison's settings, then one table per task: a row per run, a column per
    metric; each cell the metric, its interval, and for every run after the first the
    difference to the first run with the paired bootstrap p-value."""
    confidence = comparison.get("confidence")
    settings = {key: comparison[key] for key in ("data", "n", "bootstrap", "seed", "confidence", "suite") if key in comparison}
    tables = [key_value_table("comparison", settings)]
    runs = comparison["runs"]
    tasks = list(dict.fromkeys(task for run in runs for task in task_entries(run["result"])))
    level = f"{round(100 * confidence)}% interval" if confidence else "interval"
    for task in tasks:
        metrics = list(dict.fromkeys(m for run in runs for m in task_entries(run["result"]).get(task, {}).get("metrics", {})))
        rows = []
        for position, run in enumerate(runs):
            entry = task_entries(run["result"]).get(task, {})
            row = [Cell(str(run["run"]), ("first run: the reference",) if position == 0 and len(runs) > 1 else ())]
            for metric in metrics:
                if metric not in entry.get("metrics", {}):
                    row.append(Cell("", numeric=True))
                    continue
                notes = []
                bounds = (run.get("intervals") or {}).get(task, {}).get(metric)
                if bounds is not None:
                    notes.append(f"{level} {interval(bounds)}")
                versus = (run.get("vs_first") or {}).get(task, {}).get(metric)
                if versus is not None:
                    notes.append(f"vs first {versus['difference']:+.4f}, {p_value(versus['p_value'])}")
                row.append(Cell(number(entry["metrics"][metric]), tuple(notes), numeric=True))
            rows.append(row)
        n = next((task_entries(run["result"])[task].get("n") for run in runs if task in task_entries(run["result"])), None)
        tables.append(Table(f"{task} (n = {n})" if n is not None else task, ["run"] + metrics, rows))
    return tables


def key_value_table(title: str, values: Mapping) -> Table:
    return Table(title, ["", ""], [[Cell(str(key)), Cell(number(value) if value is not None else "none", numeric=not isinstance(value, str))] for key, value in values.items()])
