"""What every plot shares: matplotlib on its Agg backend (no display), titles, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: plots are written to files, on machines
    with no display, so the backend is fixed before pyplot is first imported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def titled(title: str, what: str) -> str:
    """``"TASK: what"``, or ``what`` alone when there is no task name."""
    return f"{title}: {what}" if title else what


def save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` and free it (pyplot keeps every open figure)."""
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def decisions(kind: str, outputs: np.ndarray) -> np.ndarray:
    """Predicted classes as ``mmtk.metrics`` decides them: the most probable class
    (binary, multi-class), or every label with probability >= 0.5 (multi-label)."""
    outputs = np.asarray(outputs)
    return (outputs >= 0.5).astype(np.int64) if kind == "multilabel" else outputs.argmax(axis=1)
