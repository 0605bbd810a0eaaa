"""``distill``: the recipe behind ``mmtk distill``.

1. The teacher: a run directory used as it is, or a model name fine-tuned on the task
   first (a normal run, kept as ``OUT/teacher/``, which evaluate and predict accept).
2. Its outputs on every view of the training data (full input, each modality alone) and
   its representation, computed once and cached beside it (``mmtk.distill.teacher``).
3. The student: ``mmtk.train.train`` with a ``Teaching``, which adds the teacher's
   outputs to the training batches' targets (looked up by item id, so the split and
   ``--missing-modality skip`` cannot misalign them) and swaps the objective for
   ``DistillObjective`` (or its meta version). The student run records the teacher
   (``config.json["distillation"]``), which ``evaluate`` reads for its distillation report.

``--msd population`` without weights picks them by a small grid on the validation split
(each candidate is a student trained on the same cached teacher outputs).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmtk.distill.objective import HIDDEN_LOSSES
from mmtk.distill.teacher import check_teacher, modality_groups, teacher_outputs
from mmtk.distill.views import FULL, TEACHER_HIDDEN, Views, teacher_key
from mmtk.distill.weighting import MSD_CHOICES, WeightingChoice
from mmtk.errors import DataError, UsageError

TEACHER_DIR = "teacher"
#: Unimodal view weights tried by ``--msd population`` when none are given.
POPULATION_GRID = (0.25, 1.0)


@dataclass
class Teaching:
    """What ``train`` needs to train a student: the teacher's outputs by item id and how
    to build the distillation objective (see ``train(..., teaching=)``)."""

    signals: dict[str, np.ndarray]
    ids: list[str]
    views: Views
    msd: str = "none"
    population: dict[str, float] = field(default_factory=dict)
    lam: float = 0.5
    tau: float = 4.0
    hidden: dict[str, float] = field(default_factory=dict)
    lookahead: str = "heads"
    meta_lr: float = 1e-3
    meta_hidden: int = 100
    teacher: str = ""

    def __post_init__(self):
        self._row = {item: i for i, item in enumerate(self.ids)}

    def targets(self, ids: list[str]) -> dict:
        """The teacher's outputs for items ``ids``, as target tensors."""
        import torch

        missing = [item for item in ids if item not in self._row]
        if missing:
            raise DataError(f"the teacher's outputs have no item {missing[0]!r} ({len(missing)} missing)", "distil on the data the teacher's outputs were computed for")
        rows = np.array([self._row[item] for item in ids], dtype=np.int64)
        return {key: torch.as_tensor(values[rows]) for key, values in self.signals.items()}

    def attach(self, supervised, *, net, kinds: dict, modalities: dict, val_source, lr: float, batch_size: int, seed: int, device):
        """``(objective, extra trainable modules)`` for student ``net``."""
        import torch

        from mmtk.distill.meta import MetaDistillObjective, MetaWeightNet, cycle, probability_width
        from mmtk.distill.objective import DistillObjective

        groups: dict[str, list[str]] = {}
        for name, modality in modalities.items():
            groups.setdefault(modality, []).append(name)
        views = Views.from_groups(groups, unimodal=len(self.views.names) > 1)
        if views.names != self.views.names:
            raise UsageError(
                f"the student's modalities ({', '.join(groups)}) are not the teacher's views ({', '.join(self.views.names)})",
                "give the student features of the same modalities as the teacher's",
            )
        regression = [task for task, kind in kinds.items() if kind == "regression"]
        if regression:
            raise UsageError(f"task {regression[0]!r} is a regression", "distillation needs classification tasks")
        projection = None
        if "fitnet" in self.hidden:
            projection = torch.nn.Linear(int(net.width), self.signals[TEACHER_HIDDEN].shape[1]).to(device)
        if self.msd == "meta":
            weighting = None
        else:
            weighting = WeightingChoice(self.msd, self.population).build(views, tuple(groups), 1.0)
        base = DistillObjective(supervised, kinds, views, weighting, self.lam, self.tau, dict(self.hidden), projection)
        extra = [projection] if projection is not None else []
        if self.msd != "meta":
            return base, extra
        widths = {task: probability_width(kind, self.signals[teacher_key(FULL, task)].shape[1]) for task, kind in kinds.items()}
        meta_net = MetaWeightNet(views.names, widths, self.meta_hidden).to(device)
        meta_optimizer = torch.optim.Adam(meta_net.parameters(), lr=self.meta_lr, weight_decay=1e-4, fused=True)
        objective = MetaDistillObjective(base, meta_net, meta_optimizer, cycle(val_source, batch_size, seed), lr, self.lookahead)
        return objective, extra

    def record(self) -> dict:
        return {
            "teacher": self.teacher, "msd": self.msd, "views": self.views.names, "lambda": self.lam, "temperature": self.tau,
            "population": dict(self.population), "hidden_losses": dict(self.hidden),
            **({"lookahead": self.lookahead, "meta_lr": self.meta_lr, "meta_hidden": self.meta_hidden} if self.msd == "meta" else {}),
        }


