"""InputSpec and Batch: what a run records about its inputs, and how batches move."""

from __future__ import annotations

import pytest
import torch

from mmtk.training import Batch, InputSpec, as_batch
from mmtk.training.inputs import specs_from_json


def test_input_specs_round_trip_and_refuse_nonsense():
    spec = InputSpec("minilm:seq", 384, "sequence", 128)
    assert InputSpec.from_json(spec.to_json()) == spec and spec.is_sequence
    with pytest.raises(ValueError, match="kind must be one of"):
        InputSpec("x", 3, "matrix")
    with pytest.raises(ValueError, match="dim must be positive"):
        InputSpec("x", 0)


def test_runs_before_input_specs_read_as_vectors():
    old = {"input_dims": {"efficientnet-lite0": 1280, "minilm": 384}}
    assert specs_from_json(old) == {"efficientnet-lite0": InputSpec("efficientnet-lite0", 1280), "minilm": InputSpec("minilm", 384)}
    new = {"input_dims": {"a": 9}, "inputs": [{"name": "a", "dim": 8, "kind": "sequence", "max_len": 4}]}
    assert specs_from_json(new)["a"] == InputSpec("a", 9, "sequence", 4)  # input_dims holds the width


def test_a_batch_moves_every_part_and_a_dict_is_a_batch():
    batch = Batch(features={"a": torch.zeros(2, 3)}, masks={"a": torch.ones(2, 3, dtype=torch.bool)},
                  present={"a": torch.tensor([True, False])}, targets={"t": torch.tensor([0, 1])},
                  target_masks={"t": torch.tensor([True, True])})
    moved = batch.to("cpu")
    assert len(moved) == 2 and moved.is_present("a").tolist() == [True, False] and moved.is_present("b") is None
    plain = as_batch({"a": torch.zeros(4, 3)})
    assert isinstance(plain, Batch) and len(plain) == 4 and not plain.masks and as_batch(batch) is batch
