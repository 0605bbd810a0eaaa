"""``tune``: hyper-parameter search over ``mmtk.train.train`` (``mmtk tune``).

An Optuna study (TPE sampler, median pruning) draws each trial's settings from the
search space (``mmtk.tune.space``), trains with them and scores the trial by ``metric``
on the validation items: those of ``val_dataset`` or of the seeded ``val_split`` (the
split ``train`` makes), or, with ``folds``, the mean over a seeded stratified k-fold.

Pruning reads the epoch loop's validation metric: a ``train`` callback reports each
epoch's value to the trial and raises ``optuna.TrialPruned`` when the median pruner says
the trial is worse than the median of earlier trials at that epoch. With ``folds`` only
fold 1's epochs are reported: fold 1 is the same split in every trial, so its epochs
compare like with like, and a bad trial is stopped after a few epochs of one fold rather
than after whole folds; the folds after it run only for trials that survived it.

Each trial trains into a scratch folder inside ``out`` that is removed after it; the
study (``out/study.db``), the trial tables and ``best.json`` stay (``mmtk.tune.results``).
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Mapping, Sequence

from mmtk.errors import UsageError
from mmtk.tune.results import BEST_JSON, TRIALS_CSV, TRIALS_JSON, trial_row, write_json, write_tables
from mmtk.tune.space import Space, load_space

VAL_LOSS = "val_loss"
#: Training options that do not change a trial's result: a study resumes across them.
_NOT_SETTINGS = ("device", "max_memory", "checkpoint_every")
STUDY_FILE = "study.db"
#: Epochs a trial trains before it can be pruned: the first ones are the learning-rate
#: warm-up and too noisy to rank trials by (BENCHMARKS.md, "Hyper-parameter search").
PRUNE_WARMUP = 3
#: Complete trials before the median pruner starts (Optuna's default).
PRUNE_STARTUP = 5
BEST_RUN = "best-run"


@dataclass
class TuneReport:
    """What a ``tune`` call did: the study's trials (``rows``, all of them, also those of
    earlier calls), how many this call ran, the best configuration (``best.json``'s
    document) and the retrained run, if any."""

    out: Path
    storage: Path
    metric: str
    direction: str
    rows: list[dict]
    ran: int
    best: dict
    seconds: float
    run: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return counts

    def to_json(self) -> dict:
        return {
            "out": str(self.out), "study": str(self.storage), "metric": self.metric, "direction": self.direction,
            "ran": self.ran, "counts": self.counts, "seconds": self.seconds, "best": self.best,
            "run": None if self.run is None else str(self.run), "files": self.files, "trials": self.rows,
        }


def tune(
    dataset,
    *,
    features: Sequence,
    model: str,
    tasks: Sequence,
    space: str | Path | Space,
    trials: int,
    out: str | Path,
    store,
    val_dataset=None,
    val_split: float = 0.2,
    folds: int | None = None,
    metric: str | None = None,
    seed: int = 0,
    storage: str | Path | None = None,
    pruning: bool = True,
    prune_startup: int = PRUNE_STARTUP,
    prune_warmup: int = PRUNE_WARMUP,
    retrain: bool = False,
    run_out: str | Path | None = None,
    model_args: dict | None = None,
    command: Sequence[str] | None = None,
    progress: Callable[[str], ContextManager] | None = None,
    on_trial: Callable[[dict], None] | None = None,
    **train_options,
) -> TuneReport:
    """Search ``space`` (a space file or a ``Space``) for the settings of ``model`` that
    score best by ``metric`` (default ``val_loss``; lower is better for it and for
    ``mmtk.metrics.LOWER_IS_BETTER``; ``auto`` resolves as ``train``'s ``--monitor auto``), until the study in ``storage`` (default
    ``out/study.db``) has ``trials`` finished trials: a study that exists is resumed and
    only the missing trials run (``mmtk.tune.study``).

    ``train_options`` (``epochs``, ``batch_size``, ``patience``, ``tabular``, ``device``...)
    and ``model_args`` are fixed ``mmtk.train.train`` arguments; a space key may not
    repeat one. Every trial trains with ``seed`` (the same split and initialisation, so
    trials differ by their settings only) and early-stops on ``metric``. The median
    pruner starts after ``prune_startup`` complete trials and leaves each trial's first
    ``prune_warmup`` epochs alone (``pruning=False``: no pruning).
    A trial whose training diverges is recorded as failed and the study goes on.

    Writes ``out/trials.csv``, ``out/trials.json`` and ``out/best.json``: the best
    trial's parameters, ``train_arguments`` (``mmtk.train.train``'s keyword arguments,
    those that are JSON) and, given ``command`` (the ``mmtk train`` command line without
    the tuned options and ``--out``), the full command that trains it. ``retrain``
    trains the best configuration into ``run_out`` (default ``out/best-run``) on
    ``val_dataset`` or ``val_split`` for early stopping. ``progress(description)`` gives
    each training's progress callback (``mmtk.cli.output.progress_bar``); ``on_trial``
    receives each finished trial's table row.
    """
    from mmtk.metrics import LOWER_IS_BETTER
    from mmtk.models import MODELS, check_model_params
    from mmtk.runs import check_run_target
    from mmtk.training.world import require_single_process
    from mmtk.tune.study import finished, open_study, study_lock

    require_single_process("tune", "its trials read the runs that rank 0 alone writes")
    started = time.perf_counter()
    MODELS.get(model)  # an unknown name fails here, listing the valid ones
    if isinstance(dataset, Mapping):
        raise UsageError("tune takes one dataset", "give one training dataset (and --val or --folds)")
    space = space if isinstance(space, Space) else load_space(space, model)
    fixed_args = check_model_params(model, dict(model_args or {}))
    _check_fixed(space, fixed_args, train_options, model)
    metric = metric or VAL_LOSS
    if metric == "auto":  # as train's --monitor auto, resolved once so the study has one direction
        metric = _auto_metric(dataset, tasks, val_dataset, val_split, folds, seed)
    specs = _check_metric(metric, tasks)
    if trials < 1:
        raise UsageError(f"--trials {trials}: at least one trial is needed", "give --trials 20, say")
    if folds is not None and val_dataset is not None:
        raise UsageError("--folds and --val both say where trials are validated", "give one of them")
    direction = "minimize" if metric == VAL_LOSS or metric in LOWER_IS_BETTER else "maximize"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory", "choose a directory for the study and its tables")
    storage = Path(storage) if storage is not None else out / STUDY_FILE
    run_out = Path(run_out) if run_out is not None else out / BEST_RUN
    if retrain:
        check_run_target(run_out)
    evaluations = _evaluations(dataset, val_dataset, folds, specs, seed)
    settings = {
        "model": model, "features": _names(features), "tasks": _names(tasks), "metric": metric, "folds": folds, "seed": seed,
        "dataset": str(dataset.source), "items": len(dataset),
        "val": str(val_dataset.source) if val_dataset is not None else (None if folds else val_split),
        "model_args": fixed_args, "options": {k: v for k, v in _plain(train_options, records=True).items() if k not in _NOT_SETTINGS},
    }
    outputs = _Outputs(
        out, space, metric, direction, settings, fixed_args, train_options, None if val_dataset is not None else val_split, command, run_out
    )
    common = dict(features=features, model=model, tasks=tasks, store=store, seed=seed, monitor=metric, val_split=val_split, **train_options)
    out.mkdir(parents=True, exist_ok=True)
    with study_lock(storage):
        for left in out.glob(".trial-*"):  # scratch of trials a killed run left (the lock says none runs now)
            shutil.rmtree(left, ignore_errors=True)
        study = open_study(
            storage, direction=direction, space=space.to_json(), settings=settings, seed=seed, pruning=pruning,
            prune_startup=prune_startup, prune_warmup=prune_warmup,
        )
        todo = max(0, trials - len(finished(study)))
        ran = []

        def objective(trial) -> float:
            description = f"trial {trial.number} ({len(ran) + 1}/{todo})"
            return _run_trial(trial, space, evaluations, fixed_args, metric, out, common, progress, description)

        def after(study, frozen) -> None:
            ran.append(frozen.number)
            outputs.write(study)
            if on_trial is not None:
                on_trial(trial_row(frozen))

        if todo:
            from mmtk.compare import _load_libraries
            from mmtk.training.loop import TrainingDiverged

            _load_libraries()  # so that the first trial's duration is its own, not the imports'
            study.optimize(objective, n_trials=todo, catch=(TrainingDiverged,), callbacks=[after])
        best = outputs.write(study)
        rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    if best is None:
        reasons = sorted({row["error"] for row in rows if row["error"]})
        raise UsageError(
            f"no trial of the study in {storage} completed ({len(rows)} trials; {reasons[0] if reasons else 'all pruned'})",
            "narrow the space (e.g. a lower learning-rate range) and tune into a new --out",
        )
    report = TuneReport(
        out=out, storage=storage, metric=metric, direction=direction, rows=rows, ran=len(ran), best=best, seconds=0.0,
        files={"trials_csv": str(out / TRIALS_CSV), "trials_json": str(out / TRIALS_JSON), "best": str(out / BEST_JSON)},
    )
    if retrain:
        from mmtk.train import train

        tuned_train, tuned_model = space.split(best["params"])
        bar = progress("retraining the best trial") if progress is not None else contextlib.nullcontext(None)
        with bar as update:
            train(dataset, val_dataset=val_dataset, out=run_out, progress=update, model_args={**fixed_args, **tuned_model}, **{**common, **tuned_train})
        report.run = run_out
    report.seconds = time.perf_counter() - started
    return report


def _run_trial(trial, space: Space, evaluations, fixed_args: dict, metric: str, out: Path, common: dict, progress, description: str) -> float:
    """Train the trial's settings on each evaluation (one split, or the folds) and
    return the mean of their best-epoch ``metric``."""
    from mmtk.train import train
    from mmtk.training.loop import TrainingDiverged

    tuned_train, tuned_model = space.split(space.suggest(trial))
    options = {**common, **tuned_train, "model_args": {**fixed_args, **tuned_model}}
    reporter = EpochReporter(trial, metric)
    scratch = Path(tempfile.mkdtemp(prefix=f".trial-{trial.number}-", dir=out))
    values = []
    try:
        for i, (train_ds, val_ds) in enumerate(evaluations):
            reporter.reporting = i == 0
            label = description if len(evaluations) == 1 else f"{description} fold {i + 1}/{len(evaluations)}"
            bar = progress(label) if progress is not None else contextlib.nullcontext(None)
            with bar as update:
                # No checkpoints: a killed trial is run again whole when the study resumes.
                report = train(train_ds, **{**options, "val_dataset": val_ds, "out": scratch / f"fold{i}", "progress": update,
                                            "callbacks": [reporter], "checkpoint_every": math.inf})
            reporter.before += len(report.log)
            values.append(epoch_value(_best_entry(report), metric))
    except TrainingDiverged as exc:
        trial.set_user_attr("error", f"diverged: {exc.message}")
        trial.set_user_attr("epochs", reporter.before)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    trial.set_user_attr("epochs", reporter.before)
    if len(evaluations) > 1:
        trial.set_user_attr("fold_values", values)
    value = sum(values) / len(values)
    if not math.isfinite(value):
        trial.set_user_attr("error", f"{metric} is undefined on the validation items (e.g. one class only)")
    return value


class EpochReporter:
    """The ``train`` callback of a trial: reports each epoch's ``metric`` to the trial
    (while ``reporting``: the first evaluation) and raises ``optuna.TrialPruned`` when
    the pruner says so. ``before`` counts the epochs of the trial's finished trainings,
    so that a pruned trial records how many epochs it trained."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric
        self.reporting = True
        self.before = 0

    def __call__(self, context) -> None:
        import optuna

        if not self.reporting:
            return
        epoch = context.state.epoch
        self.trial.report(epoch_value(context.state.log[-1], self.metric), step=epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr("epochs", self.before + epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")


def epoch_value(entry: dict, metric: str) -> float:
    """``metric`` of one ``train_log.jsonl`` entry: its validation loss, or the
    validation metric averaged over the tasks that report it (NaN when none does)."""
    from mmtk.training.loop import monitored_metric

    return float(entry["val_loss"]) if metric == VAL_LOSS else monitored_metric(entry["val_metrics"], metric)


def _best_entry(report) -> dict:
    return next(entry for entry in report.log if entry["epoch"] == report.best_epoch)


def _evaluations(dataset, val_dataset, folds: int | None, specs, seed: int) -> list[tuple]:
    """``(training data, validation data or None)`` per evaluation of a trial: the one
    split ``train`` makes (``val_dataset``, else its seeded ``val_split``), or the folds."""
    if folds is None:
        return [(dataset, val_dataset)]
    from mmtk.train import _strata
    from mmtk.tune.folds import kfold_indices

    return [(dataset.subset(tr), dataset.subset(va)) for tr, va in kfold_indices(_strata(dataset, specs), folds, seed, dataset.source)]


@dataclass(frozen=True)
class _Outputs:
    """What the best configuration is written from, besides the study."""

    out: Path
    space: Space
    metric: str
    direction: str
    settings: dict
    fixed_args: dict
    train_options: dict
    val_split: float | None  # None: validated on --val
    command: Sequence[str] | None
    run_out: Path

    def write(self, study) -> dict | None:
        """Rewrite the trial tables and ``best.json``; returns the best document (None
        before any trial completed)."""
        import optuna

        trials = study.get_trials(deepcopy=False)
        write_tables([trial_row(t) for t in trials], self.out)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and math.isfinite(t.value)]
        if not complete:
            return None
        best_trial = (min if self.direction == "minimize" else max)(complete, key=lambda t: t.value)
        values = {name: best_trial.params[name] for name in self.space.names}
        tuned_train, tuned_model = self.space.split(values)
        settings = self.settings
        arguments = {
            "model": settings["model"], "features": settings["features"], "tasks": settings["tasks"], "seed": settings["seed"],
            "monitor": self.metric, **({} if self.val_split is None else {"val_split": self.val_split}),
            **_plain(self.train_options), **tuned_train, "model_args": {**self.fixed_args, **tuned_model},
        }
        best = {
            "trial": best_trial.number, "metric": self.metric, "direction": self.direction, "value": best_trial.value,
            "params": values, "train_arguments": arguments,
        }
        if self.command is not None:
            # Always named: train's own default (auto) need not be the metric the trials used.
            argv = [*self.command, *self.space.flags(values), "--monitor", self.metric, "--out", str(self.run_out)]
            best.update(argv=argv, command=shlex.join(argv))
        write_json(self.out / BEST_JSON, best)
        return best


def _check_fixed(space: Space, fixed_args: dict, train_options: dict, model: str) -> None:
    from mmtk.models import model_capabilities

    for key in ("monitor", "resume", "callbacks", "record"):
        if key in train_options:
            raise UsageError(f"tune sets {key} itself", f"leave {key} out of the training options")
    for name in space.names:
        if name in fixed_args or train_options.get(name) is not None:
            raise UsageError(f"{space.source}: {name} is both tuned and fixed", f"leave {name} out of the fixed options, or out of the space")
    if model_capabilities(model).get("fits") == "arrays":
        trained = [name for name in space.names if name in ("lr", "weight_decay", "batch_size", "label_smoothing")]
        if trained:
            raise UsageError(f"{space.source}: {trained[0]}: model {model!r} is fitted whole, without gradient steps", "tune its --model-arg parameters only")


def _auto_metric(dataset, tasks: Sequence, val_dataset, val_split: float, folds: int | None, seed: int) -> str:
    """What ``train --monitor auto`` would watch for ``tasks`` on ``dataset``: the task
    kinds as the label encoders infer them, and the size of the smallest validation set a
    trial is scored on (``val_dataset``, the seeded split ``train`` makes, or a fold), since
    auto keeps the loss on small ones (``mmtk.train.auto_monitor``)."""
    from mmtk.data import fit_label_encoder, parse_task
    from mmtk.train import _parse_tasks, _strata, auto_monitor, split_indices

    specs = _parse_tasks(tasks, parse_task)
    if val_dataset is not None:
        val_items = len(val_dataset)
    elif folds:
        val_items = len(dataset) // folds
    else:
        val_items = len(split_indices(_strata(dataset, specs), val_split, seed, dataset.source)[1])
    return auto_monitor({spec.name: fit_label_encoder(spec, dataset).task.kind for spec in specs}, val_items)


def _check_metric(metric: str, tasks: Sequence) -> list:
    """The parsed tasks, after checking ``metric`` is one their kinds report."""
    from mmtk.data import parse_task
    from mmtk.metrics import METRICS
    from mmtk.train import _parse_tasks

    specs = _parse_tasks(tasks, parse_task)
    if metric == VAL_LOSS:
        return specs
    kinds = {spec.kind for spec in specs}
    names = sorted({m for kind, found in METRICS.items() if None in kinds or kind in kinds for m in found})
    if metric not in names:
        raise UsageError(f"--metric {metric!r} is not reported for these tasks", f"choose val_loss or one of: {', '.join(names)}")
    return specs


def _names(values: Sequence) -> list[str]:
    return [value if isinstance(value, str) else getattr(value, "name", str(value)) for value in values]


def _plain(options: dict, *, records: bool = False) -> dict:
    """The options that are plain JSON (a ``TabularSpec`` or a store is not); with
    ``records``, frozen-data options (a ``TabularSpec``) too, as their fields."""
    import dataclasses

    plain = {}
    for key, value in options.items():
        if records and dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        try:
            json.dumps(value)
        except TypeError:
            continue
        plain[key] = value
    return plain
