"""Rich tables for people; the same data goes out as JSON with --json."""

from __future__ import annotations

from typing import Any


def metrics_table(result: dict[str, Any], title: str = "metrics"):
    """A table of an evaluation result: one row per metric, one column per task."""
    from rich.table import Table

    per_task = result["tasks"] if "tasks" in result else {result["task"]: result}
    table = Table(title=title)
    table.add_column("metric")
    for name in per_task:
        table.add_column(f"{name} (n={per_task[name]['n']})", justify="right")
    metric_names: list[str] = []
    for task in per_task.values():
        metric_names += [m for m in task["metrics"] if m not in metric_names]
    for metric in metric_names:
        cells = []
        for task in per_task.values():
            value = task["metrics"].get(metric)
            cells.append("-" if value is None else f"{value:.4f}")
        table.add_row(metric, *cells)
    return table
