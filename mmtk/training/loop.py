"""``fit``: the one training loop every trainer runs (``mmtk train`` today; distillation,
fine-tuning and DDP plug in through its arguments, see docs/ARCHITECTURE.md).

Per epoch: the train source's batches in a seeded shuffled order, the objective's
``"total"`` backpropagated (under autocast on CUDA with ``amp``), gradients accumulated
over ``accumulate`` batches, clipped to ``clip_norm``, one optimizer and schedule step;
then ``validate(model)``, early stopping on ``monitor`` with the best weights kept, a
``train_log.jsonl`` entry with every loss term, and the callbacks (progress,
checkpoints). Nothing else happens per batch, so the in-memory path costs the model's
arithmetic and index slices only.

With several processes (``world.size > 1``, under torchrun) the model trains inside
DistributedDataParallel: each rank takes ``batch_size / size`` items of every batch
(equal shares, ``world.shard``), so the averaged gradient is the one of the whole
batch and a step means what it means in one process; accumulated batches skip the
all-reduce (``no_sync``) until the step's last one. Parameters the optimizer trains
outside the model (an objective's own modules) have their gradients averaged at the
step. Every rank validates on the whole validation set (small next to the training set,
and no gather of predictions is needed for the metrics), and the early-stopping score
is rank 0's, broadcast, so every rank stops at the same epoch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from mmtk.errors import DataError
from mmtk.training.objectives import TOTAL
from mmtk.training.world import SINGLE, World, rank_batch

VAL_LOSS = "val_loss"


class TrainingDiverged(DataError):
    """No epoch had a finite validation score: a setting (the learning rate) is wrong,
    not the data. ``mmtk.tune`` records such a trial as failed and goes on."""


@dataclass(frozen=True)
class FitSettings:
    """How to train. ``monitor``: ``val_loss`` or a validation metric name (``accuracy``,
    ``macro_f1``, ``rmse``...; averaged over the tasks that report it); ``patience``
    epochs without improvement stop training."""

    epochs: int
    batch_size: int
    patience: int
    seed: int = 0
    monitor: str = VAL_LOSS
    accumulate: int = 1
    clip_norm: float | None = None
    amp: bool = False


@dataclass
class FitState:
    """Where training stands after ``epoch`` epochs: what a checkpoint saves besides the
    model, optimizer, schedule and shuffling generator."""

    epoch: int = 0
    best_score: float | None = None
    best_loss: float | None = None  # the best epoch's validation loss: a metric monitor's tie-break
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict = field(default_factory=dict)
    stale: int = 0
    log: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    trained: int = 0


@dataclass
class FitContext:
    """What callbacks and ``restore`` see: the live objects of one ``fit`` call."""

    model: Any
    optimizer: Any
    schedule: Any
    generator: torch.Generator
    settings: FitSettings
    state: FitState
    world: World


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_metrics: dict
    log: list[dict]
    epochs_run: int
    samples_per_second: float


def fit(
    model,
    objective,
    train_source,
    validate: Callable[[Any], dict],
    optimizer,
    schedule=None,
    *,
    settings: FitSettings,
    world: World = SINGLE,
    callbacks: Sequence[Callable[[FitContext], None]] = (),
    restore: Callable[[FitContext], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_source`` (a batch source, see ``mmtk.training.sources``)
    by ``objective`` and return the best epoch's weights.

    ``validate(model) -> {"terms": {name: float}, "metrics": evaluate-shaped dict}`` runs
    after every epoch (``terms["total"]`` is the validation loss). ``schedule`` (or None)
    steps once per optimizer step. ``restore(context)``, given, loads a checkpoint into
    the context before the first epoch, and training continues after its epoch.
    """
    context = FitContext(
        model=model, optimizer=optimizer, schedule=schedule,
        generator=torch.Generator().manual_seed(settings.seed), settings=settings, state=FitState(), world=world,
    )
    if restore is not None:
        restore(context)
    state = context.state
    trained = _distributed(model, world)
    autocast, scaler = _mixed_precision(model, settings.amp)
    lower_is_better = _lower_is_better(settings.monitor)
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        tick = time.perf_counter()
        model.train()
        sums, seen = _train_epoch(trained, objective, train_source, optimizer, schedule, context, autocast, scaler)
        state.train_seconds += time.perf_counter() - tick
        state.trained += seen
        checked = validate(model)
        val_terms, metrics = checked["terms"], checked["metrics"]
        if world.size > 1:  # every rank logs the terms over all ranks' items
            sums = {name: world.reduce(value) for name, value in sums.items()}
            seen = int(world.reduce(torch.tensor(seen)))
        train_terms = {name: float(value) / max(seen, 1) for name, value in sums.items()}
        entry = {
            "epoch": epoch, "train_loss": train_terms.get(TOTAL, float("nan")), "val_loss": val_terms[TOTAL],
            "val_metrics": metrics, "train_terms": train_terms, "val_terms": val_terms,
            "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tick,
        }
        state.log.append(entry)
        score = val_terms[TOTAL] if settings.monitor == VAL_LOSS else monitored_metric(metrics, settings.monitor)
        loss = val_terms[TOTAL]
        if world.size > 1:  # one decision for all ranks, or one would stop while the others wait for it
            decided = world.broadcast(torch.tensor([score, loss], dtype=torch.float64))
            score, loss = float(decided[0]), float(decided[1])
        if _improves(state, score, loss, lower_is_better, tie_break=settings.monitor != VAL_LOSS):
            state.best_score, state.best_epoch, state.best_metrics, state.stale = score, epoch, metrics, 0
            state.best_loss = loss
            state.best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
        else:
            state.stale += 1
        state.epoch = epoch
        for callback in callbacks:
            callback(context)
        if state.stale >= settings.patience:
            break
    if state.best_state is None:
        # A user can fix this (a smaller learning rate, clipping), so it is one line and
        # exit 2, not an internal error.
        raise TrainingDiverged(
            f"training diverged: the validation loss was never finite in {len(state.log)} epoch(s)",
            "lower --lr (e.g. by 10x) or pass --clip-norm 1.0",
        )
    return FitResult(
        best_state=state.best_state, best_epoch=state.best_epoch, best_metrics=state.best_metrics, log=state.log,
        epochs_run=len(state.log), samples_per_second=state.trained / max(state.train_seconds, 1e-9),
    )


