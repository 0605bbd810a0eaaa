"""The ``tabular`` feature: a dataset's categorical and numerical columns as one vector.

Layout of the vector (``TabularPreprocessor.output_names`` spells it out): for each
numerical column, in spec order, its scaled value and a missing-value flag; then for
each categorical column, one-hot over its training categories and an ``unknown`` flag.

Categories are one-hot rather than learned-embedding indices because the fusion models
(``concat``, ``gmu``) take one float vector per modality; one-hot feeds their first
linear layer, which then acts as a learned embedding of each category.

The preprocessor is fitted on the training split only and saved in the run directory
(``config.json`` under ``"tabular"``), so ``evaluate``/``predict`` rebuild the same
vector from new data without the training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtk.errors import DataError, where
from mmtk.tabular.encoders import CategoryEncoder, NumberScaler
from mmtk.tabular.spec import TabularSpec
from mmtk.tabular.values import NotANumber, category_key, number_or_missing

FORMAT = "mmtk-tabular/1"


@dataclass(frozen=True)
class TabularPreprocessor:
    """Fitted scalers and encoders for the spec's columns; ``transform`` a dataset into
    ``(N, dim)`` float32."""

    spec: TabularSpec
    numerical: tuple[NumberScaler, ...]
    categorical: tuple[CategoryEncoder, ...]

    @property
    def dim(self) -> int:
        return sum(part.width for part in (*self.numerical, *self.categorical))

    @property
    def output_names(self) -> list[str]:
        """One name per vector component, e.g. ``Age``, ``Age=<missing>``, ``Type=1``."""
        return [name for part in (*self.numerical, *self.categorical) for name in part.output_names]

    def transform(self, dataset) -> np.ndarray:
        """The tabular vectors of ``dataset``'s records, row ``i`` for ``records[i]``.

        A column absent from the dataset or a cell of a numerical column that is not a
        number raises ``DataError`` (file, line, item); unknown categories and missing
        numbers are encoded, not refused."""
        check_columns(dataset, self.spec)
        blocks = [scaler.encode(numbers_of(dataset, scaler.column)) for scaler in self.numerical]
        blocks += [encoder.encode(categories_of(dataset, encoder.column)) for encoder in self.categorical]
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(dataset), 0), dtype=np.float32)

    def to_json(self) -> dict:
        """Plain JSON (lists, numbers, strings) for the run's config."""
        return {
            "format": FORMAT,
            "spec": self.spec.to_json(),
            "dim": self.dim,
            "numerical": [scaler.to_json() for scaler in self.numerical],
            "categorical": [encoder.to_json() for encoder in self.categorical],
        }

    @classmethod
    def from_json(cls, data: dict) -> TabularPreprocessor:
        """Inverse of ``to_json``; a damaged document raises ``DataError``."""
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            made = cls(
                spec=TabularSpec.from_json(data["spec"]),
                numerical=tuple(NumberScaler.from_json(entry) for entry in data["numerical"]),
                categorical=tuple(CategoryEncoder.from_json(entry) for entry in data["categorical"]),
            )
            if made.dim != int(data["dim"]):
                raise ValueError(f"{made.dim} components, the run recorded {data['dim']}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"malformed tabular preprocessor ({type(exc).__name__}: {exc})", "the run's config.json is damaged; retrain") from None
        return made


def fit_tabular(spec: TabularSpec, dataset) -> TabularPreprocessor:
    """Fit the spec's scalers and encoders on ``dataset`` (the training split only)."""
    spec.check()
    check_columns(dataset, spec)
    numerical = []
    for column in spec.num_cols:
        values = numbers_of(dataset, column)
        if np.isnan(values).all():
            raise DataError(
                f"numerical column {column!r} of {dataset.source} has no numbers in the {len(dataset)} training items",
                "fill it in, or leave it out of --num-cols",
            )
        numerical.append(NumberScaler.fit(column, values, spec.scaling))
    categorical = [CategoryEncoder.fit(column, categories_of(dataset, column)) for column in spec.cat_cols]
    return TabularPreprocessor(spec=spec, numerical=tuple(numerical), categorical=tuple(categorical))


def check_columns(dataset, spec: TabularSpec) -> None:
    """Every feature column of ``spec`` must exist in ``dataset`` (cells may be empty)."""
    present = set(dataset.column_names)
    absent = [column for column in spec.feature_columns if column not in present]
    if absent:
        raise DataError(
            f"{dataset.source} has no column {absent[0]!r}, which the tabular feature reads "
            f"(columns: {', '.join(dataset.column_names)})",
            "add the column (cells may be empty), or fix --cat-cols/--num-cols/--columns",
        )


def numbers_of(dataset, column: str) -> np.ndarray:
    """The column as float64 ``(N,)`` with ``NaN`` for missing cells; a cell that is not a
    number raises ``DataError`` naming file, line and item."""
    out = np.empty(len(dataset), dtype=np.float64)
    for row, record in enumerate(dataset.records):
        value = record.values.get(column)
        try:
            number = number_or_missing(value)
        except NotANumber:
            raise DataError(
                f"{where(dataset.source, record.line, record.id)}: numerical column {column!r} holds {value!r}, not a number",
                "fix the cell (leave it empty for a missing value), or declare the column with --cat-cols",
            ) from None
        out[row] = np.nan if number is None else number
    return out


def categories_of(dataset, column: str) -> list[str]:
    """The column's cells as category keys (see ``category_key``)."""
    return [category_key(record.values.get(column)) for record in dataset.records]
