"""Shared-task metric suites: ``mmtk evaluate RUN DATA --suite NAME`` scores a run the
way a shared task scores it (``builtin`` documents each and its sources); ``mmtk list
suites`` lists them. A suite is a scorer (``mmtk.suites.suite.Suite``): called with a
run's ``RunPredictions`` (and optionally item indices, a bootstrap resample) it returns
the evaluate-shaped result, one entry per suite task, with ``"suite"`` naming it.

From Python::

    suite = get_suite("memotion", {"task_a": "sentiment"})
    result = evaluate(run, data, store=store, scorer=suite)
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from mmtk.registry import Registry
from mmtk.suites.builtin import BUILTIN
from mmtk.suites.spec import parse_mapping
from mmtk.suites.suite import Suite

SUITES: Registry = Registry("suite")
for _name, _factory in BUILTIN.items():
    SUITES.add(_name, _factory)

__all__ = ["SUITES", "Suite", "get_suite", "parse_mapping", "describe_suites"]


def get_suite(name_or_path: str | Path, mapping: Mapping[str, str] | None = None) -> Suite:
    """A registered suite by name, or one read from a ``.toml``/``.json`` file, with
    ``mapping`` (``{task or column: column}``, ``--suite-map``) applied."""
    text = str(name_or_path)
    if text in SUITES:
        suite = SUITES.get(text)()
    elif Path(text).suffix.lower() in (".toml", ".json") or Path(text).exists():
        from mmtk.suites.custom import load_suite_file

        suite = load_suite_file(text)
    else:
        suite = SUITES.get(text)()  # refuses the unknown name, listing the valid ones
    return suite.mapped(mapping)


def describe_suites() -> dict[str, dict]:
    """Every registered suite: its one-line help, and per task its column, kind, metrics
    and a line about it (per average the tasks, weights and metrics), for ``mmtk list suites``."""
    described = {}
    for name in SUITES.names():
        suite = SUITES.get(name)()
        tasks = {
            task.name: {"column": task.column, "kind": task.kind, "metrics": list(task.metrics), "description": task.description} for task in suite.tasks
        }
        tasks.update({
            entry.name: {"of": list(entry.of), "weights": entry.weights, "metrics": [reported for reported, _ in entry.metrics], "description": entry.description}
            for entry in suite.averages
        })
        described[name] = {"help": SUITES.describe()[name], "tasks": {name: tasks[name] for name in suite.report_order()}}
    return described
