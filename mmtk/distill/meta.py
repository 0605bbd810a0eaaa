"""``--msd meta``: view weights from a meta-learner trained online, as Meta-Weight-Net
(Shu et al., NeurIPS 2019) trains its loss-to-weight network.

The meta-learner (an MLP with sigmoid outputs) maps the teacher's probability vectors
on every view (full and each modality alone, every task) to one weight per view. Each
training step:

1. look ahead: the student's loss on the training batch with the meta-learner's weights
   (differentiable in the meta-learner), one SGD step of the student's parameters taken
   on a copy (``torch.func.functional_call`` with ``p - lr * grad``, ``create_graph``);
2. the looked-ahead student's cross-entropy on a batch of the meta set (the validation
   split) is backpropagated into the meta-learner alone, which takes an Adam step;
3. the real step: the student's loss with the updated meta-learner's weights (no
   gradient into it), which ``fit`` backpropagates as usual.

``lookahead="heads"`` looks ahead with the task heads' parameters only, over the
student's representation computed once without gradients: the approximation of
last-layer meta-learning (as in FaMUS, Xu et al. CVPR 2021), far cheaper on a large
student; ``"all"`` looks ahead with every parameter, as Meta-Weight-Net does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call

from mmtk.distill.losses import probabilities
from mmtk.distill.objective import DistillObjective
from mmtk.distill.views import teacher_key
from mmtk.training.batch import Batch
from mmtk.training.objectives import TOTAL

LOOKAHEAD = ("all", "heads")


class MetaWeightNet(nn.Module):
    """Teacher probabilities on every view and task -> one sigmoid weight per view."""

    def __init__(self, views: list[str], task_widths: dict[str, int], hidden: int = 100):
        super().__init__()
        self.views = list(views)
        self.tasks = list(task_widths)
        width = len(self.views) * sum(task_widths.values())
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, len(self.views)), nn.Sigmoid())

    def forward(self, batch: Batch, kinds: dict[str, str]) -> dict[str, torch.Tensor]:
        signals = [probabilities(kinds[task], batch.targets[teacher_key(view, task)]) for view in self.views for task in self.tasks]
        weights = self.net(torch.cat(signals, dim=-1))
        return {view: weights[:, i] for i, view in enumerate(self.views)}


def probability_width(kind: str, units: int) -> int:
    """Width of ``probabilities(kind, logits)`` for a head of ``units`` outputs."""
    return 2 if kind == "binary" else units


@dataclass
class MetaDistillObjective:
    """A ``fit`` objective: the meta update, then ``base``'s terms with the updated
    weights, plus ``meta`` (the looked-ahead student's meta-set loss, for the log)."""

    base: DistillObjective
    net: MetaWeightNet
    optimizer: torch.optim.Optimizer
    meta_batches: Iterator[Batch]
    lookahead_lr: float
    lookahead: str = "all"
    _names: list[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.lookahead not in LOOKAHEAD:
            raise ValueError(f"lookahead must be one of {LOOKAHEAD}, not {self.lookahead!r}")

    def __call__(self, model, batch: Batch) -> dict[str, torch.Tensor]:
        # The student runs once: its per-view losses are weighed by the meta-learner for
        # the look-ahead and, after the meta update, by its new weights for the real step.
        parts = self.base.parts(model, batch)
        meta_loss = self.meta_update(model, batch, parts)
        with torch.no_grad():
            weights = self.net(batch, self.base.kinds)
        terms = self.base.combine(parts, weights)
        terms["meta"] = meta_loss
        return terms

    def terms(self, outputs: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        return self.base.terms(outputs, batch)

    def meta_update(self, model, batch: Batch, parts: dict | None = None) -> torch.Tensor:
        """One meta-learner step; returns the looked-ahead student's meta-set loss.
        ``parts``: the student's loss parts on ``batch`` (computed here if not given)."""
        parts = parts if parts is not None else self.base.parts(model, batch)
        params = self._params(model)
        weights = self.net(batch, self.base.kinds)
        loss = self.base.combine(parts, weights)[TOTAL]
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, retain_graph=True, allow_unused=True)
        fast = {n: p if g is None else p - self.lookahead_lr * g for (n, p), g in zip(params.items(), grads)}
        meta_batch = next(self.meta_batches)
        meta_outputs = self._looked_ahead(model, fast, meta_batch)
        meta_loss = self.base.supervised.terms(meta_outputs, meta_batch)[TOTAL]
        meta_params = list(self.net.parameters())
        for p, g in zip(meta_params, torch.autograd.grad(meta_loss, meta_params)):
            p.grad = g
        self.optimizer.step()
        return meta_loss.detach()

    def _params(self, model) -> dict[str, torch.Tensor]:
        """The parameters the look-ahead updates (their names read once per model)."""
        if self._names is None:
            prefix = "" if self.lookahead == "all" else "heads."
            self._names = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefix)]
        named = dict(model.named_parameters())
        return {name: named[name] for name in self._names}

    def _looked_ahead(self, model, fast: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """The student's logits on ``batch`` with the looked-ahead parameters ``fast``
        (all of them; or the heads' over the representation, computed without gradient)."""
        if self.lookahead == "all":
            return functional_call(model, fast, (batch,))
        with torch.no_grad():
            hidden = model.represent(batch)
        return functional_call(model.heads, {name[len("heads."):]: p for name, p in fast.items()}, (hidden,))


def cycle(source, batch_size: int, seed: int) -> Iterator[Batch]:
    """Batches of ``source`` forever, reshuffled each pass (the meta set's stream)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from source.batches(batch_size, generator=generator)
