"""Batch sources: index slices in memory, per-batch reads from the store with prefetch,
sharding by rank, and the memory budget that picks between them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtk.features import GatherContext, gather_inputs, parse_feature_refs
from mmtk.store import FeatureStore
from mmtk.training import InMemorySource, World
from mmtk.training.data import memory_source, pick_source, store_source
from mmtk.training.sources import parse_memory, prefetch
from sequence_data import SEQ_FEATURES, sequence_dataset


@pytest.fixture
def gathered(tmp_path):
    store = FeatureStore(tmp_path / "store")
    dataset = sequence_dataset(tmp_path, store, n=50)
    context = GatherContext(store=store, pool=None, lazy=True)
    return gathered_inputs(dataset, context), dataset


def gathered_inputs(dataset, context):
    return gather_inputs(dataset, parse_feature_refs(SEQ_FEATURES), context)


def targets(dataset):
    return {"label": torch.tensor([r.values["label"] for r in dataset.records], dtype=torch.float32)}


def test_the_store_source_gives_the_batches_the_memory_source_gives(gathered):
    items, dataset = gathered
    memory = memory_source(items, targets(dataset), None, "cpu")
    stored = store_source(items, targets(dataset), None, "cpu")
    assert (memory.kind, stored.kind) == ("memory", "store")
    a = list(memory.batches(8, generator=torch.Generator().manual_seed(3)))
    b = list(stored.batches(8, generator=torch.Generator().manual_seed(3)))
    assert len(a) == len(b) == memory.num_batches(8) == 7
    for x, y in zip(a, b):
        assert x.features.keys() == y.features.keys() == {"minilm:seq", "efficientnet-lite0"}
        for name in x.features:
            assert torch.equal(x.features[name], y.features[name])
        assert torch.equal(x.masks["minilm:seq"], y.masks["minilm:seq"]) and torch.equal(x.targets["label"], y.targets["label"])
        # Padded to the batch's longest item, not the set's.
        assert x.features["minilm:seq"].shape[1] == int(x.masks["minilm:seq"].sum(1).max())


def test_sequences_keep_their_stored_steps_and_padding_is_masked(gathered):
    items, dataset = gathered
    reader = items["minilm:seq"].reader
    steps, lengths = reader.read(np.arange(len(dataset)))
    batch = next(memory_source(items, targets(dataset), None, "cpu").batches(50))
    assert batch.features["minilm:seq"].shape == (50, int(lengths.max()), 6)
    assert torch.equal(batch.masks["minilm:seq"].sum(1), torch.from_numpy(lengths))
    assert float(batch.features["minilm:seq"][~batch.masks["minilm:seq"]].abs().sum()) == 0.0


def test_ranks_share_the_shuffled_order_without_overlap(gathered):
    items, dataset = gathered
    source = memory_source(items, {"label": torch.arange(50, dtype=torch.float32)}, None, "cpu")
    seen = []
    for rank in range(2):
        world = World(rank=rank, size=2)
        got = [b.targets["label"] for b in source.batches(4, generator=torch.Generator().manual_seed(1), world=world)]
        assert len(got) == source.num_batches(4, world) == 7
        seen.append(torch.cat(got))
    assert sorted(torch.cat(seen).tolist()) == list(range(50))


def test_the_memory_budget_picks_the_source(gathered):
    items, dataset = gathered
    size = sum(item.nbytes() for item in items.values())
    assert pick_source(items, targets(dataset), None, "cpu", None, size).kind == "memory"
    assert pick_source(items, targets(dataset), None, "cpu", None, size - 1).kind == "store"


def test_prefetch_hands_on_errors_and_stops_when_closed():
    def failing():
        yield 1
        raise ValueError("bad shard")

    with pytest.raises(ValueError, match="bad shard"):
        list(prefetch(failing(), 2))
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), 2)
    assert next(stream) == 0
    stream.close()  # joins the producer thread: it must notice and stop
    assert len(made) < 10


def test_memory_sizes_parse():
    assert parse_memory("800M") == 800 << 20 and parse_memory("1.5G") == 3 << 29 and parse_memory("4096") == 4096
    with pytest.raises(ValueError):
        parse_memory("lots")


def test_an_in_memory_source_of_vectors_slices_without_masks():
    source = InMemorySource({"a": torch.arange(10.0)[:, None]}, {"t": torch.arange(10)})
    batches = list(source.batches(4))
    assert [len(b) for b in batches] == [4, 4, 2] and not batches[0].masks and not batches[0].present
    assert torch.equal(torch.cat([b.targets["t"] for b in batches]), torch.arange(10))


def test_evaluation_chunks_of_sequences_are_bounded_by_their_padded_steps():
    from mmtk.models.inference import forward_all
    from mmtk.training.sources import EVAL_ITEMS, EVAL_STEPS

    n, steps = 3000, 64
    lengths = torch.randint(1, steps + 1, (n,), generator=torch.Generator().manual_seed(0))
    lengths[0] = steps
    source = InMemorySource({"seq": torch.randn(n, steps, 2), "vec": torch.randn(n, 3)}, {}, lengths={"seq": lengths})
    assert source.eval_batch == EVAL_STEPS // steps < n
    assert InMemorySource({"vec": torch.randn(n, 3)}, {}).eval_batch == EVAL_ITEMS

    class MaskedMean(torch.nn.Module):  # a sequence model: its output must not depend on the chunking
        def forward(self, batch):
            mask = batch.masks["seq"][..., None]
            seen.append(len(batch))
            return {"y": (batch.features["seq"] * mask).sum(1) / mask.sum(1) + batch.features["vec"][:, :2]}

    seen = []
    chunked, _ = forward_all(MaskedMean(), source)
    assert max(seen) == source.eval_batch and sum(seen) == n
    expected = MaskedMean()(source.take(torch.arange(n)))["y"]
    assert torch.allclose(chunked["y"], expected, atol=1e-6)
