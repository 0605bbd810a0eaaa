"""``FinetunedModel``: trainable towers in front of any registry fusion model.

Each tower turns its raw input (token ids, pixels) into one vector per item; the batch
then goes on to the fusion model exactly as stored features would, so every fusion
model (concat, gmu, ...) trains with fine-tuned backbones unchanged. The run's
``model.safetensors`` holds towers and fusion alike; ``RUN/towers/N/`` holds what
rebuilds tower N offline (tokenizer and transformers config, or the image
preprocessing and open_clip config), and ``config.json["finetune"]`` records each
tower: its input, base backbone, settings and the fingerprint of features extracted
from it (``extract-features --backbone finetuned:RUN``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmtk.training.batch import Batch, as_batch

#: Where tower N's files live inside a run directory.
TOWERS_DIR = "towers"


class FinetunedModel(nn.Module):
    """``towers`` (input name -> tower) feed ``fusion``; ``forward``, ``represent``,
    ``explain`` take batches whose fine-tuned inputs are raw. An absent item's tower
    output is zeroed, as an absent stored feature is."""

    def __init__(self, towers: dict, fusion: nn.Module):
        super().__init__()
        self.names = list(towers)
        self.towers = nn.ModuleList(towers.values())
        self.fusion = fusion
        self.width = getattr(fusion, "width", None)

    def tower(self, name: str) -> nn.Module:
        return self.towers[self.names.index(name)]

    @property
    def tower_map(self) -> dict:
        return dict(zip(self.names, self.towers))

    def encode(self, batch) -> Batch:
        """The batch with every fine-tuned input replaced by its tower's vectors."""
        batch = as_batch(batch)
        features, masks = dict(batch.features), dict(batch.masks)
        for name, tower in zip(self.names, self.towers):
            x = tower(features[name], masks.pop(name, None)) if tower.kind == "text" else tower(features[name])
            present = batch.is_present(name)
            if present is not None:
                x = x * present[:, None].to(x.dtype)
            features[name] = x
        return Batch(features, masks, batch.present, batch.targets, batch.target_masks)

    def forward(self, batch, auxiliary: bool = False):
        encoded = self.encode(batch)
        return self.fusion(encoded, auxiliary=True) if auxiliary else self.fusion(encoded)

    def represent(self, batch) -> torch.Tensor:
        return self.fusion.represent(self.encode(batch))

    def explain(self, batch) -> dict:
        return self.fusion.explain(self.encode(batch))

    def write_run_files(self, folder: Path) -> None:
        """Each tower's rebuild files under ``folder/towers/N`` (called by ``save_run``)."""
        for index, tower in enumerate(self.towers):
            target = Path(folder) / TOWERS_DIR / str(index)
            target.mkdir(parents=True, exist_ok=True)
            tower.save_files(target)


def param_groups(model: FinetunedModel, lr: float, backbone_lr: float, extra=()) -> list[dict]:
    """AdamW parameter groups: the fusion model (and ``extra`` modules) at ``lr``, the
    towers' trainable parameters at ``backbone_lr``; frozen parameters are left out."""
    head = [p for p in model.fusion.parameters() if p.requires_grad] + [p for module in extra for p in module.parameters()]
    backbone = [p for p in model.towers.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": lr, "name": "head"}]
    if backbone:
        groups.append({"params": backbone, "lr": backbone_lr, "name": "backbone"})
    return groups


def run_record(model: FinetunedModel, configs: dict, columns: dict, settings) -> dict:
    """``config.json["finetune"]``: the settings and, per tower, its input, files, base
    backbone (spec, fingerprint), the column it reads, its own record and the
    fingerprint of features extracted from it (base identity + fine-tuned weights)."""
    from mmtk.backbones.base import make_fingerprint
    from mmtk.backbones.finetuned import NAME
    from mmtk.finetune.towers import weights_digest

    towers = []
    for index, (name, tower) in enumerate(zip(model.names, model.towers)):
        base = configs[name]
        record = tower.record()
        digest = weights_digest(tower)
        identity = {"base": base.fingerprint, "weights": digest, "tower": record}
        towers.append({
            "input": name, "files": f"{TOWERS_DIR}/{index}", "modality": base.modality, "column": columns[name],
            "base_spec": base.spec, "base_fingerprint": base.fingerprint, "weights_sha256": digest, "tower": record,
            "identity": identity, "fingerprint": make_fingerprint(NAME, identity),
        })
    return {"settings": settings.to_json(), "towers": towers}


def rebuild(path: Path, config: dict, fusion: nn.Module) -> FinetunedModel:
    """The run's model with random weights (``load_run`` loads its state next)."""
    from mmtk.errors import UsageError
    from mmtk.finetune.towers import rebuild_tower

    towers = {}
    for entry in config["finetune"]["towers"]:
        folder = Path(path) / entry["files"]
        try:
            towers[entry["input"]] = rebuild_tower(folder, entry["tower"])
        except (OSError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise UsageError(f"{folder}: the fine-tuned tower of {entry['input']} cannot be rebuilt ({detail})", "restore the run directory whole, or retrain it") from None
    return FinetunedModel(towers, fusion)
