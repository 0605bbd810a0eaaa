"""Checkpoints of a training run, so that ``train --resume OUT`` continues a killed run.

A checkpoint lives beside the run directory it will become (``.OUT.checkpoint/``, gone
once the run is written): ``state.safetensors`` holds the tensors (model, optimizer
moments, best weights so far, the shuffling and torch RNG states) and ``state.json``
the rest (epoch, log so far, early-stopping state, optimizer and schedule settings, and
the call that started the run). No pickle. It is written to a temporary sibling and
renamed into place, so a kill while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from mmtk.errors import UsageError
from mmtk.training.loop import FitContext, FitState

STATE = "state.json"
TENSORS = "state.safetensors"


def checkpoint_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.checkpoint"


class Checkpointer:
    """A ``fit`` callback writing a checkpoint after an epoch when ``every_s`` seconds
    have passed since the last one (0: after every epoch). ``record`` (JSON) describes
    the run: what ``--resume`` needs to start it again."""

    def __init__(self, out: str | Path, record: dict, every_s: float = 10.0):
        self.directory = checkpoint_dir(out)
        self.record = record
        self.every_s = every_s
        self._last = time.monotonic()

    def __call__(self, context: FitContext) -> None:
        if not context.world.is_main or time.monotonic() - self._last < self.every_s:
            return
        save_checkpoint(self.directory, context, self.record)
        self._last = time.monotonic()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def save_checkpoint(directory: Path, context: FitContext, record: dict) -> None:
    from safetensors.torch import save_file

    from mmtk.runs import replace_dir

    tensors = {f"model.{k}": v for k, v in context.model.state_dict().items()}
    state = context.state
    if state.best_state is not None:
        tensors.update({f"best.{k}": v for k, v in state.best_state.items()})
    optimizer = context.optimizer.state_dict()
    plain_state = {}
    for index, entry in optimizer["state"].items():
        plain_state[str(index)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain_state[str(index)][key] = value
    tensors["rng.shuffle"] = context.generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    document = {
        "record": record,
        "state": {
            "epoch": state.epoch, "best_score": state.best_score, "best_loss": state.best_loss, "best_epoch": state.best_epoch,
            "best_metrics": state.best_metrics, "stale": state.stale, "log": state.log,
            "train_seconds": state.train_seconds, "trained": state.trained,
        },
        "optimizer": {"param_groups": optimizer["param_groups"], "state": plain_state},
        "schedule": None if context.schedule is None else context.schedule.state_dict(),
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{directory.name}.tmp-", dir=directory.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(staging / TENSORS))
        (staging / STATE).write_text(json.dumps(document), encoding="utf-8")
        replace_dir(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_record(out: str | Path) -> dict:
    """The ``record`` of the checkpoint of run ``out`` (``UsageError`` when there is none)."""
    return _document(checkpoint_dir(out), out)["record"]


def _document(directory: Path, out) -> dict:
    from mmtk.runs import recover_replaced

    recover_replaced(directory)
    path = directory / STATE
    if not path.is_file():
        raise UsageError(
            f"--resume {out}: no checkpoint of a killed run there ({directory} does not exist)",
            "start the run again without --resume (runs that finished have no checkpoint)",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"checkpoint {path} cannot be read ({exc})", f"delete {directory} and train again") from None


def restorer(out: str | Path):
    """A ``fit(restore=...)`` function loading the checkpoint of run ``out``."""
    directory = checkpoint_dir(out)
    document = _document(directory, out)

    def restore(context: FitContext) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(directory / TENSORS))
        device = next(context.model.parameters()).device
        context.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[len("best."):]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
        optimizer_state = {}
        for index, plain in document["optimizer"]["state"].items():
            entry = dict(plain)
            prefix = f"optimizer.{index}."
            entry.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            optimizer_state[int(index)] = entry
        context.optimizer.load_state_dict({"state": optimizer_state, "param_groups": document["optimizer"]["param_groups"]})
        if context.schedule is not None and document["schedule"] is not None:
            context.schedule.load_state_dict(document["schedule"])
        context.generator.set_state(tensors["rng.shuffle"])
        torch.set_rng_state(tensors["rng.torch"])
        saved = document["state"]
        context.state = FitState(
            epoch=saved["epoch"], best_score=saved["best_score"], best_loss=saved.get("best_loss"), best_epoch=saved["best_epoch"],
            best_state=best or None, best_metrics=saved["best_metrics"], stale=saved["stale"], log=saved["log"],
            train_seconds=saved["train_seconds"], trained=saved["trained"],
        )

    return restore
