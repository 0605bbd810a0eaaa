"""``Batch``: what every model, objective and batch source exchanges.

Empty ``masks``/``present``/``target_masks`` entries mean "all valid", so the common
case (dense vectors, every modality and label there) builds no mask tensors at all and
the in-memory path costs what plain index slices cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    """``features``: input name -> ``(B, d)`` or ``(B, T, d)``; ``masks``: sequence input
    -> bool ``(B, T)`` (True at valid steps); ``present``: input -> bool ``(B,)`` (False
    where the item has no such modality; absent key: all present); ``targets``: task ->
    labels; ``target_masks``: task -> bool ``(B,)`` (False where the item has no label
    for that task; absent key: all labelled)."""

    features: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    present: dict[str, torch.Tensor] = field(default_factory=dict)
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    target_masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.features.values())))

    def to(self, device, non_blocking: bool = False) -> Batch:
        def move(tensors: dict) -> dict:
            return {name: t.to(device, non_blocking=non_blocking) for name, t in tensors.items()}

        return Batch(move(self.features), move(self.masks), move(self.present), move(self.targets), move(self.target_masks))

    def pin_memory(self) -> Batch:
        def pin(tensors: dict) -> dict:
            return {name: t.pin_memory() for name, t in tensors.items()}

        return Batch(pin(self.features), pin(self.masks), pin(self.present), pin(self.targets), pin(self.target_masks))

    def is_present(self, name: str) -> torch.Tensor | None:
        """Bool ``(B,)`` for input ``name``, or None when every item has it."""
        return self.present.get(name)


def as_batch(inputs) -> Batch:
    """A ``Batch`` from a Batch or a plain ``{name: tensor}`` dict (the models' old call
    form, kept for scripts that call a model directly)."""
    return inputs if isinstance(inputs, Batch) else Batch(features=dict(inputs))