def _train_epoch(model, objective, source, optimizer, schedule, context: FitContext, autocast, scaler):
    """One pass over ``source`` (this rank's share); returns ``({term: item-weighted
    sum}, items seen)``. ``model`` is the trained module: the DDP wrapper with several
    processes."""
    settings, world = context.settings, context.world
    accumulate = max(1, settings.accumulate)
    batch_size = rank_batch(settings.batch_size, world)
    batches = source.num_batches(batch_size, world)
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    for i, batch in enumerate(source.batches(batch_size, generator=context.generator, world=world)):
        steps = (i + 1) % accumulate == 0 or i + 1 == batches
        # Accumulated batches keep their gradients local; the step's last one all-reduces the sum.
        with contextlib.nullcontext() if steps or world.size == 1 else model.no_sync():
            with autocast():
                terms = objective(model, batch)
            loss = terms[TOTAL] if accumulate == 1 else terms[TOTAL] / accumulate
            if i % accumulate == 0:
                optimizer.zero_grad(set_to_none=True)
            (loss if scaler is None else scaler.scale(loss)).backward()
        if steps:
            if world.size > 1:
                _average_outside(model.module, optimizer, world)
            _step(model, optimizer, scaler, settings.clip_norm)
            if schedule is not None:
                schedule.step()
        n = len(batch)
        seen += n
        for name, value in terms.items():
            weighted = value.detach() * n
            sums[name] = weighted if name not in sums else sums[name] + weighted
    return sums, seen


def _distributed(model, world: World):
    """``model`` in DistributedDataParallel with several processes (itself otherwise).
    DDP copies rank 0's weights to the others at construction, so the ranks start equal
    even from different initialisations."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _average_outside(model, optimizer, world: World) -> None:
    """Average over the ranks the gradients of parameters the optimizer trains that are
    not the model's (an objective's own modules), which DDP does not see."""
    inside = {id(p) for p in model.parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in inside and p.grad is not None:
                world.reduce(p.grad).div_(world.size)


def _step(model, optimizer, scaler, clip_norm) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


def _mixed_precision(model, amp: bool):
    """``(autocast context factory, GradScaler or None)``: bfloat16 autocast where the GPU
    has it (no scaling needed), float16 with a scaler otherwise; nothing on CPU."""
    device = next(model.parameters()).device
    if not amp or device.type != "cuda":
        return contextlib.nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def _improves(state: FitState, score: float, loss: float, lower_is_better: bool, *, tie_break: bool) -> bool:
    """Whether an epoch scoring ``score`` (validation loss ``loss``) is the new best. NaN
    never is. With ``tie_break`` (a metric monitor) an equal score at a lower validation
    loss is better too: a metric that saturates on a small validation set (accuracy 1.0
    after a few epochs) would otherwise stop a run whose predictions are still improving."""
    if score != score:
        return False
    if state.best_score is None:
        return True
    if score == state.best_score:
        return tie_break and state.best_loss is not None and loss < state.best_loss
    return score < state.best_score if lower_is_better else score > state.best_score


def _lower_is_better(monitor: str) -> bool:
    from mmtk.metrics import LOWER_IS_BETTER

    return monitor == VAL_LOSS or monitor in LOWER_IS_BETTER


def monitored_metric(metrics: dict, name: str) -> float:
    """Metric ``name`` of an evaluate-shaped result, averaged over the tasks reporting it
    (NaN when none does: such an epoch is never the best)."""
    per_task = metrics["tasks"].values() if "tasks" in metrics else [metrics]
    values = [entry["metrics"][name] for entry in per_task if name in entry["metrics"]]
    return sum(values) / len(values) if values else float("nan")
