"""Adversarial input perturbation during training (``mmtk train --perturb fgsm``).

FGSM (Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015) moves every input one step of size ``eps`` along the sign of the loss
gradient, ``x_adv = x + eps * sign(grad_x J(x))``, the direction that increases the loss
most under an L-infinity budget. COIN-style multimodal systems apply it to the cached
feature vectors of each modality (not to pixels or tokens), which is what this does:
every floating-point feature input of a batch is perturbed, in the space the model sees
(after ``--standardize``, so ``eps`` is in standardised units for standardised inputs).

The training loss is the paper's adversarial objective with its ``alpha = 0.5``:
``J~ = 0.5 J(x) + 0.5 J(x_adv)``, not the adversarial loss alone. The clean loss has to be
computed anyway (its gradient gives the direction), so keeping it costs nothing extra,
and it keeps the model fitting the clean inputs that validation, evaluate and predict
see; training on perturbed inputs alone shifts the decision boundary away from the
clean data and, for large ``eps``, stops it fitting them at all. The perturbation is a
constant of the step (no gradient flows through ``sign``), as in the paper.

Padded steps of a sequence (``batch.masks`` False) and absent modalities
(``batch.present`` False) are left untouched: they carry no information, and a model
that masks them must not see them move. Validation scores clean inputs only (``terms``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from mmtk.errors import UsageError
from mmtk.training.batch import Batch
from mmtk.training.objectives import TOTAL

#: ``--perturb`` methods.
PERTURBATIONS = ("none", "fgsm")
CLEAN, ADVERSARIAL = "fgsm.clean", "fgsm.adversarial"


def fgsm_step(x: torch.Tensor, grad: torch.Tensor | None, eps: float, mask: torch.Tensor | None = None,
              present: torch.Tensor | None = None) -> torch.Tensor:
    """``x + eps * sign(grad)`` at valid steps (``mask`` True, ``(B, T)``) of present items
    (``present`` True, ``(B,)``); ``x`` elsewhere, and where ``grad`` is None (the loss does
    not depend on ``x``). Detached: the step is a constant of the training step."""
    x = x.detach()
    if grad is None or eps == 0:
        return x
    step = eps * torch.sign(grad.detach()).to(x.dtype)
    if mask is not None:
        step = step * mask[:, :, None].to(x.dtype)
    if present is not None:
        step = step * present.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return x + step


@dataclass(frozen=True)
class FGSMObjective:
    """``inner`` (any objective with ``terms``) trained on clean and FGSM-perturbed inputs,
    averaged: every term of ``inner`` is ``0.5 * (clean + adversarial)``, and the two totals
    are logged as ``fgsm.clean`` and ``fgsm.adversarial``. Holds no state a step changes."""

    inner: object
    eps: float

    def __call__(self, model, batch: Batch) -> dict[str, torch.Tensor]:
        names = [name for name, x in batch.features.items() if x.is_floating_point()]
        if not names:
            return self.inner(model, batch)
        leaves = {name: batch.features[name].detach().requires_grad_(True) for name in names}
        clean = self.inner(model, replace(batch, features={**batch.features, **leaves}))
        # retain_graph: the loop backpropagates the clean loss through the same graph.
        grads = torch.autograd.grad(clean[TOTAL], [leaves[n] for n in names], retain_graph=True, allow_unused=True)
        perturbed = {
            name: fgsm_step(batch.features[name], grad, self.eps, batch.masks.get(name), batch.present.get(name))
            for name, grad in zip(names, grads)
        }
        adversarial = self.inner(model, replace(batch, features={**batch.features, **perturbed}))
        terms = {name: 0.5 * (value + adversarial[name]) for name, value in clean.items()}
        terms[CLEAN], terms[ADVERSARIAL] = clean[TOTAL].detach(), adversarial[TOTAL].detach()
        return terms

    def terms(self, outputs: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """Validation: the inner objective's terms of clean outputs."""
        return self.inner.terms(outputs, batch)


def check_perturbation(method: str | None, eps: float) -> dict | None:
    """The run's record of ``--perturb method --perturb-eps eps`` (None for no
    perturbation); a bad method, a negative or non-finite ``eps``, or an ``eps`` without a
    method is a ``UsageError``."""
    method = method or "none"
    if method not in PERTURBATIONS:
        raise UsageError(f"unknown --perturb {method!r}", f"choose one of: {', '.join(PERTURBATIONS)}")
    if not (eps >= 0 and eps != float("inf")):
        raise UsageError(f"--perturb-eps {eps:g} is not a step size", "give a finite value >= 0, e.g. 0.05")
    if method == "none":
        if eps:
            raise UsageError(f"--perturb-eps {eps:g} is given without a perturbation", "add --perturb fgsm, or drop --perturb-eps")
        return None
    return {"method": method, "eps": float(eps), "loss": "0.5 clean + 0.5 adversarial"}


def perturbed_objective(objective, method: str | None, eps: float):
    """``objective`` wrapped for ``--perturb method`` (``none``/None: unchanged)."""
    return objective if check_perturbation(method, eps) is None else FGSMObjective(objective, float(eps))
