"""What ``evaluate`` adds for a student run (``config.json["distillation"]``): how closely
the student follows its teacher on the evaluated data.

- ``agreement``: the share of items where the student's prediction equals the
  teacher's (multi-label: the share of item-label pairs whose 0.5-thresholded
  decisions agree).
- ``kl_to_teacher``: mean KL(teacher || student) of their output distributions (T = 1).
- ``consistency_ratio`` (MSD paper, Figure 5): each item's inputs of one modality are
  replaced by another item's (a seeded derangement, the same for teacher and student),
  and an item counts as consistent when the student's prediction responds as the
  teacher's does: both keep their prediction, or both change to the same new one. Given
  per modality (``consistency``) and as their mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmtk.distill.losses import kl_per_item
from mmtk.distill.teacher import modality_groups
from mmtk.errors import UsageError

SWAP_SEED = 0


def teacher_path(student) -> Path:
    """Where a student run's teacher is (recorded relative to the run when kept in it)."""
    recorded = Path(student.config["distillation"]["teacher"])
    return recorded if recorded.is_absolute() else Path(student.path) / recorded


def distillation_report(run, dataset, store, *, device: str = "auto", student: tuple | None = None) -> dict:
    """The report of student ``run`` on ``dataset``; ``student``: ``(source, logits)``
    of the run on it, when the caller (``evaluate``) has them already."""
    from mmtk.inference import forward_source, open_run, run_source

    def logits_of(model_run, source) -> dict[str, torch.Tensor]:
        logits, _ = forward_source(model_run, source, device=device)
        return {task: values.float().cpu() for task, values in logits.items()}

    path = teacher_path(run)
    if not path.exists():
        raise UsageError(
            f"run {run.path} was distilled from {path}, which is gone: the distillation report needs the teacher",
            "restore the teacher run there, or evaluate without it by copying the run without config.json's \"distillation\"",
        )
    teacher = open_run(path, device)
    runs = {"teacher": teacher, "student": run}
    sources = {"teacher": run_source(teacher, dataset, store, device=device)}
    sources["student"] = student[0] if student else run_source(run, dataset, store, device=device)
    groups = {role: modality_groups(r.config["features"]) for role, r in runs.items()}
    shared = [group for group in groups["student"] if group in groups["teacher"]]
    tasks = [task for task in run.tasks if task in teacher.tasks and run.kind(task) != "regression"]
    base = {"teacher": logits_of(teacher, sources["teacher"])}
    base["student"] = {t: v.float().cpu() for t, v in student[1].items()} if student else logits_of(run, sources["student"])
    order = _derangement(len(dataset), SWAP_SEED)
    swapped = {
        group: {role: logits_of(r, _swap(sources[role], groups[role][group], order)) for role, r in runs.items()}
        for group in shared
    }
    per_task = {}
    for task in tasks:
        kind = run.kind(task)
        t, s = base["teacher"][task], base["student"][task]
        consistency = {
            group: _consistent(kind, t, s, outputs["teacher"][task], outputs["student"][task]) for group, outputs in swapped.items()
        }
        per_task[task] = {
            "agreement": float(_decisions(kind, t).eq(_decisions(kind, s)).float().mean()),
            "kl_to_teacher": float(kl_per_item(kind, t, s).mean()),
            "consistency": consistency,
            "consistency_ratio": float(np.mean(list(consistency.values()))) if consistency else float("nan"),
        }
    summary = {key: float(np.mean([entry[key] for entry in per_task.values()])) for key in ("agreement", "kl_to_teacher", "consistency_ratio")}
    return {"teacher": str(path), **summary, "tasks": per_task}


def _decisions(kind: str, logits: torch.Tensor) -> torch.Tensor:
    if kind == "multiclass":
        return logits.argmax(dim=-1)
    return logits >= 0  # sigmoid(logit) >= 0.5


def _consistent(kind: str, teacher, student, teacher_swapped, student_swapped) -> float:
    t0, s0 = _decisions(kind, teacher), _decisions(kind, student)
    t1, s1 = _decisions(kind, teacher_swapped), _decisions(kind, student_swapped)
    t_changed, s_changed = t0.ne(t1), s0.ne(s1)
    same = (~t_changed & ~s_changed) | (t_changed & s_changed & t1.eq(s1))
    return float(same.float().mean())


def _derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation moving every item (a rotation of a shuffled order)."""
    if n < 2:
        return np.arange(n)
    shuffled = np.random.default_rng(seed).permutation(n)
    order = np.empty(n, dtype=np.int64)
    order[shuffled] = np.roll(shuffled, 1)
    return order


def _swap(source, names: list[str], order: np.ndarray):
    """A copy of an in-memory source whose inputs ``names`` are item ``order[i]``'s at row ``i``."""
    from mmtk.training.sources import InMemorySource

    index = torch.as_tensor(order, device=next(iter(source.features.values())).device)

    def take(tensors: dict) -> dict:
        return {name: values[index] if name in names else values for name, values in tensors.items()}

    return InMemorySource(take(source.features), source.targets, lengths=take(source.lengths), present=take(source.present), target_masks=source.target_masks)