@dataclass
class DistillReport:
    student: object  # mmtk.train.TrainReport
    teacher: Path
    teacher_trained: bool
    teacher_cached: bool
    speed: dict
    population: dict | None = None
    grid: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            **self.student.to_json(), "teacher": str(self.teacher), "teacher_trained": self.teacher_trained,
            "teacher_outputs_cached": self.teacher_cached, "speed": self.speed,
            **({"population": self.population, "population_grid": self.grid} if self.population is not None else {}),
        }


def distill(
    dataset,
    *,
    teacher: str,
    student: str,
    features,
    tasks=None,
    out,
    store,
    msd: str = "none",
    lam: float = 0.5,
    temperature: float = 4.0,
    msd_weights: dict[str, float] | None = None,
    hidden_losses: dict[str, float] | None = None,
    teacher_features=None,
    teacher_args: dict | None = None,
    student_args: dict | None = None,
    lookahead: str = "heads",
    meta_lr: float = 1e-3,
    val_dataset=None,
    device: str = "auto",
    progress=None,
    **train_options,
) -> DistillReport:
    """Distil ``teacher`` (a run directory, or a model name trained here on ``dataset``
    with ``teacher_features``, default ``features``) into a ``student`` model over
    ``features``, written to ``out`` (the teacher, if trained here, to ``out/teacher``).
    ``train_options`` go to ``mmtk.train.train`` for both."""
    from mmtk.inference import open_run
    from mmtk.models import MODELS
    from mmtk.models.bert_weights import WeightsUnavailable
    from mmtk.runs import check_run_target, is_run_dir, load_run
    from mmtk.train import train
    from mmtk.training.world import require_single_process

    # Its objectives call the student's represent/heads and a functional look-ahead
    # directly, past DistributedDataParallel's forward, whose hooks average gradients.
    require_single_process("distill", "its objectives bypass the DDP wrapper that averages gradients")
    out = Path(out)
    check_run_target(out)
    _check_options(msd, lam, temperature, hidden_losses, lookahead, msd_weights)
    given_run = is_run_dir(teacher)
    if not given_run:
        MODELS.get(teacher)  # an unknown name fails here, before any training
    if not MODELS.capabilities(student).get("missing") and msd != "none":
        able = [n for n in MODELS.names() if MODELS.capabilities(n).get("missing")]
        raise UsageError(f"student {student!r} cannot ignore an absent modality, which MSD needs", f"choose one of: {', '.join(able)}")
    staging = None
    if given_run:
        teacher_dir = Path(teacher).resolve()
        if out.resolve() in (teacher_dir, *teacher_dir.parents):
            raise UsageError(f"--teacher {teacher} is inside --out {out}, which distill replaces", "give the student another --out")
        teacher_run = open_run(teacher_dir, device)
        tasks = _teacher_tasks(teacher_run, tasks)
    else:
        if not tasks:
            raise UsageError("distill needs --task when the teacher is trained here", "e.g. --task label")
        staging = out.parent / f".{out.name}.teacher-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            train(
                dataset, features=with_word_pieces(teacher, teacher_features or features), model=teacher, tasks=tasks,
                out=staging / TEACHER_DIR, store=store, model_args=teacher_args, val_dataset=val_dataset, device=device,
                progress=progress, **train_options,
            )
        except WeightsUnavailable as exc:
            raise UsageError(exc.message, "pass --teacher-weights minilm (the packaged offline MiniLM) or --teacher-weights PATH (a saved checkpoint)") from None
        teacher_dir = staging / TEACHER_DIR
        teacher_run = load_run(teacher_dir, device="cpu" if device == "auto" else device)
    try:
        groups = modality_groups(teacher_run.config["features"])
        unimodal = msd != "none"
        check_teacher(teacher_run, groups, unimodal)
        views = Views.from_groups(groups, unimodal)
        signals, cached = teacher_outputs(teacher_run, dataset, store, views, device=device)
        common = dict(
            signals=signals, ids=dataset.ids, views=views, msd=msd, lam=lam, tau=temperature, hidden=dict(hidden_losses or {}),
            lookahead=lookahead, meta_lr=meta_lr, teacher=TEACHER_DIR if staging is not None else str(teacher_dir),
        )

        def train_student(target: Path, population: dict[str, float]):
            teaching = Teaching(**common, population=population)
            return train(
                dataset, features=with_word_pieces(student, features), model=student, tasks=list(tasks), out=target, store=store, model_args=student_args,
                val_dataset=val_dataset, device=device, progress=progress, teaching=teaching, **train_options,
            )

        population, grid = None, []
        if msd == "population" and not msd_weights:
            population, grid, report = _population_grid(train_student, out, views)
        else:
            report = train_student(out, dict(msd_weights or {}))
            population = dict(msd_weights) if msd == "population" else None
        if staging is not None:
            os.replace(teacher_dir, out / TEACHER_DIR)
            teacher_dir = out / TEACHER_DIR
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    speed = compare_speed(load_run(teacher_dir), load_run(out), dataset, store)
    return DistillReport(report, teacher_dir, staging is not None, cached, speed, population, grid)


