"""Rich tables for people; the same data goes out as JSON with --json."""

from __future__ import annotations

from typing import Any


def metrics_table(result: dict[str, Any], title: str = "metrics"):
    """A table of an evaluation result: one row per metric, one column per task (with
    ``--bootstrap``, each value followed by its interval)."""
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
            cells.append("-" if value is None else f"{value:.4f}" + _interval_text(task, metric))
        table.add_row(metric, *cells)
    _caption_intervals(table, per_task)
    return table


def _interval_text(entry: dict[str, Any], metric: str) -> str:
    """`` [low, high]`` after a value when ``--bootstrap`` gave the entry intervals."""
    interval = entry.get("intervals", {}).get(metric)
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def _caption_intervals(table, per_task: dict[str, Any]) -> None:
    if any("intervals" in task for task in per_task.values()):
        table.caption = "\\[low, high]: 95% bootstrap percentile intervals"  # escaped: not rich markup


def runs_tables(comparison: dict[str, Any], labels: list[str]) -> list:
    """Tables of ``mmtk.comparison.compare_predictions``'s result: one per task, one row
    per run (named by ``labels``), one column per metric. A cell holds the value, its
    interval, and for each run after the first the difference to the first and the
    paired test's p-value, on lines of their own so that six metrics fit 100 columns
    (``print_tables`` gives output to a pipe that width)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from mmtk.comparison import tasks_of

    first = comparison["runs"][0]
    tables = []
    for task in tasks_of(first["result"]):
        metrics = list(dict.fromkeys(m for entry in comparison["runs"] for m in tasks_of(entry["result"])[task]["metrics"]))
        table = Table(
            title=escape(f"{task} on {comparison['data']} (n={comparison['n']})"), box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
            caption=f"value, 95% interval over {comparison['bootstrap']:,} bootstrap resamples (seed {comparison['seed']}); "
            f"Δ: difference to {escape(labels[0])}, p: paired bootstrap test",
        )
        table.add_column("run", no_wrap=True, min_width=min(24, max(len(label) for label in labels)))
        for metric in metrics:
            # Folded, never cut with an ellipsis: a narrow terminal still shows every digit.
            table.add_column(metric, justify="right", overflow="fold")
        for label, entry in zip(labels, comparison["runs"]):
            values = tasks_of(entry["result"])[task]["metrics"]
            cells = []
            for metric in metrics:
                if values.get(metric) is None:
                    cells.append("-")
                    continue
                lines = [f"{values[metric]:.4f}"]
                interval = entry["intervals"][task].get(metric)
                lines.append("-" if interval is None else f"{_bare(interval[0])}–{_bare(interval[1])}")
                versus = entry.get("vs_first", {}).get(task, {}).get(metric)
                if versus is not None:
                    lines += [f"Δ {versus['difference']:+.3f}", _p_text(versus["p_value"])]
                cells.append("\n".join(lines))
            table.add_row(escape(label), *cells, end_section=True)
        tables.append(table)
    return tables


def _bare(value: float) -> str:
    """3 decimals without the leading zero (.425, -.031), as intervals are printed in
    papers: an interval of two such numbers takes 9 characters."""
    text = f"{value:.3f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def _p_text(p: float | None) -> str:
    if p is None:
        return "p -"
    return "p<0.001" if p < 0.001 else f"p {p:.3f}"


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
        cells = ["-" if task["metrics"].get(m) is None else f"{task['metrics'][m]:.4f}" + _interval_text(task, m) for m in metric_names]
        table.add_row(name, str(task["n"]), *cells)
    _caption_intervals(table, per_task)
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


#: Columns of comparison tables written to a pipe or file, where no terminal sets the width.
PIPE_WIDTH = 100


def print_tables(tables: list) -> None:
    """Print tables on stdout: as wide as the terminal, and ``PIPE_WIDTH`` columns when
    stdout is no terminal (rich's default there, 80, folds a six-metric comparison)."""
    from rich.console import Console

    from mmtk.cli import output

    console = output.stdout()
    if not console.is_terminal and console.width < PIPE_WIDTH:
        console = Console(soft_wrap=True, width=PIPE_WIDTH)
    for table in tables:
        console.print(table)
