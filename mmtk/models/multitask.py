"""Multi-task heads over any fusion trunk: the four designs of Lee and Shen, "Amazon PARS
at Memotion 2.0 2022: Multi-modal Multi-task Learning for Memotion 2.0 Challenge"
(De-Factify workshop at AAAI 2022; Memotion 2, the successor of SemEval-2020 Task 8).

Memotion's tasks are sentiment (A), the presence of each emotion (B: humour, sarcasm,
offence, motivation) and each emotion's intensity (C). The paper puts four heads of
increasing interaction on one multimodal trunk and weights the task losses
0.4 (A) / 0.3 (B) / 0.3 (C):

- ``separate``: a small MLP per task on the trunk's representation;
- ``shared``: one hidden layer shared by every task, then a linear output per task;
- ``two-stage``: each emotion's binary presence classifier runs first and its
  probability joins the trunk's representation at the input of that emotion's
  intensity classifier;
- ``two-stage-multilabel``: as ``two-stage`` with one multi-label presence classifier
  over all emotions, whose probabilities all join every intensity classifier.

Where this differs from the paper, and why:

- The trunk is any model of the registry (``represent(batch)``), not the paper's
  CLIP-based network, so the heads can be compared on the same features as every other
  fusion model. The trunk's own task heads become a pass-through (left in place they
  would be parameters that never learn); a trunk's auxiliary losses (``mmae``'s
  reconstruction) are kept.
- The presence probability entering an intensity classifier is not detached: the
  intensity loss also teaches the presence classifier, the "interaction" the designs
  are meant to add.
- The group weights 0.4 / 0.3 / 0.3 are split evenly among a group's tasks, so four
  binary presence tasks weigh what one multi-label presence task weighs (BCE averages
  over its labels).
- An emotion whose presence is not trained (designs ``separate``/``shared`` given only
  intensity tasks) is derived from its intensity: p(present) is the probability of
  every intensity class other than the "not" class(es), output as the binary logit
  ``log p(present) - log p(absent)`` (``presence_logit``), the way Memotion derives
  task B's labels from task C's.
"""

from __future__ import annotations

import torch
from torch import nn

from mmtk.errors import UsageError
from mmtk.models.common import TaskHeads

DESIGNS = ("separate", "shared", "two-stage", "two-stage-multilabel")
#: Loss weight of each task group (split evenly among the group's tasks), as the paper.
GROUP_WEIGHTS = {"other": 0.4, "presence": 0.3, "intensity": 0.3}


def presence_logit(logits: torch.Tensor, absent: torch.Tensor) -> torch.Tensor:
    """The binary logit ``(B, 1)`` that an item has the emotion, from its intensity
    logits ``(B, C)``: log-odds of the classes not in ``absent`` (bool ``(C,)``, the "not"
    class(es)) against those in it, so ``sigmoid`` of it is the softmax mass above "not"."""
    present = torch.logsumexp(logits.masked_fill(absent, float("-inf")), dim=1)
    missing = torch.logsumexp(logits.masked_fill(~absent, float("-inf")), dim=1)
    return (present - missing)[:, None]


def default_weights(tasks: list[str], stages: list[tuple[str, str]]) -> dict[str, float]:
    """``GROUP_WEIGHTS`` over ``tasks`` (the trained ones), split evenly within a group:
    presence tasks and intensity tasks are those ``stages`` pairs, every other task is in
    the sentiment group. No stages, no groups: every task keeps weight 1 (empty dict)."""
    if not stages:
        return {}
    presence = {p for p, _ in stages} & set(tasks)
    intensity = {i for _, i in stages}
    groups = {task: "presence" if task in presence else "intensity" if task in intensity else "other" for task in tasks}
    sizes = {group: list(groups.values()).count(group) for group in GROUP_WEIGHTS}
    return {task: GROUP_WEIGHTS[group] / sizes[group] for task, group in groups.items()}


