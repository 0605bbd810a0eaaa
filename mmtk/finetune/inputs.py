"""Which feature references are fine-tuned, their towers, and the ``finetune`` feature
source that gathers their raw inputs (token ids, image paths) instead of store features.

A fine-tuned reference keeps its name (``minilm@text``) and records ``finetune`` in the
run, so evaluate and predict gather it the same way: from the raw data, through the
run's own tower (its tokenizer, its preprocessing).
"""

from __future__ import annotations

from dataclasses import replace

from mmtk.errors import UsageError, where


def mark_finetuned(refs, settings, dataset) -> list:
    """``refs`` with the stored features of ``settings.wanted`` modalities (as the
    column each encodes on ``dataset``) marked ``finetune``; none marked is a usage error."""
    from mmtk.features import pick_column

    marked = []
    for ref in refs:
        if not ref.finetune and ref.source == "stored":
            _, modality = pick_column(dataset, ref.backbone, ref.column)
            if modality in settings.wanted:
                if ref.sequence:
                    raise UsageError(
                        f"feature {ref.name}: a fine-tuned backbone gives one vector per item, not a stored sequence",
                        f"write {ref.name.replace(':seq', '')} to fine-tune it, or keep :seq without --finetune {settings.modalities}",
                    )
                ref = replace(ref, finetune=True)
        marked.append(ref)
    if not any(ref.finetune for ref in marked):
        raise UsageError(
            f"--finetune {settings.modalities}: no feature in --features encodes {' or '.join(settings.wanted)}",
            "list the backbone to fine-tune, e.g. --features minilm@text,efficientnet-lite0 --finetune text",
        )
    return marked


def build_towers(refs, dataset, settings, device: str) -> dict:
    """``{reference name: (tower, BackboneConfig)}`` for the fine-tuned references: each
    backbone's ``build_trainable``, with the run's text options, frozen layers and
    gradient checkpointing applied."""
    from mmtk.backbones import resolve_backbone
    from mmtk.features import pick_column
    from mmtk.finetune.towers import configure

    towers = {}
    for ref in refs:
        if not ref.finetune:
            continue
        _, modality = pick_column(dataset, ref.backbone, ref.column)
        _check_modality(ref, modality)
        config = resolve_backbone(ref.backbone, modality, options=ref.options)
        tower = config.build_trainable(device)
        if tower.kind == "text":
            tower.with_options(
                max_length=ref.options.max_length, head=settings.text_head, lowercase_shouting=settings.lowercase_shouting,
                pooling=settings.text_pool,
            )
        towers[ref.name] = (configure(tower, freeze_layers=settings.freeze_layers, grad_checkpoint=settings.grad_checkpoint).to(device), config)
    return towers


def _check_modality(ref, modality: str) -> None:
    if modality not in ("text", "image"):
        raise UsageError(
            f"feature {ref.name}: fine-tuning reads image and text columns, not {modality}",
            "fine-tune a text or image feature, and keep the others as stored features",
        )


class RawFeatures:
    """The ``finetune`` feature source: a fine-tuned reference's raw inputs, prepared by
    its tower (``context.towers``): token ids (tokenised here, once) or image paths."""

    name = "finetune"

    def claims(self, ref) -> bool:
        return bool(getattr(ref, "finetune", False))

    def required_columns(self, ref) -> list[str]:
        from mmtk.backbones import resolve_backbone

        return [ref.column or resolve_backbone(ref.backbone).modality]

    def gather(self, dataset, ref, context):
        from mmtk.features import pick_column, presence
        from mmtk.finetune.media import RawMedia

        tower = context.towers.get(ref.name)
        if tower is None:
            raise UsageError(f"feature {ref.name} is fine-tuned, but no tower was built for it", "train with --finetune, or load the run that has it")
        column, modality = pick_column(dataset, ref.backbone, ref.column)
        _check_modality(ref, modality)
        values = dataset.values(column)
        present = presence(dataset, values, modality, column=column, feature=ref.name, missing=context.missing)
        kept = None if present.all() else present
        if modality == "text":
            ids, lengths = tower.tokenize([str(v) if there else "" for v, there in zip(values, present)])
            return RawMedia("text", tower.dim, ids=ids, lengths=lengths, present=kept)
        return RawMedia("image", tower.dim, paths=[str(v) if there else None for v, there in zip(values, present)], present=kept)


def item_labels(dataset) -> list[str]:
    """``file:line (item id)`` for each record: how a bad image is named."""
    return [where(dataset.source, record.line, record.id) for record in dataset.records]
