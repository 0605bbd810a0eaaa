"""``finetuned:RUN``: the fine-tuned tower of a run directory as a backbone, so its
features can be extracted into the store and used like any other feature set.

``mmtk extract-features DATA --backbone finetuned:RUN`` (or ``--backbone run:RUN``, the
same backbone under the name issue 13 gives it) encodes the column the tower was
trained on. As a feature reference it is ``finetuned:RUN[@COLUMN]``: ``run:RUN`` in
``--features`` already means a run's output probabilities (stacking), so the tower's
features are always written ``finetuned:``. The fingerprint is the one the run recorded
(``config.json["finetune"]``, recomputed from its ``identity``): the base backbone's
fingerprint, the SHA-256 of the fine-tuned weights and the tower's settings, so features
of a fine-tuned tower never mix with the base model's or another run's.
A run with towers of both modalities gives the one of the column's modality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import BackboneConfig, make_fingerprint
from mmtk.backbones.registry import BACKBONES
from mmtk.errors import UsageError

NAME = "finetuned"
ALIAS = "run"


def _towers(arg: str | None, name: str) -> tuple[Path, list[dict]]:
    if not arg:
        raise UsageError(f"backbone {name!r} needs a run directory", f"write {NAME}:runs/my-finetuned-run")
    path = Path(arg).expanduser()
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"{name}:{arg}: {config_path} cannot be read", "name a run directory written by mmtk train --finetune") from None
    towers = (config.get("finetune") or {}).get("towers") if isinstance(config, dict) else None
    if not towers:
        raise UsageError(f"{name}:{arg}: the run has no fine-tuned tower", "name a run trained with --finetune text|image|all")
    return path.resolve(), towers


def resolve_finetuned(arg: str | None, modality: str | None, *, name: str = NAME) -> BackboneConfig:
    """Resolve ``finetuned:RUN`` for a column of ``modality`` (None: the run's first tower)."""
    path, towers = _towers(arg, name)
    chosen = [t for t in towers if modality is None or t["modality"] == modality]
    if not chosen:
        have = ", ".join(sorted({t["modality"] for t in towers}))
        raise UsageError(f"{name}:{arg} has no fine-tuned {modality} tower (it has: {have})", f"encode a {have} column with it")
    tower = chosen[0]
    return BackboneConfig(
        spec=f"{NAME}:{path}",
        name=NAME,
        modality=tower["modality"],
        # Recomputed from the recorded identity, so that a new feature format version
        # (part of every fingerprint) also retires features of fine-tuned towers.
        fingerprint=make_fingerprint(NAME, tower["identity"]),
        builder=build_finetuned,
        settings={"run": str(path), "input": tower["input"]},
        dim=int(tower["tower"]["dim"]),
        cpu_batch_size=16,
        cuda_batch_size=128,
        variant=f"fine-tuned {tower['base_spec']}",
    )


BACKBONES.add(NAME, resolve_finetuned, "finetuned:RUN: the fine-tuned text or image tower of a run trained with --finetune")
BACKBONES.add(
    ALIAS, lambda arg, modality: resolve_finetuned(arg, modality, name=ALIAS),
    "run:RUN: finetuned:RUN under the name extract-features also accepts (as a --features entry, run:RUN means a run's outputs)",
)


def build_finetuned(config: BackboneConfig, device: str):
    """Load the run and wrap the tower as an extraction ``Encoder``."""
    from mmtk.runs import load_run

    run = load_run(config.settings["run"], device=device)
    return TowerEncoder(run.model.tower(config.settings["input"]), device)


class TowerEncoder:
    """A fine-tuned tower as an ``Encoder``: texts tokenised (and lower-cased when the
    run did) or images through the tower's evaluation preprocessing, then the tower
    under inference mode."""

    def __init__(self, tower, device: str):
        self.tower = tower.eval()
        self.device = device
        self.dim = int(tower.dim)
        self.loader = tower.loader(train=False) if tower.kind == "image" else None

    def load(self, value: str) -> Any:
        if self.loader is None:
            from mmtk.backbones.text import checked_text

            return checked_text(value)
        return self.loader(value)

    def collate(self, items: Sequence[Any]):
        import torch

        if self.loader is not None:
            return torch.stack(list(items))
        ids, lengths = self.tower.tokenize(list(items))
        ids = torch.as_tensor(ids)
        return ids, torch.arange(ids.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]

    def encode(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self.loader is not None:
                out = self.tower(batch.to(self.device))
            else:
                ids, mask = batch
                out = self.tower(ids.to(self.device), mask.to(self.device))
        return out.float().cpu().numpy()