def _population_grid(train_student, out: Path, views: Views):
    """Train a student per grid point of unimodal view weights (full view 1) into
    temporary siblings of ``out``, keep the one with the best validation score
    (what early stopping ranked its epochs by, ``TrainReport.monitor``)."""
    from mmtk.runs import replace_dir
    from mmtk.training.loop import VAL_LOSS, _lower_is_better, monitored_metric

    unimodal = [view for view in views.names if view != FULL]
    candidates, results = [], []
    try:
        for i, values in enumerate(itertools.product(POPULATION_GRID, repeat=len(unimodal))):
            weights = {FULL: 1.0, **dict(zip(unimodal, values))}
            target = out.parent / f".{out.name}.grid-{os.getpid()}-{i}"
            report = train_student(target, weights)
            monitor = report.monitor
            if monitor == VAL_LOSS:
                score = report.log[report.best_epoch - 1]["val_loss"]
            else:
                score = monitored_metric(report.val_metrics, monitor)
            candidates.append((score, weights, target, report))
            results.append({"weights": weights, monitor: score})
        pick = min if _lower_is_better(monitor) else max
        _, weights, target, report = pick(candidates, key=lambda c: c[0])
        replace_dir(target, out)
        report.run = out
        return weights, results, report
    finally:
        for _, _, path, _ in candidates:
            shutil.rmtree(path, ignore_errors=True)


