"""Fitted per-column preprocessors: one-hot categories and scaled, imputed numbers.

Both are frozen data holding only plain numbers and strings, so a run stores them as
JSON and rebuilds them without running any code (no pickle). They are fitted on the
training split only; applying them never looks at other rows of the data being encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtk.tabular.spec import SCALINGS

#: Most reference points a quantile scaler keeps (scikit-learn's default n_quantiles).
MAX_QUANTILES = 1000


@dataclass(frozen=True)
class CategoryEncoder:
    """One-hot over the training categories plus an ``unknown`` indicator column: a
    category never seen in training encodes as all zeros with the indicator set, never as
    an error (new data routinely has new codes)."""

    column: str
    categories: tuple[str, ...]

    @classmethod
    def fit(cls, column: str, keys: list[str]) -> CategoryEncoder:
        """Categories of the training cells (``category_key`` strings), sorted."""
        return cls(column=column, categories=tuple(sorted(set(keys))))

    @property
    def width(self) -> int:
        return len(self.categories) + 1

    @property
    def output_names(self) -> list[str]:
        return [f"{self.column}={c}" for c in self.categories] + [f"{self.column}=<unknown>"]

    def encode(self, keys: list[str]) -> np.ndarray:
        """``(N, width)`` float32 one-hot rows; the last column flags unknown categories."""
        index = {category: i for i, category in enumerate(self.categories)}
        unknown = len(self.categories)
        positions = np.fromiter((index.get(key, unknown) for key in keys), dtype=np.int64, count=len(keys))
        out = np.zeros((len(keys), self.width), dtype=np.float32)
        out[np.arange(len(keys)), positions] = 1.0
        return out

    def to_json(self) -> dict:
        return {"column": self.column, "categories": list(self.categories)}

    @classmethod
    def from_json(cls, data: dict) -> CategoryEncoder:
        return cls(column=str(data["column"]), categories=tuple(str(c) for c in data["categories"]))


@dataclass(frozen=True)
class NumberScaler:
    """Scaling of one numerical column plus missing-value handling: a missing cell takes
    the training median (then is scaled like any value) and is flagged in a second
    output column, so the model can tell an imputed median from a real one.

    ``params`` by method: ``standard`` ``{"mean", "std"}``; ``minmax`` ``{"min", "max"}``;
    ``quantile`` ``{"quantiles": [...]}`` (training values at evenly spaced ranks, mapped
    to a uniform [0, 1] as scikit-learn's ``QuantileTransformer`` does).
    """

    column: str
    method: str
    median: float
    params: dict

    @classmethod
    def fit(cls, column: str, values: np.ndarray, method: str) -> NumberScaler:
        """Fit on the training cells (``NaN`` = missing); at least one must be a number."""
        if method not in SCALINGS:
            raise ValueError(f"unknown scaling {method!r}")
        present = values[~np.isnan(values)].astype(np.float64)
        if method == "standard":
            std = float(present.std())
            params = {"mean": float(present.mean()), "std": std if std > 0 else 1.0}
        elif method == "minmax":
            params = {"min": float(present.min()), "max": float(present.max())}
        else:
            ranks = np.linspace(0.0, 100.0, min(MAX_QUANTILES, len(present)))
            params = {"quantiles": [float(q) for q in np.percentile(present, ranks)]}
        return cls(column=column, method=method, median=float(np.median(present)), params=params)

    @property
    def width(self) -> int:
        return 2

    @property
    def output_names(self) -> list[str]:
        return [self.column, f"{self.column}=<missing>"]

    def encode(self, values: np.ndarray) -> np.ndarray:
        """``(N, 2)`` float32: the scaled value (median when missing) and the missing flag."""
        missing = np.isnan(values)
        filled = np.where(missing, self.median, values).astype(np.float64)
        return np.stack([self.scale(filled), missing.astype(np.float64)], axis=1).astype(np.float32)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """Scale numbers (no missing values) with the fitted parameters. Values outside the
        training range stay outside [0, 1] under ``minmax`` and clip to 0 or 1 under
        ``quantile``."""
        p = self.params
        if self.method == "standard":
            return (values - p["mean"]) / p["std"]
        if self.method == "minmax":
            span = p["max"] - p["min"]
            return (values - p["min"]) / (span if span > 0 else 1.0)
        quantiles = np.asarray(p["quantiles"], dtype=np.float64)
        if len(quantiles) == 1:
            return np.where(values < quantiles[0], 0.0, np.where(values > quantiles[0], 1.0, 0.5))
        references = np.linspace(0.0, 1.0, len(quantiles))
        # Interpolating upwards and downwards and averaging puts a value shared by many
        # quantiles (a common integer such as Fee 0) in the middle of its rank range.
        up = np.interp(values, quantiles, references)
        down = -np.interp(-values, -quantiles[::-1], -references[::-1])
        return 0.5 * (up + down)

    def to_json(self) -> dict:
        return {"column": self.column, "method": self.method, "median": self.median, "params": self.params}

    @classmethod
    def from_json(cls, data: dict) -> NumberScaler:
        method = str(data["method"])
        if method not in SCALINGS:
            raise ValueError(f"unknown scaling {method!r}")
        params = {key: ([float(v) for v in value] if isinstance(value, list) else float(value)) for key, value in data["params"].items()}
        return cls(column=str(data["column"]), method=method, median=float(data["median"]), params=params)