def absent_mask(task: str, classes: list, names: tuple[str, ...]) -> torch.Tensor:
    """Bool ``(C,)``: the classes of intensity ``task`` named in ``names``, or, for integer
    levels, the lowest (class 0). String classes sort by name (``not_funny`` is not first),
    so one must be named; naming all of them leaves nothing to count as present."""
    mask = torch.tensor([str(c) in names for c in classes], dtype=torch.bool)
    if not mask.any():
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            raise UsageError(
                f"which class of {task!r} means \"not present\"? its classes are: {', '.join(map(str, classes))}",
                "name it, e.g. --model-arg absent=" + next((str(c) for c in classes if str(c).lower().startswith("not")), str(classes[0])),
            )
        mask[0] = True
    if mask.all():
        raise UsageError(
            f"--model-arg absent names every class of {task!r}, so nothing would count as present",
            "name only the \"not\" class(es)",
        )
    return mask


def check_kinds(design: str, stages: list[tuple[str, str]], kinds: dict[str, str]) -> None:
    """The task kinds each design needs: intensity tasks multi-class; presence tasks
    binary for ``two-stage``, multi-label for ``two-stage-multilabel``."""
    wanted = {"two-stage": "binary", "two-stage-multilabel": "multilabel"}.get(design)
    for presence, intensity in stages:
        if kinds[intensity] != "multiclass":
            raise UsageError(
                f"--model-arg stages: intensity task {intensity!r} is {kinds[intensity]}, not multi-class",
                "pair each presence task with a multi-class intensity task (its classes are the levels)",
            )
        if wanted is not None and kinds[presence] != wanted:
            raise UsageError(
                f"--model-arg stages: design={design} needs a {wanted} presence task, but {presence!r} is {kinds[presence]}",
                "give the presence labels as " + ("one 0/1 column per emotion" if wanted == "binary" else "one multi-label task (e.g. --task emotions=humour,sarcasm:multilabel)"),
            )


def _mlp(width: int, hidden: int, units: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, units))


def remove_task_heads(trunk: nn.Module) -> int:
    """Replace every ``TaskHeads`` inside ``trunk`` by a pass-through without parameters,
    so that the trunk's ``forward`` gives the representation its heads would have read
    (with its auxiliary losses, for a trunk that has them); returns how many it replaced."""
    found = [name for name, module in trunk.named_modules() if isinstance(module, TaskHeads)]
    for name in found:
        parent_name, _, attribute = name.rpartition(".")
        setattr(trunk.get_submodule(parent_name) if parent_name else trunk, attribute, _PassThrough())
    return len(found)


class _PassThrough(nn.Module):
    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        return shared


