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


def suite_table(result: dict[str, Any], title: str = "metrics"):
    """A metric suite's result: one row per suite task (Memotion has eleven), one column
    per metric, ``-`` where a task does not report one."""
    from rich.table import Table

    per_task = result["tasks"] if "tasks" in result else {result["task"]: result}
    metric_names = list(dict.fromkeys(m for task in per_task.values() for m in task["metrics"]))
    table = Table(title=title)
    table.add_column("task")
    table.add_column("n", justify="right")
    for metric in metric_names:
        table.add_column(metric, justify="right")
    for name, task in per_task.items():
        cells = ["-" if task["metrics"].get(m) is None else f"{task['metrics'][m]:.4f}" for m in metric_names]
        table.add_row(name, str(task["n"]), *cells)
    return table


def comparison_table(rows: list[dict], title: str = "comparison"):
    """One row per model of ``mmtk.compare.Comparison.rows()``: parameters, training
    samples/s, seconds and the headline metrics ``COMPARED`` (``-`` where a model has
    none, ``failed`` for a model that did not train); the CSV and ``--json`` have all."""
    from rich import box
    from rich.table import Table

    from mmtk.compare import LEADING

    metrics = [
        key for key in dict.fromkeys(key for row in rows for key in row if key not in LEADING and key != "error")
        if key.rpartition(".")[2] in COMPARED
    ]
    # No column rules and one space between columns: three headline metrics fit 80 columns.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("model", no_wrap=True)
    for header in ("parameters", "samples/s", "seconds", *metrics):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        if row["status"] != "ok":
            table.add_row(row["model"], "failed", *["-"] * (2 + len(metrics)))
            continue
        cells = [f"{row['parameters']:,}", f"{row['samples_per_second']:,.0f}", f"{row['seconds']:.1f}"]
        cells += ["-" if row.get(m) is None else f"{row[m]:.4f}" for m in metrics]
        table.add_row(row["model"], *cells)
    return table


#: The metrics a comparison table shows (of those a task reports), to fit 80 columns.
COMPARED = ("accuracy", "macro_f1", "roc_auc", "micro_ap", "rmse", "mae")
