"""Distillation losses, per item where a weighting needs them per item.

- ``kl_per_item``: KL(teacher || student) of one task's outputs at temperature ``tau``,
  one value per item: softmax distributions for multi-class, Bernoulli ones for binary
  (one logit) and multi-label (one per label, averaged over the labels, so a task's KL
  does not grow with its number of labels).
- Hidden-state baselines over ``(B, d)`` representations: ``fitnet`` (Romero et al.
  2015: the student's state regressed onto the teacher's through a learned projection),
  ``rkd_distance`` and ``rkd_angle`` (Park et al. 2019: pairwise distances normalised by
  their mean, and the angles of every triplet, matched by a Huber loss),
  ``similarity_preserving`` (Tung & Mori 2019: the row-normalised ``B x B`` similarity
  matrices matched in squared Frobenius norm over ``B^2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KD_KINDS = ("binary", "multiclass", "multilabel")


def _bernoulli_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(Bern(sigmoid(t)) || Bern(sigmoid(s))), from logits (stable: logsigmoid)."""
    p = torch.sigmoid(teacher_logits)
    log_p, log_not_p = F.logsigmoid(teacher_logits), F.logsigmoid(-teacher_logits)
    log_q, log_not_q = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)
    return p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)


def kl_per_item(kind: str, teacher_logits: torch.Tensor, student_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) at temperature ``tau`` for each item, ``(B,)``."""
    if kind not in KD_KINDS:
        raise ValueError(f"distillation needs a classification task, not {kind!r}")
    t, s = teacher_logits / tau, student_logits / tau
    if kind == "multiclass":
        log_p = F.log_softmax(t, dim=-1)
        return (log_p.exp() * (log_p - F.log_softmax(s, dim=-1))).sum(dim=-1)
    return _bernoulli_kl(t, s).mean(dim=-1)


def cross_entropy_per_item(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task loss of each item, ``(B,)`` (correctness weights and the meta set use it)."""
    if kind == "multiclass":
        return F.cross_entropy(logits, target.long(), reduction="none")
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none").mean(dim=-1)
    raise ValueError(f"distillation needs a classification task, not {kind!r}")


def probabilities(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """What the meta-learner reads of a teacher's outputs: class probabilities
    (binary as ``[1 - p, p]``) or per-label probabilities."""
    if kind == "multiclass":
        return torch.softmax(logits, dim=-1)
    p = torch.sigmoid(logits)
    return torch.cat([1 - p, p], dim=-1) if kind == "binary" else p


def fitnet(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, projection: torch.nn.Module) -> torch.Tensor:
    """Mean squared error between the projected student state and the teacher's."""
    return F.mse_loss(projection(student_hidden), teacher_hidden)


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    squared = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    # The diagonal is 0, where sqrt has an infinite gradient: keep it out of the sqrt.
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    distances = torch.zeros_like(squared)
    distances[off] = squared[off].clamp_min(1e-12).sqrt()
    return distances


def rkd_distance(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Huber loss between the two sets' pairwise distances, each divided by its mean
    off-diagonal distance (so the widths of the two states need not agree)."""
    if len(student_hidden) < 2:
        return student_hidden.sum() * 0.0
    ds, dt = _pairwise_distances(student_hidden), _pairwise_distances(teacher_hidden)
    off = ~torch.eye(len(ds), dtype=torch.bool, device=ds.device)
    ds = ds / ds[off].mean().clamp_min(1e-12)
    dt = dt / dt[off].mean().clamp_min(1e-12)
    return F.smooth_l1_loss(ds[off], dt[off])


def _angles(x: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j between i and k for every triplet: ``(B, B, B)``."""
    difference = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=2)  # [j, i] = unit(x_i - x_j)
    return torch.bmm(difference, difference.transpose(1, 2))


def rkd_angle(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Huber loss between the triplet angles of the two sets."""
    if len(student_hidden) < 3:
        return student_hidden.sum() * 0.0
    return F.smooth_l1_loss(_angles(student_hidden), _angles(teacher_hidden))


def similarity_preserving(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """``|| norm(S S^T) - norm(T T^T) ||_F^2 / B^2`` with rows L2-normalised."""
    gs = F.normalize(student_hidden @ student_hidden.T, p=2, dim=1)
    gt = F.normalize(teacher_hidden @ teacher_hidden.T, p=2, dim=1)
    return (gs - gt).pow(2).sum() / len(student_hidden) ** 2
