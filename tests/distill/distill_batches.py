"""A tiny two-modality batch with cached teacher logits, for the distillation tests."""

from __future__ import annotations

import torch

from mmtk.distill.views import TEACHER_HIDDEN, Views, teacher_key
from mmtk.training.batch import Batch

GROUPS = {"image": ["img"], "text": ["txt"]}


def views(unimodal: bool = True) -> Views:
    return Views.from_groups(GROUPS, unimodal)


def teacher_batch(n: int = 6, classes: int = 3, seed: int = 0, dtype=torch.float32) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    targets = {"y": torch.randint(0, classes, (n,), generator=generator)}
    for view in views().names:
        targets[teacher_key(view, "y")] = torch.randn(n, classes, generator=generator, dtype=dtype)
    targets[TEACHER_HIDDEN] = torch.randn(n, 5, generator=generator, dtype=dtype)
    features = {"img": torch.randn(n, 4, generator=generator, dtype=dtype), "txt": torch.randn(n, 3, generator=generator, dtype=dtype)}
    return Batch(features=features, targets=targets)
