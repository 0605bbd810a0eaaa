"""A suite from a small TOML or JSON file (``--suite path.toml``); see
``examples/suites/memes.toml`` for one with every key.

Top level: ``name`` (default: the file's stem), ``description``, a list ``tasks`` and an
optional list ``averages``. A task: ``name``, ``column`` (the data column with its gold
labels; for ``multilabel`` the run's multi-label task's name or column), ``kind``
(``multiclass``, ``binary`` or ``multilabel``), ``metrics`` (names from
``mmtk.suites.spec.TASK_METRICS``, the averaging in the name: ``macro_f1``,
``weighted_f1``, ``samples_ap``...), and for single-label tasks ``levels`` (the values the
column may hold; binary default ``[0, 1]``), ``merge`` (multiclass: ``{level: class it
is scored as}``) or ``absent`` (binary: the levels meaning "not present"; every other
level is present). An average: ``name``, ``of`` (task names), ``metrics`` (a list, or
``{reported: source}``) and ``weights`` (``equal`` or ``positives``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmtk.errors import UsageError
from mmtk.suites.spec import average, binary_task, multiclass_task, multilabel_task

TASK_KEYS = {"name", "column", "kind", "metrics", "levels", "merge", "absent", "description"}
AVERAGE_KEYS = {"name", "of", "metrics", "weights", "description"}
TOP_KEYS = {"name", "description", "tasks", "averages"}


def load_suite_file(path: str | Path):
    """The :class:`~mmtk.suites.suite.Suite` a TOML (``.toml``) or JSON file describes;
    any problem is a ``UsageError`` naming the file and the entry."""
    from mmtk.suites.suite import Suite

    path = Path(path)
    document = _read(path)
    try:
        _only(document, TOP_KEYS, "the top level")
        tasks = [_task(entry, i) for i, entry in enumerate(_list(document, "tasks", required=True))]
        averages = [_average(entry, i) for i, entry in enumerate(_list(document, "averages", required=False))]
        return Suite(str(document.get("name", path.stem)), tuple(tasks), tuple(averages), description=str(document.get("description", "")))
    except UsageError as error:
        raise UsageError(f"suite file {path}: {error.message}", error.hint) from None


def _read(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"no suite file {path}", "name a built-in suite (mmtk list suites) or an existing .toml/.json file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            document = json.loads(text)
        else:
            import tomllib

            document = tomllib.loads(text)
    except (json.JSONDecodeError, ValueError) as error:  # tomllib.TOMLDecodeError is a ValueError
        raise UsageError(f"suite file {path} does not parse: {str(error).splitlines()[0]}", "fix the syntax (see examples/suites/memes.toml)") from None
    if not isinstance(document, dict):
        raise UsageError(f"suite file {path} is not a table of keys", "see examples/suites/memes.toml")
    return document


def _task(entry: Any, index: int):
    entry = _table(entry, f"tasks[{index}]")
    _only(entry, TASK_KEYS, f"tasks[{index}]")
    name = _text(entry, "name", f"tasks[{index}]")
    where = f"task {name!r}"
    column, kind = _text(entry, "column", where), entry.get("kind", "multiclass")
    metrics = _strings(entry, "metrics", where)
    description = str(entry.get("description", ""))
    if kind == "multilabel":
        extra = sorted({"levels", "merge", "absent"} & set(entry))
        if extra:
            raise UsageError(f"{where}: {extra[0]!r} applies to single-label tasks only", "leave it out of the multilabel task")
        return multilabel_task(name, column, metrics, description=description)
    if kind == "binary":
        if "merge" in entry:
            raise UsageError(f"{where}: 'merge' applies to multiclass tasks", "a binary task says which levels are absent with 'absent'")
        return binary_task(name, column, metrics, levels=entry.get("levels", (0, 1)), absent=entry.get("absent", (0,)), description=description)
    if kind == "multiclass":
        if "absent" in entry:
            raise UsageError(f"{where}: 'absent' applies to binary tasks", "a multiclass task merges levels with 'merge'")
        if "levels" not in entry:
            raise UsageError(f"{where}: a multiclass task needs its 'levels'", "list the values its column may hold")
        merge = entry.get("merge", {})
        if not isinstance(merge, dict):
            raise UsageError(f"{where}: 'merge' is not a table of level = class", 'write e.g. merge = { very_positive = "positive" }')
        return multiclass_task(name, column, _strings(entry, "levels", where, allow_numbers=True), metrics, merge=merge, description=description)
    raise UsageError(f"{where}: unknown kind {kind!r}", "choose one of: multiclass, binary, multilabel")


def _average(entry: Any, index: int):
    entry = _table(entry, f"averages[{index}]")
    _only(entry, AVERAGE_KEYS, f"averages[{index}]")
    name = _text(entry, "name", f"averages[{index}]")
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict):
        metrics = _strings(entry, "metrics", f"average {name!r}")
    return average(name, _strings(entry, "of", f"average {name!r}"), metrics, weights=entry.get("weights", "equal"), description=str(entry.get("description", "")))


def _table(entry: Any, where: str) -> dict:
    if not isinstance(entry, dict):
        raise UsageError(f"{where} is not a table", "write each entry as [[tasks]] / [[averages]] (TOML) or an object (JSON)")
    return entry


def _only(entry: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}", f"use only: {', '.join(sorted(allowed))}")


def _list(document: dict, key: str, *, required: bool) -> list:
    value = document.get(key, [])
    if not isinstance(value, list) or (required and not value):
        raise UsageError(f"'{key}' must be a non-empty list" if required else f"'{key}' must be a list", f"write [[{key}]] entries")
    return value


def _text(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: {key!r} is missing or not text", f"give the entry a {key}")
    return value.strip()


def _strings(entry: dict, key: str, where: str, *, allow_numbers: bool = False) -> list:
    value = entry.get(key)
    kinds = (str, int, float) if allow_numbers else (str,)
    if not isinstance(value, list) or not value or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
        raise UsageError(f"{where}: {key!r} must be a non-empty list of {'values' if allow_numbers else 'names'}", f"write e.g. {key} = [...]")
    return value
