"""``FinetuneSettings``: what ``mmtk train --finetune`` changes, as frozen data."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mmtk.errors import UsageError

#: ``--finetune`` choices and the modalities each fine-tunes.
CHOICES = {"text": ("text",), "image": ("image",), "all": ("text", "image")}
#: The backbone learning rate when none is given: the usual range for fine-tuning a
#: pretrained transformer or CNN, well below the 1e-3 a fusion head trains at.
DEFAULT_BACKBONE_LR = 3e-5


@dataclass(frozen=True)
class FinetuneSettings:
    """``modalities``: "text", "image" or "all" (the stored features of those
    modalities are replaced by trainable towers over the raw data). ``backbone_lr``:
    the towers' learning rate (their own AdamW parameter group). ``freeze_layers``: the
    embeddings and the first N transformer layers / image stages stay fixed.
    ``grad_checkpoint``: recompute activations in the backward pass (less memory).
    ``text_head``: "pool" or "bilstm-attention"; ``text_pool``: "auto" (``minilm``: the mean it
    was trained with; others by model family: [CLS], last token or max) or one of "cls", "last", "max", "mean".
    ``lowercase_shouting``: lower-case texts that are mostly upper case before
    tokenising (recorded, so evaluate and predict do the same). ``workers``: DataLoader
    processes decoding images (None: ``mmtk.finetune.media.DEFAULT_WORKERS``)."""

    modalities: str = "text"
    backbone_lr: float = DEFAULT_BACKBONE_LR
    freeze_layers: int = 0
    grad_checkpoint: bool = False
    text_head: str = "pool"
    text_pool: str = "auto"
    lowercase_shouting: bool = False
    workers: int | None = None

    def __post_init__(self):
        from mmtk.finetune.towers_names import TEXT_HEADS, TEXT_POOLS

        if self.modalities not in CHOICES:
            raise UsageError(f"--finetune {self.modalities!r} is not one of {', '.join(CHOICES)}", f"choose one of: {', '.join(CHOICES)}")
        if not (isinstance(self.backbone_lr, (int, float)) and self.backbone_lr >= 0):
            raise UsageError(f"--backbone-lr {self.backbone_lr!r} must be a number >= 0", "pass e.g. --backbone-lr 3e-5")
        if not (isinstance(self.freeze_layers, int) and self.freeze_layers >= 0):
            raise UsageError(f"--freeze-layers {self.freeze_layers!r} must be an integer >= 0", "pass e.g. --freeze-layers 2")
        if self.text_head not in TEXT_HEADS:
            raise UsageError(f"--model-arg text_head={self.text_head} is not one of {', '.join(TEXT_HEADS)}", f"choose one of: {', '.join(TEXT_HEADS)}")
        if self.text_pool not in TEXT_POOLS:
            raise UsageError(f"--model-arg text_pool={self.text_pool} is not one of {', '.join(TEXT_POOLS)}", f"choose one of: {', '.join(TEXT_POOLS)}")
        if self.workers is not None and not (isinstance(self.workers, int) and self.workers >= 0):
            raise UsageError(f"--data-workers {self.workers!r} must be an integer >= 0", "pass e.g. --data-workers 1")

    @property
    def wanted(self) -> tuple[str, ...]:
        return CHOICES[self.modalities]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, value) -> FinetuneSettings | None:
        """``None``, a modality choice ("text") or settings -> settings or None."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(modalities=value)
        if isinstance(value, dict):
            return cls(**value)
        raise UsageError(f"finetune={value!r} is not a modality choice", f"pass one of: {', '.join(CHOICES)}")