class DesignHeads(nn.Module):
    """The heads of one ``design`` on a representation of ``width`` features:
    ``forward(shared) -> {task: logits}`` for every task of ``heads``. ``fed`` maps an
    intensity task to the presence task whose probabilities join its input (the two-stage
    designs; a presence task is never itself fed)."""

    def __init__(self, width: int, heads: dict[str, int], *, design: str, fed: dict[str, str], hidden: int, dropout: float):
        super().__init__()
        self.design = design
        self.tasks = list(heads)
        self.fed = dict(fed)
        if design == "shared":
            self.shared = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.outputs = nn.ModuleList(nn.Linear(hidden, int(heads[t])) for t in self.tasks)
        else:
            extra = {t: int(heads[self.fed[t]]) if t in self.fed else 0 for t in self.tasks}
            self.outputs = nn.ModuleList(_mlp(width + extra[t], hidden, int(heads[t]), dropout) for t in self.tasks)

    def forward(self, shared: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.design == "shared":
            hidden = self.shared(shared)
            return {task: layer(hidden) for task, layer in zip(self.tasks, self.outputs)}
        layers = dict(zip(self.tasks, self.outputs))
        logits = {task: layers[task](shared) for task in self.tasks if task not in self.fed}
        for task, presence in self.fed.items():
            logits[task] = layers[task](torch.cat([shared, torch.sigmoid(logits[presence])], dim=-1))
        return {task: logits[task] for task in self.tasks}


class MultitaskHeads(nn.Module):
    """``forward(batch) -> {task: logits}`` for every task in ``heads`` plus one binary
    logit per derived presence task; ``represent(batch)`` is the trunk's.

    ``stages`` lists ``(presence, intensity)`` task pairs. With the two-stage designs
    every presence task is a head (binary for ``two-stage``; one shared multi-label task
    for ``two-stage-multilabel``); with ``separate``/``shared`` a presence task that is
    not a head is derived from its intensity task. Buffer ``absent_<i>`` is the bool mask
    of the ``i``-th derived task's "not" classes: class 0 until ``task_plan`` sets it from
    the class names, and saved with the weights."""

    def __init__(
        self, trunk: nn.Module, heads: dict[str, int], *, design: str, stages: list[tuple[str, str]],
        absent: tuple[str, ...] = (), hidden: int, dropout: float,
    ):
        super().__init__()
        self.trunk = trunk
        self.width = int(trunk.width)
        self.design = design
        self.tasks = list(heads)
        self.stages = list(stages)
        fed = {intensity: presence for presence, intensity in self.stages if design.startswith("two-stage")}
        self.heads = DesignHeads(self.width, heads, design=design, fed=fed, hidden=hidden, dropout=dropout)
        self.derived = {presence: intensity for presence, intensity in self.stages if presence not in heads}
        self.derived_order = list(self.derived)
        self.absent_names = tuple(absent)
        for i, presence in enumerate(self.derived_order):
            mask = torch.zeros(int(heads[self.derived[presence]]), dtype=torch.bool)
            mask[0] = True
            self.register_buffer(f"absent_{i}", mask)
        if callable(getattr(trunk, "explain", None)):
            self.explain = trunk.explain  # the trunk's per-modality weights are the model's

    def task_plan(self, tasks: dict[str, tuple[str, list]]) -> dict:
        """What the recipe asks before training, given each task's ``(kind, classes)``:
        checks the kinds the design needs, sets each derived task's "not" classes (those
        named in ``absent``, else class 0 of integer levels), and returns ``{"weights":
        default task weights, "derived": [config.json entries of the derived tasks]}``."""
        from mmtk.models.derived import derived_task_entry

        check_kinds(self.design, self.stages, {task: kind for task, (kind, _) in tasks.items()})
        named = {str(c) for _, intensity in self.stages if intensity in tasks for c in tasks[intensity][1]}
        unknown = [name for name in self.absent_names if name not in named]
        if unknown:
            raise UsageError(
                f"--model-arg absent: {unknown[0]!r} is no class of an intensity task",
                f"the intensity tasks' classes are: {', '.join(sorted(named)) or 'none'}",
            )
        derived = []
        for i, presence in enumerate(self.derived_order):
            source = self.derived[presence]
            classes = tasks[source][1]
            mask = absent_mask(source, classes, self.absent_names)
            getattr(self, f"absent_{i}").copy_(mask)
            derived.append(derived_task_entry(presence, source, [c for c, off in zip(classes, mask.tolist()) if off]))
        return {"weights": default_weights(self.tasks, self.stages), "derived": derived}

    def forward(self, batch, auxiliary: bool = False):
        """Logits per task; with ``auxiliary`` (a trunk that has auxiliary losses, such as
        ``mmae``'s reconstruction) ``(logits, the trunk's loss terms)``, from one trunk pass."""
        if not auxiliary:
            return self._with_derived(self.heads(self.represent(batch)))
        shared, terms = self.trunk(batch, auxiliary=True)  # its heads pass the representation through
        if not isinstance(shared, torch.Tensor):
            raise RuntimeError(f"trunk {type(self.trunk).__name__} does not return its heads' output from forward: it cannot carry multitask-heads")
        return self._with_derived(self.heads(shared)), terms

    def _with_derived(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for i, presence in enumerate(self.derived_order):
            logits[presence] = presence_logit(logits[self.derived[presence]], getattr(self, f"absent_{i}"))
        return logits

    def represent(self, batch) -> torch.Tensor:
        """The trunk's representation ``(B, width)`` the heads read."""
        return self.trunk.represent(batch)
