"""The in-memory shape of a dataset: records, the columns that play each role, and the
items that were skipped while reading.

A ``Dataset`` is plain frozen data. Readers (``mmtk.data.readers``) build it; everything
downstream (extraction, feature loading, training, prediction) only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from mmtk.errors import UsageError, where

#: Roles a column can play. Media roles hold file paths, resolved to absolute paths.
MEDIA_ROLES = ("image", "audio", "video")
ROLES = ("image", "text", "audio", "video")


@dataclass(frozen=True)
class Record:
    """One item of a dataset.

    ``line`` is the 1-based line where the item starts in its source file (the physical
    line for CSV rows that span several lines), or 0 for items of a media folder.
    ``values`` maps column name to value; media columns hold absolute path strings.
    """

    id: str
    line: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Columns:
    """The column name used for each role, or None when the dataset has no such column."""

    id: str | None = None
    image: str | None = None
    text: str | None = None
    audio: str | None = None
    video: str | None = None

    def for_role(self, role: str) -> str | None:
        """The column playing ``role`` (one of ``ROLES`` or ``"id"``), or None."""
        if role != "id" and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        return getattr(self, role)


@dataclass(frozen=True)
class BadItem:
    """An item that could not be used, with where it came from and why."""

    source: str
    line: int
    item: str | None
    reason: str

    def one_line(self) -> str:
        """``memes.jsonl:12 (item '42'): image img/42.png not found``."""
        return f"{where(self.source, self.line, self.item)}: {self.reason}"


@dataclass(frozen=True)
class Dataset:
    """Records read from ``source`` plus the resolved column roles.

    ``root`` is the directory relative media paths were resolved against. ``skipped``
    lists the items dropped while reading with ``on_error="skip"``.
    """

    source: Path
    root: Path
    records: list[Record]
    columns: Columns
    skipped: list[BadItem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        """Item ids in record order."""
        return [record.id for record in self.records]

    @cached_property
    def column_names(self) -> list[str]:
        """Every column seen in any record, in order of first appearance."""
        seen: dict[str, None] = {}
        for record in self.records:
            for name in record.values:
                seen.setdefault(name, None)
        return list(seen)

    def column_for(self, role_or_name: str) -> str:
        """The column for a role (``"image"``, ``"text"``, ``"audio"``, ``"video"``) or,
        failing that, a literal column name that exists.

        A role wins over a literal name, so ``--text-column caption`` makes ``"text"``
        mean ``caption`` even when a column called ``text`` also exists.
        """
        if role_or_name in ROLES:
            column = self.columns.for_role(role_or_name)
            if column is not None:
                return column
        if role_or_name in self.column_names:
            return role_or_name
        available = ", ".join(self.column_names) or "(none)"
        if role_or_name in ROLES:
            raise UsageError(
                f"{self.source} has no {role_or_name} column (columns: {available})",
                f"name it with --{role_or_name}-column COLUMN",
            )
        raise UsageError(
            f"{self.source} has no column {role_or_name!r} (columns: {available})",
            "use one of the listed columns",
        )

    def role_of(self, column: str) -> str | None:
        """The role a column plays (``"image"``, ``"text"``, ...), or None for a plain column."""
        for role in ROLES:
            if self.columns.for_role(role) == column:
                return role
        return None

    def values(self, column: str) -> list:
        """The value of ``column`` (a role or a column name) for every record; None where
        a record lacks it."""
        name = self.column_for(column)
        return [record.values.get(name) for record in self.records]

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A dataset holding the records at ``indices`` (in that order), e.g. for a
        train/validation split. ``skipped`` stays with the dataset that was read, so the
        subset's is empty and skipped items are not reported twice."""
        records = [self.records[i] for i in indices]
        return Dataset(source=self.source, root=self.root, records=records, columns=self.columns, skipped=[])