def with_word_pieces(model: str, features) -> list:
    """``features`` plus the text's word pieces (``tokens``, the dataset's text column)
    for a model that reads them (``visualbert``, ``tinybert``) when none are listed, so
    ``--features efficientnet-lite0:seq`` names only the visual tokens, as the MSD
    setting has it; other models' features are returned as given."""
    from dataclasses import replace

    from mmtk.features import FeatureRef, parse_feature_refs
    from mmtk.models import MODELS
    from mmtk.tokens import TOKENS

    refs = parse_feature_refs(features)
    if not MODELS.capabilities(model).get("tokens") or any(ref.source == TOKENS for ref in refs):
        return refs
    return [replace(FeatureRef.parse(TOKENS), options=refs[0].options), *refs]


def _teacher_tasks(teacher_run, tasks):
    if not tasks:
        return teacher_run.tasks
    names = [str(t).split(":")[0].split("=")[0] for t in tasks]
    unknown = [name for name in names if name not in teacher_run.tasks]
    if unknown:
        raise UsageError(f"the teacher {teacher_run.path} has no task {unknown[0]!r}", f"its tasks: {', '.join(teacher_run.tasks)}")
    specs = {task["name"]: task["encoder"]["task"] for task in teacher_run.config["tasks"]}
    return [_task_text(specs[name]) for name in names]


def _task_text(spec: dict) -> str:
    """A teacher task as a ``--task`` value, so the student's encoders match the teacher's."""
    columns = spec["columns"]
    name, kind = spec["name"], spec["kind"]
    return f"{name}={','.join(columns)}:{kind}" if len(columns) > 1 or columns[0] != name else f"{name}:{kind}"


def _check_options(msd, lam, temperature, hidden_losses, lookahead, msd_weights) -> None:
    from mmtk.distill.meta import LOOKAHEAD

    if msd not in MSD_CHOICES:
        raise UsageError(f"unknown --msd {msd!r}", f"choose one of: {', '.join(MSD_CHOICES)}")
    if not 0 <= lam <= 1:
        raise UsageError(f"--lambda {lam:g} is not in [0, 1]", "the weight of the label loss, e.g. --lambda 0.5")
    if not temperature > 0:
        raise UsageError(f"--temperature {temperature:g} must be positive", "e.g. --temperature 4")
    unknown = sorted(set(hidden_losses or {}) - set(HIDDEN_LOSSES))
    if unknown:
        raise UsageError(f"unknown hidden-state loss {unknown[0]!r}", f"choose from: {', '.join(HIDDEN_LOSSES)}")
    if lookahead not in LOOKAHEAD:
        raise UsageError(f"unknown --lookahead {lookahead!r}", f"choose one of: {', '.join(LOOKAHEAD)}")
    if msd_weights and msd != "population":
        raise UsageError("--msd-weight sets population weights", "pass --msd population with it")


def compare_speed(teacher_run, student_run, dataset, store, *, items: int = 512) -> dict:
    """Parameter counts and inference items/s of teacher and student on up to ``items``
    of ``dataset`` (features gathered once beforehand, one torch thread on CPU, best of
    three passes), and the speed-up."""
    from mmtk.models.inference import cpu_threads, forward_all
    from mmtk.inference import run_source

    subset = dataset.subset(range(min(items, len(dataset))))
    figures = {}
    for role, run in (("teacher", teacher_run), ("student", student_run)):
        source = run_source(run, subset, store, device="cpu")
        with cpu_threads("cpu"):
            forward_all(run.model, source)  # warm-up
            best = float("inf")
            for _ in range(3):
                tick = time.perf_counter()
                forward_all(run.model, source)
                best = min(best, time.perf_counter() - tick)
        figures[role] = {"parameters": sum(p.numel() for p in run.model.parameters()), "items_per_second": len(subset) / max(best, 1e-9)}
    figures["speedup"] = figures["student"]["items_per_second"] / figures["teacher"]["items_per_second"]
    figures["items"] = len(subset)
    return figures
