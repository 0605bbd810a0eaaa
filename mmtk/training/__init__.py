"""The training layer: what every trainer (``mmtk train`` today; distillation,
fine-tuning and DDP next) is built from. See docs/ARCHITECTURE.md, "Training layer".

- ``inputs.InputSpec``: one model input (name, width, vector or sequence, max length).
- ``batch.Batch``: features, sequence masks, modality presence, targets, target masks.
- ``sources``: ``InMemorySource`` (index slices of tensors) and ``StoreSource``
  (sequences read per batch from the store's shards, prefetched on a thread).
- ``data``: gathered inputs to a source, chosen by a memory budget.
- ``normalize.Standardizer``: per-feature statistics fitted on the training part.
- ``objectives``: ``TaskLoss`` and ``SupervisedObjective`` (named terms + ``total``);
  ``AuxiliaryObjective`` adds a model's own extra losses as ``aux.NAME`` terms.
- ``schedule``: AdamW (fused where available) and warm-up + decay schedules.
- ``loop.fit``: the loop; ``world.World``: rank and world size.
- ``checkpoint``: checkpoints and ``--resume``.

Importing the package imports torch; the CLI imports it only inside commands.
"""

from mmtk.training.batch import Batch, as_batch
from mmtk.training.inputs import InputSpec
from mmtk.training.loop import FitContext, FitResult, FitSettings, FitState, fit
from mmtk.training.normalize import Standardizer
from mmtk.training.objectives import TOTAL, AuxiliaryObjective, Objective, SupervisedObjective, TaskLoss
from mmtk.training.schedule import adamw, make_schedule
from mmtk.training.sources import InMemorySource, StoreSource
from mmtk.training.world import World

__all__ = [
    "TOTAL", "AuxiliaryObjective", "Batch", "FitContext", "FitResult", "FitSettings", "FitState", "InMemorySource", "InputSpec", "Objective",
    "Standardizer", "StoreSource", "SupervisedObjective", "TaskLoss", "World", "adamw", "as_batch", "fit", "make_schedule",
]
