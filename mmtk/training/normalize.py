"""Per-feature standardisation fitted on the training part, saved in the run and applied
by evaluate and predict: ``(x - mean) / std`` per input dimension.

Why: the models' only other normalisation is a per-item LayerNorm, which cannot undo
dimensions on very different scales (MFCC's c0 is hundreds of times the other
coefficients); standardised inputs let the default learning rate train every dimension.
``auto`` (the default) standardises only such inputs: those whose largest per-dimension
standard deviation is over ``SCALE_SPREAD`` times the median one (pooled MFCC: 53-74).
Embeddings whose dimensions share one scale (MiniLM: 1.3) are left to the LayerNorm:
standardising them measured worse (Clothing, fused gmu: accuracy 0.912 against 0.931),
since it inflates dimensions that barely vary into unit-variance noise.
Sequences are standardised over their valid steps and padding stays zero. Absent items
(``present`` False) are left out of the statistics and stay zero (the training mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_STD = 1e-6
SCALE_SPREAD = 10.0
MODES = ("auto", "all", "none")
READ_CHUNK = 64  # items per read when fitting on sequences left in the store (bounds memory)


@dataclass
class Standardizer:
    """``stats``: input name -> ``(mean, std)`` float32 arrays of the input's width."""

    stats: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def fit(cls, gathered: dict, mode: str = "all", scaled: tuple = ()) -> Standardizer | None:
        """Statistics of the inputs of ``gathered`` (``mmtk.features.Gathered``, the
        training part only) that ``mode`` standardises (None when none). ``auto`` leaves
        out the inputs named in ``scaled`` (already scaled by their source: ``tabular``,
        whose 0/1 columns and missing flags would otherwise look widely spread)."""
        if mode not in MODES:
            raise ValueError(f"unknown standardisation {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "none":
            return None
        # Word pieces are ids, not measurements: nothing to standardise.
        stats = {name: _moments(item) for name, item in gathered.items() if item.kind != "tokens"}
        if mode == "auto":
            stats = {
                name: (mean, std) for name, (mean, std) in stats.items()
                if name not in scaled and std.max() > SCALE_SPREAD * np.median(std)
            }
        # A constant dimension is centred, not divided by ~0.
        stats = {name: (mean, np.where(std > MIN_STD, std, 1.0).astype(np.float32)) for name, (mean, std) in stats.items()}
        return cls(stats) if stats else None

    def apply_arrays(self, name: str, values: np.ndarray, lengths: np.ndarray | None = None, present=None) -> np.ndarray:
        """``values`` (``(N, d)`` or ``(N, T, d)``) standardised, as a new float32 array."""
        if name not in self.stats:
            return values
        mean, std = self.stats[name]
        out = (values - mean) / std
        if lengths is not None:
            out *= (np.arange(values.shape[1])[None, :] < lengths[:, None])[:, :, None]
        if present is not None:
            out[~present] = 0.0
        return out.astype(np.float32, copy=False)

    def apply_tensors(self, features: dict, masks: dict) -> None:
        """Standardise a batch's freshly read tensors in place (the store-backed source's
        per-batch transform: no temporaries the size of the batch)."""
        import torch

        for name, (mean, std) in self.stats.items():
            if name not in features:
                continue
            x = features[name].sub_(torch.from_numpy(mean)).div_(torch.from_numpy(std))
            if name in masks and not bool(masks[name].all()):  # padding goes back to zero
                x.mul_(masks[name][..., None])

    def to_json(self) -> dict:
        return {name: {"mean": mean.tolist(), "std": std.tolist()} for name, (mean, std) in self.stats.items()}

    @classmethod
    def from_json(cls, data: dict | None) -> Standardizer | None:
        if not data:
            return None
        return cls({
            name: (np.asarray(entry["mean"], dtype=np.float32), np.asarray(entry["std"], dtype=np.float32))
            for name, entry in data.items()
        })


def _moments(item) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (unfloored) over the valid rows (vectors) or valid steps (sequences) of
    present items."""
    total = sq = None
    count = 0
    for rows in _valid_rows(item):
        rows = rows.astype(np.float64)
        total = rows.sum(axis=0) if total is None else total + rows.sum(axis=0)
        sq = (rows * rows).sum(axis=0) if sq is None else sq + (rows * rows).sum(axis=0)
        count += len(rows)
    if not count:
        dim = item.dim
        return np.zeros(dim, dtype=np.float32), np.ones(dim, dtype=np.float32)
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def _valid_rows(item):
    """The feature rows statistics are taken over, in chunks."""
    present = item.present
    if item.values is not None and item.lengths is None:
        yield item.values if present is None else item.values[present]
        return
    n = len(item.lengths) if item.values is not None else len(item.reader)
    for start in range(0, n, READ_CHUNK):
        positions = np.arange(start, min(n, start + READ_CHUNK))
        if item.values is not None:
            steps, lengths = item.values[positions], item.lengths[positions]
        else:
            steps, lengths = item.reader.read(positions)
        valid = np.arange(steps.shape[1])[None, :] < lengths[:, None]
        yield steps[valid]
