"""The teacher's side of distillation: its modality groups, and its outputs on every view
of a dataset, computed once and cached beside the teacher run.

The cache file (``TEACHER/distill-cache/<key>.safetensors``) holds, per view and task, the
teacher's logits for every item, and its representation on the full input; its key is a
digest of the teacher's weights, the dataset's item ids and file bytes, and the views, so
a changed teacher or dataset never reads stale outputs. Its header names the item ids, so
rows are looked up by id, not position. A teacher directory that cannot be written is
used without a cache (the outputs are computed again next time).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from mmtk.distill.views import TEACHER_HIDDEN, Views, teacher_key, without
from mmtk.errors import DataError, UsageError

CACHE_DIR = "distill-cache"
#: Feature modalities that are one group for MSD: word pieces are the text.
GROUP_OF = {"tokens": "text"}


def modality_groups(features: list[dict]) -> dict[str, list[str]]:
    """``{group: [input names]}`` from a run config's ``features`` (``ref``, ``modality``)."""
    groups: dict[str, list[str]] = {}
    for entry in features:
        groups.setdefault(GROUP_OF.get(entry["modality"], entry["modality"]), []).append(entry["ref"])
    return groups


def _digest(teacher, dataset, views: Views) -> str:
    h = hashlib.sha256()
    h.update(str(teacher.config.get("weights_sha256")).encode())
    h.update(json.dumps(views.removed, sort_keys=True).encode())
    h.update("\n".join(dataset.ids).encode())
    source = Path(dataset.source)
    if source.is_file():
        with open(source, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:32]


def teacher_outputs(teacher, dataset, store, views: Views, *, device: str = "auto", cache: bool = True) -> tuple[dict[str, np.ndarray], bool]:
    """``({teacher_key(view, task) | TEACHER_HIDDEN: (N, ...) float32}, read_from_cache)``
    for the items of ``dataset`` in order."""
    path = Path(teacher.path) / CACHE_DIR / f"{_digest(teacher, dataset, views)}.safetensors"
    if cache and path.is_file():
        return _read(path, dataset.ids), True
    outputs = _compute(teacher, dataset, store, views, device)
    if cache:
        _write(path, outputs, dataset.ids)
    return outputs, False


def _compute(teacher, dataset, store, views: Views, device: str) -> dict[str, np.ndarray]:
    from mmtk.device import resolve_device
    from mmtk.inference import run_source
    from mmtk.models.inference import cpu_threads, forward_all

    source = run_source(teacher, dataset, store, device=device)
    outputs: dict[str, np.ndarray] = {}
    with cpu_threads(resolve_device(device)):
        for view, removed in views.removed.items():
            logits, _ = forward_all(_View(teacher.model, removed), source)
            for task, values in logits.items():
                outputs[teacher_key(view, task)] = values.float().cpu().numpy()
        hidden, _ = forward_all(_Hidden(teacher.model), source)
        outputs[TEACHER_HIDDEN] = hidden["hidden"].float().cpu().numpy()
    return outputs


class _View(torch.nn.Module):
    """The teacher with a view's modalities removed, as ``forward_all`` runs a model."""

    def __init__(self, model, removed):
        super().__init__()
        self.model, self.removed = model, tuple(removed)

    def forward(self, batch):
        return self.model(without(batch, self.removed))


class _Hidden(torch.nn.Module):
    """The teacher's representation on the full input, as a one-output model."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return {"hidden": self.model.represent(batch)}


def _write(path: Path, outputs: dict[str, np.ndarray], ids: list[str]) -> None:
    from safetensors.numpy import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        save_file({k: np.ascontiguousarray(v) for k, v in outputs.items()}, str(partial), metadata={"ids": json.dumps(ids)})
        partial.replace(path)
    except OSError:
        return  # a read-only teacher: used without a cache


def _read(path: Path, ids: list[str]) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            cached_ids = json.loads(handle.metadata()["ids"])
            outputs = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is damaged ({' '.join(str(exc).split())})", f"delete {path.parent} and run again") from None
    if cached_ids != ids:
        raise DataError(f"{path} holds the outputs of other items than its key says", f"delete {path.parent} and run again")
    bad = [key for key, values in outputs.items() if len(values) != len(ids) or not np.isfinite(values).all()]
    if bad:
        raise DataError(f"{path}: {bad[0]} has the wrong number of rows or non-finite values", f"delete {path.parent} and run again")
    return outputs


def check_teacher(teacher, groups: dict[str, list[str]], unimodal: bool) -> None:
    """Refuse a teacher whose outputs MSD cannot use: one that cannot ignore an absent
    modality, or whose tasks are not classification."""
    from mmtk.models import MODELS

    if unimodal and not MODELS.capabilities(teacher.model_name).get("missing"):
        able = [name for name in MODELS.names() if MODELS.capabilities(name).get("missing")]
        raise UsageError(
            f"teacher {teacher.path} ({teacher.model_name}) cannot ignore an absent modality, which MSD's unimodal views need",
            f"use --msd none, or a teacher of a model that can: {', '.join(able)}",
        )
    regression = [task for task in teacher.tasks if teacher.kind(task) == "regression"]
    if regression:
        raise UsageError(f"teacher task {regression[0]!r} is a regression", "distillation needs classification tasks")
    if unimodal and len(groups) < 2:
        raise UsageError(
            f"teacher {teacher.path} has one modality ({', '.join(groups)}): MSD distils each modality alone",
            "give a teacher over two modalities, or use --msd none",
        )

