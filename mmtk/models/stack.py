"""The meta-estimator of a stacking ensemble (``mmtk train --model stack``): a small
model over its members' scores, fitted whole by scikit-learn and kept as torch buffers.

Inputs are the members' outputs (``run:members/NAME`` features, ``mmtk.features``
``RunOutputs``): per member, its tasks in order, a binary task as p(positive), a
multi-class task as its class probabilities, a multi-label task as one probability per
label. Every member predicts the same tasks, so each input is ``sum(head units)`` wide
and the columns of task ``t`` sit at the same offsets in every member. Each task (each
label of a multi-label task) gets one part reading those columns of every member, laid
out as scikit-learn's ``StackingClassifier`` lays out its final estimator's input
(``stack_method="predict_proba"``): member after member, a binary member's p(positive)
only, a multi-class member's probabilities of every class.

Parts (``META``; ``--meta auto`` picks one per task, per label, in ``mmtk.stacking``):
- ``soft-vote``: the mean of the members' class probabilities;
- ``hard-vote``: each member votes for its most probable class; the probabilities are
  the vote shares, so the label is the class with the most votes (a tie goes to the
  lower class index, as scikit-learn's ``VotingClassifier(voting="hard")`` breaks it);
- ``logreg``: scikit-learn's ``LogisticRegression`` (C = 1, lbfgs: the final estimator
  ``StackingClassifier`` uses when none is given, allowed 1,000 iterations instead of
  100), kept as ``coef``/``intercept``;
- ``tree`` / ``forest``: a ``DecisionTreeClassifier`` / ``RandomForestClassifier``
  (100 trees), kept as node arrays (``children_left``, ``children_right``, ``feature``,
  ``threshold``, ``value`` as class fractions; the trees of a forest concatenated, child
  indices global, ``roots`` the first node of each tree). ``forward`` walks every tree at
  once with tensor gathers, comparing the float32-rounded input with the float64
  threshold as scikit-learn does, and averages the trees' leaf fractions: scikit-learn's
  ``predict_proba``.

Why buffers: a fitted scikit-learn estimator is saved by pickle. Here each part is an
``nn.Module`` of buffers whose names say which part it is; the run is config.json plus
model.safetensors like any other and loading runs no code (``load_state_dict`` rebuilds
the parts from the saved buffers, whose shapes depend on the data, as
``mmtk.models.classical`` does). Logits: binary and per-label log-odds, multi-class log
probabilities (probabilities clamped to ``[EPS, 1 - EPS]``, so a unanimous vote or a
pure leaf gives a finite logit).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from mmtk.errors import DataError, UsageError
from mmtk.models.common import check_dims
from mmtk.registry import Registry
from mmtk.training.batch import as_batch

#: Probabilities are clamped to [EPS, 1 - EPS] before they become logits.
EPS = 1e-12
#: ``--meta`` value that picks the best meta-estimator per task by cross-validation.
AUTO = "auto"
#: What ``auto`` tries, simplest first (a tie keeps the earlier).
AUTO_ORDER = ("soft-vote", "hard-vote", "logreg", "tree", "forest")

META: Registry = Registry("meta-estimator")


def meta_choices() -> list[str]:
    """The ``--meta`` values: every registered meta-estimator, then ``auto``."""
    return [*META.names(), AUTO]


def check_meta(name: str) -> str:
    if name != AUTO and name not in META:
        raise UsageError(f"unknown --meta {name!r}", f"choose one of: {', '.join(meta_choices())}")
    return name


def class_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Member scores ``(B, M, K')`` as class probabilities ``(B, M, K)``: a member that
    gives one score (p of the positive class) becomes ``[1 - p, p]``."""
    return torch.cat([1.0 - scores, scores], dim=2) if scores.shape[2] == 1 else scores


