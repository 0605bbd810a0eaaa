"""Datasets held as tables rather than text: a ``pandas.DataFrame`` in memory, or a
``.parquet`` file (read through pandas, which needs pyarrow for it).

Both become the readers' plain rows: a header of column names and, per row, its 1-based
row number and a dict of plain Python values, so ``mmtk.data.readers`` validates them
exactly as CSV and JSONL rows. Tables have no text lines, so row numbers stand where
lines would (``mmtk.errors.where`` prints ``data.parquet row 3``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from mmtk.errors import FRAME_SOURCE, DataError, first_line


def is_frame(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame (without importing pandas: a DataFrame
    cannot exist unless pandas was imported already)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def frame_rows(frame, source: str = FRAME_SOURCE) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The column names of ``frame`` and its rows as ``(row number from 1, values)``.

    Cells become plain Python values: numpy scalars their Python equals, arrays (list
    columns, as parquet stores them) lists, and missing cells (NaN, None, ``pd.NA``,
    ``NaT``) None, as a JSON null (a required cell that is None is reported missing)."""
    header = [str(name) for name in frame.columns]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"{source}: column {name!r} appears twice", "rename one of the columns")
        seen.add(name)
    rows = []
    for number, cells in enumerate(frame.itertuples(index=False, name=None), start=1):
        rows.append((number, {name: _plain(cell) for name, cell in zip(header, cells)}))
    return header, rows


def read_parquet(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """``frame_rows`` of a ``.parquet`` file; a file pyarrow cannot read is a ``DataError``."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path} is not a readable Parquet file ({first_line(exc)})", "write it again, or use CSV/JSONL") from None
    if frame.shape[1] == 0:
        raise DataError(f"{path} is empty", "a Parquet dataset needs columns and one row per item")
    return frame_rows(frame, str(path))


def _plain(cell: Any) -> Any:
    """A DataFrame cell as a plain Python value; None when the cell is missing."""
    import numpy as np

    if isinstance(cell, np.ndarray):
        return [_plain(item) for item in cell.tolist()]
    if isinstance(cell, (list, tuple)):
        return [_plain(item) for item in cell]
    if isinstance(cell, np.generic):
        cell = cell.item()
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None
    if type(cell).__module__.startswith("pandas"):
        import pandas as pd

        if cell is pd.NA or cell is pd.NaT:
            return None
        if isinstance(cell, pd.Timestamp):
            return cell.isoformat()
    return cell
