"""Running a model over a batch source (or in-memory feature tensors), in chunks, without
gradients.

Used for validation during training and by evaluate and predict, so the three compute
outputs the same way.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np
import torch



@contextmanager
def cpu_threads(device: str) -> Iterator[None]:
    """On CPU, run the body with mmtk's torch thread count (one by default, see
    ``mmtk.device``) and restore the caller's afterwards. Measured on the 2-core machine
    with other processes busy: GMU training ran 1,400-2,300 samples/s with one thread and
    180-280 with two, which wait for each other at every small matrix product."""
    if not device.startswith("cpu"):
        yield
        return
    from mmtk.device import configure_cpu_threads, cpu_threads_per_process

    previous = configure_cpu_threads(cpu_threads_per_process())
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def as_tensors(features: Mapping[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    """Feature arrays as float32 tensors on ``device`` (no copy on CPU when possible)."""
    return {name: torch.as_tensor(np.asarray(array, dtype=np.float32)).to(device) for name, array in features.items()}


@dataclass(frozen=True)
class Forwarded:
    """What one pass of a model over a source gave: ``logits`` per task ``(N, units)``;
    ``weights`` per modality ``(N,)`` (with ``explain``, else None); ``queries`` per task
    the class queries' decoder outputs ``(N, units, hidden)`` (with ``queries``, else None)."""

    logits: dict
    weights: dict | None = None
    queries: dict | None = None


def has_class_queries(model) -> bool:
    """Whether ``model`` classifies with a class-query decoder (``mm-transformer
    --model-arg classifier=class-query``)."""
    queries = getattr(model, "class_queries", None)
    return callable(queries) and queries() is not None


@torch.no_grad()
def forward_all(model, source, *, explain: bool = False) -> tuple[dict, dict | None]:
    """Logits per task (``{task: Tensor (N, units)}``) over every item of ``source`` (a
    batch source, or ``{name: Tensor}`` of whole inputs), in order, and with ``explain``
    the model's per-modality weights (``{modality: Tensor (N,)}``)."""
    out = forward_outputs(model, source, explain=explain)
    return out.logits, out.weights


@torch.no_grad()
def forward_outputs(model, source, *, explain: bool = False, queries: bool = False) -> Forwarded:
    """``forward_all``, and with ``queries`` each chunk's class-query decoder outputs too
    (``model.query_outputs``), gathered in the same pass over the source."""
    from mmtk.training.sources import InMemorySource

    if isinstance(source, Mapping):
        source = InMemorySource(dict(source), {})
    was_training = model.training
    model.eval()
    logits: dict[str, list[torch.Tensor]] = {}
    weights: dict[str, list[torch.Tensor]] = {}
    decoded: dict[str, list[torch.Tensor]] = {}
    # Each source says how many items a chunk holds (sequences and store reads take fewer).
    for chunk in source.batches(source.eval_batch):
        for task, out in model(chunk).items():
            logits.setdefault(task, []).append(out)
        if explain:
            for name, weight in model.explain(chunk).items():
                weights.setdefault(name, []).append(weight)
        if queries:
            for task, out in model.query_outputs(chunk).items():
                decoded.setdefault(task, []).append(out)
    model.train(was_training)

    def joined(parts):
        return {name: torch.cat(values) for name, values in parts.items()}

    return Forwarded(joined(logits), joined(weights) if explain else None, joined(decoded) if queries else None)
