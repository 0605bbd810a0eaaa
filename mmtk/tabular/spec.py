"""Which columns of a dataset feed the ``tabular`` feature, and how numbers are scaled.

Roles come from ``train --cat-cols a,b --num-cols c,d --scaling standard`` or from a
``--columns FILE`` in the style of Multimodal-Toolkit's ``column_info.json``::

    {"text_cols": ["Title", "Review Text"], "cat_cols": ["Class Name"],
     "num_cols": ["Rating", "Age"], "label_col": "Recommended IND"}

Other keys of that file (``label_list``, ...) are ignored. Flags given next to a file
replace the file's list of the same role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmtk.errors import DataError, UsageError

#: Numerical scalings: ``standard`` (zero mean, unit variance), ``minmax`` (training range
#: to [0, 1]) and ``quantile`` (training distribution to uniform [0, 1]).
SCALINGS = ("standard", "minmax", "quantile")
_SCALING_ALIASES = {"min-max": "minmax", "min_max": "minmax", "z": "standard", "zscore": "standard"}
_LIST_KEYS = ("text_cols", "cat_cols", "num_cols")


@dataclass(frozen=True)
class TabularSpec:
    """Column roles for the tabular feature: categorical and numerical columns (the
    feature's inputs), the text and label columns a columns file may also name, and the
    numerical scaling."""

    cat_cols: tuple[str, ...] = ()
    num_cols: tuple[str, ...] = ()
    scaling: str = "standard"
    text_cols: tuple[str, ...] = ()
    label_col: str | None = None

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The columns the tabular vector is built from (numerical first)."""
        return self.num_cols + self.cat_cols

    def check(self) -> TabularSpec:
        """Refuse a spec with no feature column, an unknown scaling, or a column given
        two roles; returns ``self`` so it chains."""
        if self.scaling not in SCALINGS:
            raise UsageError(f"unknown scaling {self.scaling!r}", f"use one of: {', '.join(SCALINGS)}")
        if not self.feature_columns:
            raise UsageError(
                "the tabular feature has no columns",
                "name them with --cat-cols A,B and/or --num-cols C,D, or --columns column_info.json",
            )
        roles = {"cat_cols": self.cat_cols, "num_cols": self.num_cols, "text_cols": self.text_cols}
        seen: dict[str, str] = {}
        for role, columns in roles.items():
            for column in columns:
                if column in seen and seen[column] == role:
                    raise UsageError(f"column {column!r} is listed twice in {role}", "name each column once")
                if column in seen:
                    raise UsageError(f"column {column!r} is in both {seen[column]} and {role}", "give each column one role")
                seen[column] = role
        return self

    def check_not_labels(self, label_columns: list[str] | tuple[str, ...]) -> None:
        """A label column among the inputs would hand the model its answer."""
        for column in self.feature_columns:
            if column in label_columns:
                raise UsageError(
                    f"column {column!r} is both a tabular input and a label of a task",
                    "remove it from --cat-cols/--num-cols (or from cat_cols/num_cols of the columns file)",
                )

    def to_json(self) -> dict:
        return {
            "cat_cols": list(self.cat_cols), "num_cols": list(self.num_cols), "scaling": self.scaling,
            "text_cols": list(self.text_cols), "label_col": self.label_col,
        }

    @classmethod
    def from_json(cls, data: dict) -> TabularSpec:
        return cls(
            cat_cols=tuple(data.get("cat_cols", ())), num_cols=tuple(data.get("num_cols", ())),
            scaling=str(data.get("scaling", "standard")), text_cols=tuple(data.get("text_cols", ())),
            label_col=data.get("label_col"),
        )


def parse_scaling(text: str) -> str:
    """``standard``, ``minmax`` (or ``min-max``) or ``quantile``."""
    name = text.strip().lower()
    name = _SCALING_ALIASES.get(name, name)
    if name not in SCALINGS:
        raise UsageError(f"unknown scaling {text!r}", f"use one of: {', '.join(SCALINGS)}")
    return name


def parse_column_list(text: str | None) -> tuple[str, ...] | None:
    """``"a, b"`` -> ``("a", "b")``; None stays None (the option was not given)."""
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def read_columns_file(path: str | Path) -> TabularSpec:
    """Read a ``column_info.json``-style file (``text_cols``, ``cat_cols``, ``num_cols``,
    ``label_col``); a malformed file raises ``DataError`` naming it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"columns file {path} not found", "give the path of a column_info.json file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a JSON columns file ({exc})", 'write {"cat_cols": [...], "num_cols": [...], "label_col": "..."}') from None
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected a JSON object", 'write {"cat_cols": [...], "num_cols": [...], "label_col": "..."}')
    lists = {key: _string_list(path, key, document.get(key, [])) for key in _LIST_KEYS}
    label = document.get("label_col")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise DataError(f"{path}: label_col {label!r} is not a column name", 'write "label_col": "COLUMN"')
    return TabularSpec(
        cat_cols=lists["cat_cols"], num_cols=lists["num_cols"], text_cols=lists["text_cols"],
        label_col=label.strip() if label else None,
    )


def _string_list(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(f"{path}: {key} must be a list of column names, got {value!r}", f'write "{key}": ["A", "B"]')
    return tuple(v.strip() for v in value)


def column_spec(
    *,
    cat_cols: str | None = None,
    num_cols: str | None = None,
    columns_file: str | Path | None = None,
    scaling: str | None = None,
) -> TabularSpec | None:
    """The spec the ``train`` options describe, or None when none of them was given.

    A columns file is read first; ``cat_cols``/``num_cols`` (comma-separated) replace its
    lists of the same role. The result is not checked yet: a file may only be there to
    name the label column.
    """
    if cat_cols is None and num_cols is None and columns_file is None and scaling is None:
        return None
    spec = read_columns_file(columns_file) if columns_file is not None else TabularSpec()
    changes: dict[str, Any] = {}
    if cat_cols is not None:
        changes["cat_cols"] = parse_column_list(cat_cols)
    if num_cols is not None:
        changes["num_cols"] = parse_column_list(num_cols)
    if scaling is not None:
        changes["scaling"] = parse_scaling(scaling)
    return replace(spec, **changes)
