"""The search space of ``mmtk tune``: a YAML (or JSON) file mapping each tuned setting
to its range, checked against the model before any trial runs.

```yaml
lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
dropout: {type: float, low: 0.0, high: 0.5}
hidden: {type: int, low: 32, high: 256, log: true}
fusion: {type: categorical, choices: [concat, gmu]}
```

A key is a training option (``TRAIN_KEYS``: ``lr``, ``weight_decay``, ``batch_size``,
``label_smoothing``) or a ``--model-arg`` parameter of the model (``hidden``,
``dropout``, ``layers``... as ``mmtk list models`` shows them). Types: ``float``
(``low``, ``high``, optional ``log: true`` or ``step``), ``int`` (the same, whole
numbers) and ``categorical`` (``choices``). PyYAML reads ``1e-4`` (no dot) as a string,
so bounds written as numeric strings are accepted as numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtk.errors import UsageError

#: Training options a space may tune (``mmtk.train.train`` keywords), with their type
#: and the ``mmtk train`` flag that sets them.
TRAIN_KEYS: dict[str, tuple[type, str]] = {
    "lr": (float, "--lr"),
    "weight_decay": (float, "--weight-decay"),
    "batch_size": (int, "--batch-size"),
    "label_smoothing": (float, "--label-smoothing"),
}
TYPES = ("float", "int", "categorical")
_FIELDS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"}, "categorical": {"type", "choices"}}
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Param:
    """One tuned setting: ``kind`` float/int/categorical, ``target`` "train" (a training
    option) or "model" (a ``--model-arg``)."""

    name: str
    kind: str
    target: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def to_json(self) -> dict:
        if self.kind == "categorical":
            return {"type": self.kind, "choices": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass(frozen=True)
class Space:
    """The parameters of a space file, in file order."""

    source: str
    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_json(self) -> dict:
        return {p.name: p.to_json() for p in self.params}

    def suggest(self, trial) -> dict[str, Any]:
        """One value per parameter, drawn by ``trial`` (an ``optuna.Trial``)."""
        values = {}
        for p in self.params:
            if p.kind == "categorical":
                values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                values[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log, step=p.step or 1)
            else:
                values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
        return values

    def split(self, values: dict) -> tuple[dict, dict]:
        """``(training options, model args)`` of a trial's values, as ``train`` takes them."""
        targets = {p.name: p.target for p in self.params}
        train = {k: v for k, v in values.items() if targets[k] == "train"}
        model = {k: v for k, v in values.items() if targets[k] == "model"}
        return train, model

    def flags(self, values: dict) -> list[str]:
        """The ``mmtk train`` options that set ``values``."""
        argv = []
        for name, value in values.items():
            if name in TRAIN_KEYS:
                argv += [TRAIN_KEYS[name][1], str(value)]
            else:
                argv += ["--model-arg", f"{name}={value}"]
        return argv


def load_space(path: str | Path, model: str) -> Space:
    """Read and check the space file ``path`` for ``model``; any problem is a
    ``UsageError`` naming the file and the key."""
    path = Path(path)
    document = _read(path)
    if document is None or document == {}:
        raise UsageError(f"space file {path} is empty", "give at least one setting, e.g. lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}")
    if not isinstance(document, dict):
        raise UsageError(f"space file {path}: the top level is a {type(document).__name__}, not a mapping", "map each setting to its range, e.g. lr: {type: float, low: 1.0e-4, high: 1.0e-2}")
    from mmtk.models import model_params

    defaults = model_params(model)
    params = tuple(_param(path, str(key), spec, model, defaults) for key, spec in document.items())
    return Space(source=str(path), params=params)


def _read(path: Path):
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"space file {path} is not .yaml, .yml or .json", "write the space as YAML or JSON with one of those extensions")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"space file {path} does not exist", "check the --space path") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise UsageError(f"space file {path} cannot be read ({type(exc).__name__})", "give a YAML or JSON text file") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})", "fix the JSON syntax at that line") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "unreadable"
        raise UsageError(f"{where}: not valid YAML ({problem})", "fix the YAML syntax at that line") from None


