"""The Optuna study behind ``mmtk tune``, kept in a SQLite file so that the same command
run again resumes it.

- One process works a study at a time: a lock file beside the study file is held while
  it runs, and a second ``mmtk tune`` on it is refused.
- The study records what it searches (``space``) and how trials are scored
  (``settings``: model, features, tasks, metric, folds, seed, fixed options); resuming
  with another of either is refused, since the old trials' values would not compare.
- A trial left unfinished by a killed or interrupted process (``running``, or ``fail``
  without a recorded reason) is queued again with the same parameters, once.
- Finished trials are ``complete``, ``pruned`` and ``fail`` with a reason (training
  diverged); a resumed study runs only what is missing to reach ``--trials`` of those.
- The TPE sampler is seeded with ``seed`` plus the number of trials already in the
  study: a fresh sampler seeded as the first one was would repeat its random start-up
  draws, while this keeps a resumed study reproducible from its history.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

from mmtk.errors import UsageError

STUDY_NAME = "mmtk-tune"
#: User attribute of a queued-again trial: the number of the unfinished trial it repeats.
RETRY_OF = "retry_of"


@contextlib.contextmanager
def study_lock(storage: Path) -> Iterator[None]:
    """Hold ``.STORAGE.lock`` (beside the study file) for the block; another holder
    makes this a ``UsageError``. The lock is the kernel's (``flock``), so a killed
    holder releases it."""
    import fcntl

    storage.parent.mkdir(parents=True, exist_ok=True)
    path = storage.with_name(f".{storage.name}.lock")
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{storage}: another mmtk tune is working on this study", "wait for it to finish, or give another --out/--storage") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_study(storage: Path, *, direction: str, space: dict, settings: dict, seed: int, pruning: bool, prune_startup: int, prune_warmup: int = 0):
    """The study in ``storage`` (created when absent), after checking it searches
    ``space`` under ``settings``, and after queueing again its unfinished trials. The
    median pruner starts after ``prune_startup`` complete trials and never stops a
    trial in its first ``prune_warmup`` epochs."""
    import optuna
    import sqlalchemy.exc

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # mmtk reports trials itself
    url = f"sqlite:///{storage.resolve()}"
    # Steps are epochs, from 1; Optuna prunes from step n_warmup_steps on.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=prune_startup, n_warmup_steps=prune_warmup + 1) if pruning else optuna.pruners.NopPruner()
    existed = storage.exists() and storage.stat().st_size > 0
    try:
        if existed:
            names = [s.study_name for s in optuna.get_all_study_summaries(url)]
            if STUDY_NAME not in names:
                raise UsageError(f"{storage} holds no mmtk tune study", "give a new --storage path, or the study file an earlier mmtk tune wrote")
        previous = optuna.load_study(study_name=STUDY_NAME, storage=url).trials if existed else []
        sampler = optuna.samplers.TPESampler(seed=seed + len(previous))
        study = optuna.create_study(
            study_name=STUDY_NAME, storage=url, direction=direction, sampler=sampler, pruner=pruner, load_if_exists=True
        )
    except (sqlalchemy.exc.DatabaseError, ValueError) as exc:
        raise UsageError(f"{storage} is not a readable Optuna study file ({str(exc).splitlines()[0][:120]})", "give a new --storage path, or restore the file") from None
    _check_same(study, storage, direction, space, settings)
    _requeue_unfinished(study)
    return study


def _check_same(study, storage: Path, direction: str, space: dict, settings: dict) -> None:
    attrs = study.user_attrs
    if "space" not in attrs:  # a new study (or one killed before its first trial)
        study.set_user_attr("space", space)
        study.set_user_attr("settings", settings)
        return
    if _canonical(attrs["space"]) != _canonical(space):
        changed = sorted(set(attrs["space"]) ^ set(space) | {k for k in space if k in attrs["space"] and _canonical(attrs["space"][k]) != _canonical(space[k])})
        raise UsageError(
            f"{storage}: the study searched another space ({', '.join(changed)} differ)",
            "resume it with the space file it was started with, or give a new --out/--storage for the new space",
        )
    saved = attrs.get("settings", {})
    changed = sorted(k for k in set(saved) | set(settings) if _canonical(saved.get(k)) != _canonical(settings.get(k)))
    if changed:
        raise UsageError(
            f"{storage}: the study was made with other settings ({', '.join(changed)} differ)",
            "resume it with the options it was started with, or give a new --out/--storage",
        )


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _requeue_unfinished(study) -> None:
    """Mark trials a killed process left ``running`` as failed, and queue each failure
    that has no reason (killed, interrupted) once more with its parameters."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if "error" not in trial.user_attrs and trial.number not in retried and trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})


def finished(study) -> list:
    """Trials that count towards ``--trials``: complete, pruned, or failed for a reason
    recorded by ``mmtk.tune`` (a failure without one is run again)."""
    from optuna.trial import TrialState

    return [
        t for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and "error" in t.user_attrs)
    ]
