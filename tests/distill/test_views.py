"""Views remove modalities through ``present``; stacked views equal separate passes."""

from __future__ import annotations

import torch

from mmtk.distill.views import FULL, Views, only_view, split_views, stack_views, without
from mmtk.models.gmu import GatedMultimodalUnit
from mmtk.training.batch import Batch


def _batch(n=4):
    torch.manual_seed(0)
    present_text = torch.tensor([True, False, True, True])[:n]
    return Batch(features={"img": torch.randn(n, 6), "txt": torch.randn(n, 3)}, present={"txt": present_text})


def test_unimodal_views_keep_one_group_each():
    views = Views.from_groups({"image": ["img"], "text": ["txt"]}, unimodal=True)
    assert views.removed == {FULL: (), only_view("image"): ("txt",), only_view("text"): ("img",)}
    assert Views.from_groups({"image": ["img"], "text": ["txt"]}, unimodal=False).names == [FULL]


def test_without_marks_every_item_absent_and_keeps_the_values():
    batch = _batch()
    removed = without(batch, ("img",))
    assert not removed.present["img"].any()
    assert removed.features["img"] is batch.features["img"]
    assert torch.equal(removed.present["txt"], batch.present["txt"])


def test_stacked_views_give_the_outputs_of_separate_passes():
    views = Views.from_groups({"image": ["img"], "text": ["txt"]}, unimodal=True)
    model = GatedMultimodalUnit({"img": 6, "txt": 3}, {"y": 2}, hidden=8, dropout=0.0).eval()
    batch = _batch()
    stacked = split_views(model(stack_views(batch, views)), views)
    for view, removed in views.removed.items():
        alone = model(without(batch, removed))
        assert torch.allclose(stacked[view]["y"], alone["y"], atol=1e-6), view
    # The text-only view of an item without text has no modality at all: never used as
    # a signal, but it must not poison the batch with NaN either way.
    assert torch.isfinite(stacked[only_view("image")]["y"]).all()