def _param(path: Path, key: str, spec, model: str, defaults: dict) -> Param:
    where = f"{path}: {key}"
    if key in TRAIN_KEYS:
        target, want = "train", TRAIN_KEYS[key][0]
    elif key in defaults:
        target, want = "model", type(defaults[key]) if defaults[key] is not None else None
    else:
        valid = ", ".join([*TRAIN_KEYS, *defaults])
        raise UsageError(f"{where}: not a training option nor a parameter of model {model!r}", f"valid keys: {valid}")
    if not isinstance(spec, dict):
        raise UsageError(f"{where}: the range is {spec!r}, not a mapping", f"write e.g. {key}: {{type: float, low: 0.0, high: 0.5}}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise UsageError(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}", f"write e.g. {key}: {{type: float, low: 0.0, high: 0.5}}")
    unknown = sorted(set(map(str, spec)) - _FIELDS[kind])
    if unknown:
        raise UsageError(f"{where}: {kind} ranges have no field {unknown[0]!r}", f"its fields are: {', '.join(sorted(_FIELDS[kind]))}")
    if kind == "categorical":
        return Param(key, kind, target, choices=_choices(where, spec.get("choices"), want))
    if want in (str, bool):
        raise UsageError(f"{where}: the parameter takes a {want.__name__}, not a number range", f"write {key}: {{type: categorical, choices: [...]}}")
    if kind == "float" and want is int:
        raise UsageError(f"{where}: the parameter takes whole numbers", f"write {key}: {{type: int, low: ..., high: ...}}")
    low, high = (_number(where, name, spec.get(name), kind) for name in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UsageError(f"{where}: log is {log!r}, not true or false", "write log: true for a log-uniform range")
    step = None if spec.get("step") is None else _number(where, "step", spec.get("step"), kind)
    if low > high:
        raise UsageError(f"{where}: low {low} is above high {high}", "swap them")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low > 0 (low is {low})", "raise low, or drop log: true")
    if log and step is not None:
        raise UsageError(f"{where}: a range is either log or stepped, not both", "drop log or step")
    if step is not None and step <= 0:
        raise UsageError(f"{where}: step {step} is not positive", "give a step > 0")
    _check_bounds(where, key, low, high)
    return Param(key, kind, target, low=low, high=high, log=log, step=step)


def _number(where: str, name: str, value, kind: str):
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: {name} is {value!r}, not a number", f"give {name} as a number, e.g. {name}: {1 if kind == 'int' else 0.001}")
    if kind == "int":
        if value != int(value):
            raise UsageError(f"{where}: {name} {value} is not a whole number", "an int range takes whole numbers (or use type: float)")
        return int(value)
    return float(value)


def _choices(where: str, choices, want) -> tuple:
    if not isinstance(choices, list) or not choices:
        raise UsageError(f"{where}: choices must be a non-empty list", "write e.g. choices: [64, 128, 256]")
    for choice in choices:
        fits = {
            None: isinstance(choice, (str, int, float, bool)),
            bool: isinstance(choice, bool),
            int: isinstance(choice, int) and not isinstance(choice, bool),
            float: isinstance(choice, (int, float)) and not isinstance(choice, bool),
            str: isinstance(choice, str),
        }[want]
        if not fits:
            kind = want.__name__ if want is not None else "number, string or boolean"
            raise UsageError(f"{where}: choice {choice!r} does not fit the parameter's type ({kind})", f"give {kind} choices only")
    if len(set(map(repr, choices))) < len(choices):
        raise UsageError(f"{where}: a choice is listed twice", "list each choice once")
    return tuple(choices)


def _check_bounds(where: str, key: str, low, high) -> None:
    """Ranges the trainer would refuse in every trial are refused now, before any runs."""
    if key in ("lr",) and low <= 0:
        raise UsageError(f"{where}: the learning rate must be positive (low is {low})", "give low > 0, e.g. 1.0e-5")
    if key == "batch_size" and low < 1:
        raise UsageError(f"{where}: batch sizes start at 1 (low is {low})", "give low >= 1")
    if (key.endswith("dropout") or key == "label_smoothing") and not (0 <= low and high < 1):
        raise UsageError(f"{where}: a rate must lie in [0, 1) (range {low}..{high})", "give 0 <= low <= high < 1")
    if key == "weight_decay" and low < 0:
        raise UsageError(f"{where}: weight decay cannot be negative", "give low >= 0")
