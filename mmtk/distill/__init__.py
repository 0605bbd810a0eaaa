"""Knowledge distillation (``mmtk distill``): a small student learns from a teacher run's
cached predictions, with modality-specific distillation (MSD) and meta-learned weights.

- ``views``: the full input and each modality alone, removed through ``batch.present``.
- ``losses``: per-item KL at a temperature, FitNet, RKD, SP.
- ``weighting``: ``--msd none | population | importance | correctness``.
- ``meta``: ``--msd meta``, the Meta-Weight-Net step with ``torch.func.functional_call``.
- ``objective.DistillObjective``: the student's ``fit`` objective.

Importing the package imports torch; the CLI imports it only inside commands.
"""
