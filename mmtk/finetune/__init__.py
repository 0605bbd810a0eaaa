"""Fine-tuning backbones inside the training loop (``mmtk train --finetune``).

- ``settings``: ``FinetuneSettings`` (which modalities, backbone learning rate, frozen
  layers, gradient checkpointing, text head, lower-casing of shouted text, workers).
- ``inputs``: marking feature references as fine-tuned, building their towers, and the
  ``finetune`` feature source that gathers raw inputs (token ids, image paths).
- ``towers``: the trainable backbones ``BackboneConfig.build_trainable`` returns.
- ``pixels``: image files to pixels (augmented for training) in DataLoader workers.
- ``media``: ``RawMedia`` and ``MediaSource``, the batch source over raw inputs.
- ``model``: ``FinetunedModel`` (towers in front of a registry fusion model), its
  parameter groups, and rebuilding it from a run directory.
The backbone ``finetuned:RUN`` (alias ``run:RUN`` for extract-features), features of
a run's fine-tuned tower as a new feature set, is ``mmtk.backbones.finetuned``.

Nothing here is imported by ``mmtk --help``; torch loads only when a tower is built.
"""
