"""MixedSource: every batch from one dataset, proportional and round-robin orders, seeded,
sharded by world, the number of batches the loop plans with, and over the store-backed
source in a several-dataset run."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mmtk.runs import load_run
from mmtk.store import FeatureStore
from mmtk.train import train
from mmtk.training import InMemorySource, World
from mmtk.training.mix import MixedSource
from sequence_data import SEQ_FEATURES, sequence_dataset

SIZES = (50, 20, 7)  # items of datasets 0, 1, 2


def mixed(mix: str, sizes=SIZES) -> MixedSource:
    """Items whose single feature is their position; groups in order of ``sizes``."""
    n = sum(sizes)
    base = InMemorySource({"x": torch.arange(n, dtype=torch.float32)[:, None]}, {"y": torch.zeros(n)})
    starts = [sum(sizes[:d]) for d in range(len(sizes))]
    return MixedSource(base, [torch.arange(s, s + size) for s, size in zip(starts, sizes)], mix)


def dataset_of(position: int, sizes=SIZES) -> int:
    for d in range(len(sizes)):
        if position < sum(sizes[:d + 1]):
            return d
    raise AssertionError(position)


def epoch(source: MixedSource, batch_size: int, seed: int = 0, world: World = World()) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [batch.features["x"][:, 0].long().tolist() for batch in source.batches(batch_size, generator=generator, world=world)]


@pytest.mark.parametrize("mix", ["proportional", "round-robin"])
def test_every_batch_comes_from_one_dataset_and_the_plan_has_num_batches(mix):
    source = mixed(mix)
    batches = epoch(source, 8)
    assert all(len({dataset_of(p) for p in batch}) == 1 for batch in batches)
    assert len(batches) == source.num_batches(8)


def test_proportional_sees_every_item_once_with_batches_in_proportion_to_size():
    batches = epoch(mixed("proportional"), 8)
    items = [p for batch in batches for p in batch]
    assert sorted(items) == list(range(sum(SIZES)))  # each item once an epoch
    per_dataset = Counter(dataset_of(batch[0]) for batch in batches)
    assert per_dataset == {d: math.ceil(n / 8) for d, n in enumerate(SIZES)}  # 7, 3, 1
    # Interleaved, not one dataset after the other: the big one's batches are not all first.
    firsts = [dataset_of(batch[0]) for batch in batches]
    assert firsts != sorted(firsts)


def test_proportional_draws_the_next_dataset_in_proportion_to_its_size_over_many_epochs():
    source = mixed("proportional", (300, 100))
    generator = torch.Generator().manual_seed(1)
    first = Counter(dataset_of(int(next(iter(source.batches(10, generator=generator))).features["x"][0, 0]), (300, 100))
                    for _ in range(400))
    assert 0.65 < first[0] / 400 < 0.85  # 30 of 40 batches are dataset 0's: 0.75


def test_the_plan_is_seeded_by_the_generator():
    source = mixed("proportional")
    assert epoch(source, 8, seed=3) == epoch(source, 8, seed=3)
    assert epoch(source, 8, seed=3) != epoch(source, 8, seed=4)


def test_round_robin_alternates_and_cycles_the_smaller_datasets_through_the_largest():
    batches = epoch(mixed("round-robin"), 8)
    firsts = [dataset_of(batch[0]) for batch in batches]
    rounds = math.ceil(SIZES[0] / 8)  # 7 batches of the largest
    assert firsts == [0, 1, 2] * rounds
    largest = sorted(p for batch in batches for p in batch if dataset_of(p) == 0)
    assert largest == list(range(SIZES[0]))  # seen fully, once
    # Dataset 1 (20 items, 3 batches a pass) runs out after 3 rounds and is reshuffled:
    # each pass over it holds every one of its items.
    ones = [batch for batch in batches if dataset_of(batch[0]) == 1]
    first_pass = sorted(p for batch in ones[:3] for p in batch)
    second_pass = sorted(p for batch in ones[3:6] for p in batch)
    assert first_pass == second_pass == list(range(SIZES[0], SIZES[0] + SIZES[1]))
    assert [p for b in ones[:3] for p in b] != [p for b in ones[3:6] for p in b]  # reshuffled, not repeated


@pytest.mark.parametrize("mix", ["proportional", "round-robin"])
def test_ranks_share_each_dataset_between_them(mix):
    source = mixed(mix, (40, 16))
    ranks = [epoch(source, 4, seed=2, world=World(rank, 2)) for rank in range(2)]
    assert len(ranks[0]) == source.num_batches(4, World(0, 2))
    for batches in ranks:
        assert all(len({dataset_of(p, (40, 16)) for p in batch}) == 1 for batch in batches)
    if mix == "proportional":
        seen = [sorted(p for batch in batches for p in batch) for batches in ranks]
        assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(56))


def test_without_a_generator_every_item_comes_once_in_order():
    source = mixed("round-robin")
    items = [p for batch in source.batches(16) for p in batch.features["x"][:, 0].long().tolist()]
    assert items == list(range(sum(SIZES)))


def test_an_unknown_mix_is_refused():
    with pytest.raises(ValueError, match="round-robin"):
        mixed("shuffled")


def test_sequences_of_several_datasets_train_alike_from_memory_and_from_the_store(tmp_path):
    """A sequence model: the datasets' stored sequences are joined into one reader; with a
    tiny memory budget batches are read from the store through the MixedSource, and the
    weights match the in-memory run. Items without text are skipped per dataset."""
    store = FeatureStore(tmp_path / "store")
    a = sequence_dataset(tmp_path / "a", store, n=60, seed=0, blank_texts=5)
    b = sequence_dataset(tmp_path / "b", store, n=40, seed=1)
    runs = {}
    for budget in ("1G", "1K"):
        report = train({"a": a, "b": b}, features=SEQ_FEATURES, model="attention-pool", tasks=["label"], out=tmp_path / budget,
                       store=store, max_memory=budget, missing_modality="skip", epochs=4, batch_size=16, lr=1e-2, device="cpu")
        runs[report.batch_source] = report
    assert set(runs) == {"memory", "store"}
    first, second = (load_run(runs[kind].run).model.state_dict() for kind in ("memory", "store"))
    assert all(torch.allclose(first[k], second[k], atol=1e-5) for k in first)
    assert [bad.item for bad in runs["store"].skipped] == [str(i) for i in range(5)]
    config = load_run(runs["store"].run).config
    assert [(d["name"], d["items"]) for d in config["datasets"]] == [("a", 55), ("b", 40)]
    assert config["training"]["dataset_items"] == 95 and config["training"]["batch_source"] == "store"


def test_forward_all_runs_over_a_mixed_source_in_the_base_sources_chunks():
    from mmtk.models.inference import forward_all

    source = mixed("proportional")
    source.base.lengths["x"] = torch.ones(sum(SIZES), dtype=torch.int64)  # a "sequence": fewer items a chunk
    source.base.features["x"] = source.base.features["x"][:, None, :].expand(-1, 4096, -1)
    assert source.eval_batch == source.base.eval_batch == 16
    seen = []

    class Echo(torch.nn.Module):
        def forward(self, batch):
            seen.append(len(batch))
            return {"y": batch.features["x"][:, 0]}

    logits, _ = forward_all(Echo(), source)
    assert logits["y"][:, 0].long().tolist() == list(range(sum(SIZES)))
    assert seen == [16, 16, 16, 16, 13]
