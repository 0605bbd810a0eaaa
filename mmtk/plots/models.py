"""Plots of what a model computed besides its outputs: the weight it gave each modality
(models with gates, ``explain``), and where a class-query decoder puts its items
(``mm-transformer --model-arg classifier=class-query``)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mmtk.plots.common import pyplot, save, titled

PROJECTIONS = ("pca", "tsne")
# Fewer items than this leave no plane to project onto (PCA needs two points per axis).
MIN_PROJECTED_ITEMS = 3
# t-SNE costs grow with the square of the points; beyond this many items a seeded sample
# is drawn (PCA takes every item).
TSNE_MAX_ITEMS = 1000


def membership(kind: str, labels: np.ndarray, count: int) -> np.ndarray:
    """``(N, count)`` bool: whether each item truly has each class (label)."""
    labels = np.asarray(labels)
    if kind == "multilabel":
        return labels.astype(bool)
    return labels[:, None] == np.arange(count)[None, :]


def mean_weights_per_class(kind: str, labels: np.ndarray, weights: Mapping[str, np.ndarray], classes: Sequence[str]) -> np.ndarray:
    """``(classes, modalities)``: the mean weight of each modality over the items of each
    true class (NaN for a class without items), modalities in ``weights``' order."""
    has = membership(kind, labels, len(classes))
    stacked = np.stack([np.asarray(w, dtype=np.float64) for w in weights.values()], axis=1)
    out = np.full((len(classes), stacked.shape[1]), np.nan)
    for c in range(len(classes)):
        if has[:, c].any():
            out[c] = stacked[has[:, c]].mean(axis=0)
    return out


def modality_weights(kind: str, labels: np.ndarray, weights: Mapping[str, np.ndarray], classes: Sequence[str], path: Path, title: str) -> Path:
    """Grouped bars: for each true class, the mean weight the model gave each modality
    (the gate activation by genre figure of Arevalo et al.'s GMU and of MulT-GMU)."""
    plt = pyplot()
    means = mean_weights_per_class(kind, labels, weights, classes)
    names = list(weights)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.6 * len(classes) * max(1, len(names) / 2) + 2), 4.2))
    width = 0.8 / len(names)
    x = np.arange(len(classes))
    for m, name in enumerate(names):
        ax.bar(x - 0.4 + width * (m + 0.5), np.nan_to_num(means[:, m]), width=width, label=name)
    ax.set_xticks(x, list(classes), rotation=45 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center")
    # Head room above the tallest bar for the legend.
    ax.set_ylim(0, 1.2 * max(float(np.nanmax(means)) if np.isfinite(means).any() else 1.0, 0.5))
    ax.set_ylabel("mean modality weight")
    ax.set_xlabel("true class" if kind != "multilabel" else "label present")
    ax.legend(fontsize=8, loc="upper right", ncol=min(len(names), 3))
    ax.set_title(titled(title, "modality weight per class"))
    return save(fig, path)


def project(points: np.ndarray, marks: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``points`` and ``marks`` in 2-D. PCA is fitted on ``points`` alone and maps the
    marks into the same plane; t-SNE has no such map, so it embeds both together."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; choose one of {PROJECTIONS}")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(points)
        return pca.transform(points), pca.transform(marks)
    from sklearn.manifold import TSNE

    both = np.concatenate([points, marks])
    # Perplexity must stay below the number of points.
    embedded = TSNE(n_components=2, perplexity=float(min(30.0, (len(both) - 1) / 3)), init="pca", random_state=seed).fit_transform(both)
    return embedded[: len(points)], embedded[len(points):]


def class_query_projection(
    kind: str, labels: np.ndarray, outputs: np.ndarray, queries: np.ndarray, classes: Sequence[str], path: Path, title: str,
    method: str = "pca", seed: int = 0,
) -> Path:
    """A 2-D projection of one task's class-query decoder outputs: one point per (item,
    class query), coloured by the query's class, filled where the item truly has that
    class and hollow where it does not; the learned class queries (the decoder's inputs)
    are the labelled stars. ``outputs`` ``(N, units, hidden)``, ``queries`` ``(units,
    hidden)``; a binary task has one query, for its positive class."""
    outputs, queries = np.asarray(outputs, dtype=np.float64), np.asarray(queries, dtype=np.float64)
    labels = np.asarray(labels)
    units = queries.shape[0]
    names = [str(classes[1])] if kind == "binary" else [str(c) for c in classes]
    has = (labels == 1)[:, None] if kind == "binary" else membership(kind, labels, units)
    if method == "tsne" and len(outputs) > TSNE_MAX_ITEMS:
        keep = np.sort(np.random.default_rng(seed).choice(len(outputs), TSNE_MAX_ITEMS, replace=False))
        outputs, has = outputs[keep], has[keep]
    flat = outputs.reshape(-1, outputs.shape[-1])
    query_of = np.tile(np.arange(units), len(outputs))
    points, marks = project(flat, queries, method, seed)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    colours = plt.get_cmap("tab20" if units > 10 else "tab10")
    member = has.reshape(-1)
    for q in range(units):
        colour = colours(q % colours.N)
        mine = query_of == q
        ax.scatter(*points[mine & member].T, s=12, color=colour, alpha=0.7, label=f"{names[q]}: has it")
        ax.scatter(*points[mine & ~member].T, s=12, facecolors="none", edgecolors=colour, alpha=0.5, label=f"{names[q]}: lacks it")
        ax.scatter(*marks[q], marker="*", s=320, color=colour, edgecolors="black", linewidths=1.0, zorder=5)
        ax.annotate(names[q], marks[q], xytext=(6, 6), textcoords="offset points", fontsize=9, weight="bold")
    ax.set_xlabel(f"{method.upper() if method == 'pca' else 't-SNE'} 1")
    ax.set_ylabel(f"{method.upper() if method == 'pca' else 't-SNE'} 2")
    ax.legend(fontsize=7, loc="best", ncol=2 if units > 3 else 1, markerscale=1.2)
    ax.set_title(titled(title, "class-query decoder outputs (stars: the class queries)"))
    return save(fig, path)