class MetaPart(nn.Module):
    """One task's (one label's) meta-estimator. ``columns`` (M, K') int64: the input
    columns of each member it reads; ``probabilities(x)`` gives ``(B, K)`` class
    probabilities from the concatenated inputs ``x`` (float64)."""

    BUFFERS: tuple[str, ...] = ("columns",)

    def __init__(self, columns):
        super().__init__()
        self.register_buffer("columns", torch.as_tensor(columns).to(torch.int64).clone())
        if self.columns.ndim != 2:
            raise RuntimeError(f"meta-estimator columns of shape {tuple(self.columns.shape)}, expected (members, scores)")

    @property
    def classes(self) -> int:
        return max(2, self.columns.shape[1])

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The members' scores ``(B, M, K')``."""
        return x[:, self.columns]

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """The final estimator's input ``(B, M * K')``, member after member."""
        return self.scores(x).reshape(len(x), -1)


class VotePart(MetaPart):
    """Soft vote (``soft`` True: mean probabilities) or hard vote (vote shares)."""

    BUFFERS = ("columns", "soft")

    def __init__(self, columns, soft):
        super().__init__(columns)
        self.register_buffer("soft", torch.as_tensor(soft).to(torch.bool).reshape(()).clone())

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        probs = class_probabilities(self.scores(x))
        if bool(self.soft):
            return probs.mean(dim=1)
        votes = nn.functional.one_hot(probs.argmax(dim=2), probs.shape[2]).to(probs.dtype)
        return votes.mean(dim=1)


class LinearPart(MetaPart):
    """A fitted ``LogisticRegression``: ``coef`` (1, F) for two classes, (K, F) otherwise."""

    BUFFERS = ("columns", "coef", "intercept")

    def __init__(self, columns, coef, intercept):
        super().__init__(columns)
        self.register_buffer("coef", torch.as_tensor(coef).to(torch.float64).clone())
        self.register_buffer("intercept", torch.as_tensor(intercept).to(torch.float64).clone())
        if self.coef.ndim != 2 or self.coef.shape[1] != self.columns.numel() or self.intercept.shape != self.coef.shape[:1]:
            raise RuntimeError(f"logistic regression arrays of inconsistent shapes: {tuple(self.coef.shape)}, {tuple(self.intercept.shape)}")

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        decision = self.flat(x) @ self.coef.T + self.intercept
        if decision.shape[1] == 1:
            p = torch.sigmoid(decision)
            return torch.cat([1.0 - p, p], dim=1)
        return torch.softmax(decision, dim=1)


class TreesPart(MetaPart):
    """A decision tree or a random forest as node arrays (see the module's docstring)."""

    BUFFERS = ("columns", "roots", "children_left", "children_right", "feature", "threshold", "value")

    def __init__(self, columns, roots, children_left, children_right, feature, threshold, value):
        super().__init__(columns)
        for name, data, dtype in (
            ("roots", roots, torch.int64), ("children_left", children_left, torch.int64), ("children_right", children_right, torch.int64),
            ("feature", feature, torch.int64), ("threshold", threshold, torch.float64), ("value", value, torch.float64),
        ):
            self.register_buffer(name, torch.as_tensor(data).to(dtype).clone())
        nodes = self.children_left.shape[0]
        shapes = [tuple(getattr(self, n).shape) for n in ("children_right", "feature", "threshold")]
        if self.roots.ndim != 1 or shapes != [(nodes,)] * 3 or self.value.ndim != 2 or self.value.shape[0] != nodes:
            raise RuntimeError(f"tree arrays of inconsistent shapes: {[tuple(b.shape) for b in self.buffers()]}")

    @property
    def trees(self) -> int:
        return self.roots.shape[0]

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        # scikit-learn compares float32 inputs with float64 thresholds.
        features = self.flat(x).to(torch.float32).to(torch.float64)
        node = self.roots.expand(len(x), -1).clone()  # (B, trees)
        while True:
            left = self.children_left[node]
            inner = left >= 0
            if not bool(inner.any()):
                break
            value = features.gather(1, self.feature[node].clamp_min(0))
            step = torch.where(value <= self.threshold[node], left, self.children_right[node])
            node = torch.where(inner, step, node)
        return self.value[node].mean(dim=1)


PARTS = (VotePart, LinearPart, TreesPart)


def _tree_arrays(trees, offset: int = 0) -> dict:
    """The node arrays of fitted scikit-learn trees, concatenated (child indices global)."""
    roots, parts = [], {key: [] for key in ("children_left", "children_right", "feature", "threshold", "value")}
    for estimator in trees:
        tree = estimator.tree_
        roots.append(offset)
        leaf = tree.children_left < 0
        parts["children_left"].append(np.where(leaf, -1, tree.children_left + offset))
        parts["children_right"].append(np.where(leaf, -1, tree.children_right + offset))
        parts["feature"].append(np.where(leaf, -1, tree.feature))
        parts["threshold"].append(tree.threshold)
        counts = tree.value[:, 0, :].astype(np.float64)
        parts["value"].append(counts / counts.sum(axis=1, keepdims=True))
        offset += tree.node_count
    return {"roots": np.array(roots, dtype=np.int64), **{key: np.concatenate(value) for key, value in parts.items()}}


def _every_class(y: np.ndarray, classes: int, what: str) -> None:
    """Refuse training labels that miss a class: the fitted arrays would have no row for it."""
    missing = sorted(set(range(classes)) - set(np.unique(y).tolist()))
    if missing:
        raise DataError(
            f"{what}: no training item has class {missing[0]}, so the meta-estimator cannot learn it",
            "give the training data items of every class (or leave that label out)",
        )


def fit_vote(soft: bool) -> Callable:
    def fit(columns, x, y, classes: int, seed: int) -> VotePart:
        return VotePart(columns, soft)

    return fit


def fit_logreg(columns, x, y, classes: int, seed: int) -> LinearPart:
    """scikit-learn's ``LogisticRegression`` (C = 1, lbfgs, up to 1,000 iterations) on the flat scores."""
    from sklearn.linear_model import LogisticRegression

    _every_class(y, classes, "logreg meta-estimator")
    fitted = LogisticRegression(max_iter=1000).fit(x, y)
    return LinearPart(columns, fitted.coef_, fitted.intercept_)


def fit_tree(columns, x, y, classes: int, seed: int) -> TreesPart:
    """scikit-learn's ``DecisionTreeClassifier`` with its defaults (seeded)."""
    from sklearn.tree import DecisionTreeClassifier

    _every_class(y, classes, "tree meta-estimator")
    fitted = DecisionTreeClassifier(random_state=seed).fit(x, y)
    return TreesPart(columns, **_tree_arrays([fitted]))


def fit_forest(columns, x, y, classes: int, seed: int) -> TreesPart:
    """scikit-learn's ``RandomForestClassifier`` with its defaults (100 trees, seeded, one job)."""
    from sklearn.ensemble import RandomForestClassifier

    _every_class(y, classes, "forest meta-estimator")
    fitted = RandomForestClassifier(random_state=seed, n_jobs=1).fit(x, y)
    return TreesPart(columns, **_tree_arrays(fitted.estimators_))


META.add("soft-vote", fit_vote(True), "mean of the members' class probabilities")
META.add("hard-vote", fit_vote(False), "majority vote of the members' labels (probabilities: vote shares)")
META.add("logreg", fit_logreg, "logistic regression over the members' scores (scikit-learn defaults)")
META.add("tree", fit_tree, "decision tree over the members' scores (scikit-learn defaults)")
META.add("forest", fit_forest, "random forest of 100 trees over the members' scores (scikit-learn defaults)")


class StackModel(nn.Module):
    """The meta-estimators of a stack over member inputs (``{name: width}``, each
    ``sum(heads.values())`` wide: the members' outputs for every task), one or more parts
    per task. ``fit_parts`` installs parts fitted by ``mmtk.stacking``; ``forward(batch)``
    gives ``{task: logits}`` like every model; ``explain(batch)`` gives, per member, the
    probability it gives the label the stack predicts (averaged over tasks and labels)."""

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int]):
        super().__init__()
        check_dims(input_dims, heads)
        self.names = list(input_dims)
        self.tasks = list(heads)
        self.units = [int(heads[t]) for t in self.tasks]
        self.dims = [int(input_dims[n]) for n in self.names]
        self.width = sum(self.dims)
        wrong = [(n, d) for n, d in zip(self.names, self.dims) if d != sum(self.units)]
        if wrong:
            raise UsageError(
                f"stack input {wrong[0][0]!r} has {wrong[0][1]} values, but a member's scores for the tasks {', '.join(self.tasks)} have {sum(self.units)}",
                "stack the outputs of runs that predict these tasks (mmtk train --model stack --members RUN,RUN or --features A,B)",
            )
        self.parts = nn.ModuleList(nn.ModuleList() for _ in self.tasks)

    def task_columns(self, task: str) -> np.ndarray:
        """(M, units) input columns of ``task``'s scores, member by member."""
        t = self.tasks.index(task)
        starts = np.cumsum([0, *self.dims[:-1]]) + sum(self.units[:t])
        return starts[:, None] + np.arange(self.units[t])[None, :]

    @property
    def fitted(self) -> bool:
        return all(len(parts) for parts in self.parts)

    def fit_parts(self, parts: dict[str, list[MetaPart]]) -> StackModel:
        """Install the fitted parts of each task (one, or one per label of a multi-label task)."""
        for holder, task in zip(self.parts, self.tasks):
            del holder[:]
            holder.extend(parts[task])
        self._check_parts()
        return self

    def _check_parts(self) -> None:
        for task, units, parts in zip(self.tasks, self.units, self.parts):
            single = len(parts) == 1 and parts[0].classes == max(units, 2)
            per_label = len(parts) == units and all(part.classes == 2 for part in parts)
            if not (single or per_label):
                raise RuntimeError(f"task {task!r}: {len(parts)} meta-estimator parts do not make a head of {units} units")
            width = [part for part in parts if int(part.columns.max()) >= self.width]
            if width:
                raise RuntimeError(f"task {task!r}: a meta-estimator reads column {int(width[0].columns.max())} of {self.width}")

    def _inputs(self, batch) -> torch.Tensor:
        features = as_batch(batch).features
        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f"model input lacks the members {missing}; it was built for {self.names}")
        return torch.cat([features[n].reshape(len(features[n]), -1).to(torch.float64) for n in self.names], dim=1)

    def probabilities(self, batch) -> dict[str, list[torch.Tensor]]:
        """Per task, each part's class probabilities ``(B, K)`` (float64)."""
        if not self.fitted:
            raise RuntimeError("the stack is not fitted: mmtk.stacking.train_stack fits it, or load a run")
        x = self._inputs(batch)
        return {task: [part.probabilities(x) for part in parts] for task, parts in zip(self.tasks, self.parts)}

    def forward(self, batch) -> dict[str, torch.Tensor]:
        logits = {}
        for task, units, probs in zip(self.tasks, self.units, self.probabilities(batch).values()):
            clamped = [p.clamp(EPS, 1.0 - EPS) for p in probs]
            if len(probs) == 1 and units > 1:  # multi-class: log probabilities (softmax gives them back)
                logits[task] = clamped[0].log()
            else:  # binary, or one log-odds per label
                logits[task] = torch.stack([p[:, 1].log() - p[:, 0].log() for p in clamped], dim=1)
        return {task: value.to(torch.float32) for task, value in logits.items()}

    def represent(self, batch) -> torch.Tensor:
        """The members' scores side by side ``(B, width)``."""
        return self._inputs(batch).to(torch.float32)

    def explain(self, batch) -> dict[str, torch.Tensor]:
        """Per member (input name), the probability it gives the stack's label, averaged
        over tasks (and over the labels of a multi-label task, where the stack's decision
        per label is p >= 0.5)."""
        x = self._inputs(batch)
        support = torch.zeros(len(x), len(self.names), dtype=torch.float64, device=x.device)
        count = 0
        for parts, probs in zip(self.parts, self.probabilities(batch).values()):
            for part, p in zip(parts, probs):
                members = class_probabilities(part.scores(x))  # (B, M, K)
                chosen = p.argmax(dim=1) if len(parts) == 1 else (p[:, 1] >= 0.5).long()  # labels: p >= 0.5, as predict
                support += members.gather(2, chosen[:, None, None].expand(-1, members.shape[1], 1))[:, :, 0]
                count += 1
        support /= max(count, 1)
        return {name: support[:, i].to(torch.float32) for i, name in enumerate(self.names)}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Build each task's parts from the saved buffers (their kind from their names,
        their shapes from the data the stack was fitted on), then load them."""
        rebuilt = {}
        for t, task in enumerate(self.tasks):
            prefix = f"parts.{t}."
            indices = sorted({int(key[len(prefix):].split(".")[0]) for key in state_dict if key.startswith(prefix)})
            if indices != list(range(len(indices))):
                raise RuntimeError(f"saved parts of task {task!r} are not numbered 0..n-1: {indices}")
            rebuilt[task] = [_part_from(state_dict, f"{prefix}{p}.") for p in indices]
        self.fit_parts(rebuilt)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _part_from(state_dict, prefix: str) -> MetaPart:
    names = {key[len(prefix):] for key in state_dict if key.startswith(prefix)}
    for kind in PARTS:
        if names == set(kind.BUFFERS):
            return kind(*(state_dict[prefix + name] for name in kind.BUFFERS))
    raise RuntimeError(f"saved part {prefix.rstrip('.')} has buffers {sorted(names)}, which no meta-estimator has")
