"""mult, the Multimodal Transformer: masks are honoured (padded values, the batch an item
sits in, modalities padded to different lengths), pooling and fusion modes, vector
inputs, absent modalities and items without a valid step, its parameters' checks, its
dropout and attention, and `mmtk train --model mult` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmtk.errors import UsageError
from mmtk.models import MODELS, supports_explain
from mmtk.models.mult import attention, dropout
from mmtk.training import Batch, InputSpec
from training.sequence_data import sequence_dataset

SMALL = {"width": 8, "num_heads": 2, "layers": 2, "self_layers": 1, "hidden": 6}
HEADS = {"sentiment": 3, "humour.level": 1}
DIMS = {"minilm:seq": 5, "efficientnet-lite0:seq@img": 3}


def specs(vector: bool = True, dims: dict = DIMS) -> dict[str, InputSpec]:
    inputs = {name: InputSpec(name, d, "sequence") for name, d in dims.items()}
    return {**inputs, "tabular": InputSpec("tabular", 4)} if vector else inputs


def build(seed: int = 0, inputs: dict | None = None, **params):
    torch.manual_seed(seed)
    return MODELS.get("mult")(specs() if inputs is None else inputs, HEADS, **{**SMALL, **params})


def ragged_batch(lengths: dict[str, list[int]], seed: int = 0, noise: float = 0.0) -> Batch:
    """Sequences with the given valid lengths, padded to the longest (at least 1 step)
    with zeros or ``noise``-scaled random values; a 4-d ``tabular`` vector."""
    generator = torch.Generator().manual_seed(seed)
    features, masks = {}, {}
    for name, lens in lengths.items():
        width = max(max(lens), 1)
        mask = torch.arange(width)[None, :] < torch.tensor(lens)[:, None]
        values = torch.randn(len(lens), width, DIMS[name], generator=generator)
        features[name] = torch.where(mask[..., None], values, noise * torch.randn(values.shape, generator=generator))
        masks[name] = mask
    count = len(next(iter(lengths.values())))
    features["tabular"] = torch.randn(count, 4, generator=generator)
    return Batch(features=features, masks=masks)


LENGTHS = {"minilm:seq": [6, 1, 3, 6, 2], "efficientnet-lite0:seq@img": [2, 4, 4, 1, 3]}


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([out for out in model(batch).values()], dim=1)


@pytest.mark.parametrize("fusion", ["concat", "gmu"])
@pytest.mark.parametrize("pool", ["last", "mean"])
def test_outputs_and_representation_have_the_right_shapes(fusion, pool):
    model = build(fusion=fusion, pool=pool).eval()
    batch = ragged_batch(LENGTHS)
    out = model(batch)
    assert {task: tuple(t.shape) for task, t in out.items()} == {"sentiment": (5, 3), "humour.level": (5, 1)}
    # concat: one stream of (S - 1) * width features per input; gmu: its hidden width.
    assert model.width == (3 * SMALL["width"] if fusion == "concat" else SMALL["hidden"])
    assert model.represent(batch).shape == (5, model.width)


@pytest.mark.parametrize("fusion", ["concat", "gmu"])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_an_item_gives_the_same_output_alone_and_padded_inside_a_longer_batch(fusion, kernel_size):
    model = build(fusion=fusion, kernel_size=kernel_size).eval()
    batch = ragged_batch(LENGTHS, noise=100.0)  # padding full of large values
    together = logits(model, batch)
    assert torch.isfinite(together).all()
    for i in range(5):
        # The item alone, each sequence cut to its own length: the modalities then have
        # different padded lengths, so the crossmodal pairs run in separate groups.
        alone = Batch(
            features={name: x[i:i + 1, :max(LENGTHS[name][i], 1)] if name in LENGTHS else x[i:i + 1] for name, x in batch.features.items()},
            masks={name: m[i:i + 1, :max(LENGTHS[name][i], 1)] for name, m in batch.masks.items()},
        )
        torch.testing.assert_close(logits(model, alone), together[i:i + 1], atol=1e-5, rtol=1e-5)
    # Longer padding (and other values in it) changes nothing either.
    longer = Batch(features=dict(batch.features), masks=dict(batch.masks))
    for name, extra in (("minilm:seq", 3), ("efficientnet-lite0:seq@img", 7)):
        x = batch.features[name]
        longer.features[name] = torch.cat([x, -50 * torch.randn(len(x), extra, x.shape[2])], dim=1)
        longer.masks[name] = F.pad(batch.masks[name], (0, extra), value=False)
    torch.testing.assert_close(logits(model, longer), together, atol=1e-5, rtol=1e-5)


def test_pool_last_reads_the_last_valid_step_and_mean_the_mean_of_valid_steps():
    out = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[True, False, True, False], [False, False, False, False]])
    last, mean = build(pool="last"), build(pool="mean")
    # Item 0's valid steps are 0 and 2 (a mask need not be a prefix); item 1 has none,
    # whose row the model zeroes afterwards (it must only be finite here).
    torch.testing.assert_close(last._pool(out, mask)[0], out[0, 2])
    torch.testing.assert_close(mean._pool(out, mask)[0], (out[0, 0] + out[0, 2]) / 2)
    assert torch.isfinite(last._pool(out, mask)).all() and torch.isfinite(mean._pool(out, mask)).all()
    batch = ragged_batch(LENGTHS)
    assert not torch.allclose(logits(last.eval(), batch), logits(mean.eval(), batch))


@pytest.mark.parametrize("fusion", ["concat", "gmu"])
def test_an_absent_modality_is_left_out_of_attention_and_late_fusion(fusion):
    model = build(fusion=fusion).eval()
    absent = torch.tensor([True, False, True, False, False])
    for name in [*LENGTHS, "tabular"]:
        outs = []
        for seed in (1, 2):
            batch = ragged_batch(LENGTHS, seed=0)
            values = ragged_batch(LENGTHS, seed=seed).features[name]  # other values where absent
            batch.features[name] = torch.where(absent.view(-1, *[1] * (values.dim() - 1)), values, batch.features[name])
            batch.present = {name: ~absent}
            outs.append(logits(model, batch))
            late = model.late_inputs(batch)
            assert torch.equal(late.present[name], ~absent)
            assert name == "tabular" or (late.features[name][absent] == 0).all()
        torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
        if fusion == "gmu":
            weights = model.explain(batch)
            assert (weights[name][absent] == 0).all() and (weights[name][~absent] > 0).all()
            torch.testing.assert_close(sum(weights.values()), torch.ones(5))
    # The stream an absent source would give its target is zeros (not attention over the
    # positions of an empty sequence).
    streams = []
    self_attention = model._self_attention
    model._self_attention = lambda inputs, masks: streams.extend(inputs) or self_attention(inputs, masks)
    batch = ragged_batch(LENGTHS)
    batch.present = {"minilm:seq": ~absent}
    logits(model, batch)
    image_stream = streams[1]  # the image's stream: its crossmodal output from the text
    assert (image_stream[absent] == 0).all() and (image_stream[~absent].abs().sum(dim=(1, 2)) > 0).all()
    # A sequence without a valid step is absent too, even where present says nothing.
    batch = ragged_batch({**LENGTHS, "minilm:seq": [6, 0, 3, 0, 2]})
    assert torch.equal(model.late_inputs(batch).present["minilm:seq"], torch.tensor([True, False, True, False, True]))


@pytest.mark.parametrize("fusion", ["concat", "gmu"])
def test_items_without_any_valid_step_give_finite_outputs_and_gradients(fusion):
    model = build(fusion=fusion).train()
    # Item 1 has no step in either sequence and no vector; item 2 none in one sequence.
    batch = ragged_batch({"minilm:seq": [3, 0, 0, 2], "efficientnet-lite0:seq@img": [1, 0, 4, 2]})
    batch.present = {"tabular": torch.tensor([True, False, True, True])}
    out = model(batch)
    assert all(torch.isfinite(t).all() for t in out.values())
    (out["sentiment"].sum() + out["humour.level"].sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # A batch whose every item lacks a sequence (a step count of 0 everywhere).
    empty = ragged_batch({"minilm:seq": [0, 0], "efficientnet-lite0:seq@img": [0, 0]})
    assert all(torch.isfinite(t).all() for t in model.eval()(empty).values())


@pytest.mark.parametrize("fusion", ["concat", "gmu"])
def test_every_parameter_gets_a_gradient_with_three_sequences_and_a_vector(fusion):
    dims = {"a": 5, "b": 3, "c": 2}
    inputs = {**{n: InputSpec(n, d, "sequence") for n, d in dims.items()}, "v": InputSpec("v", 4)}
    model = build(inputs=inputs, fusion=fusion).train()
    batch = Batch(
        features={"a": torch.randn(4, 6, 5), "b": torch.randn(4, 3, 3), "c": torch.randn(4, 6, 2), "v": torch.randn(4, 4)},
        masks={"a": torch.arange(6)[None] < torch.tensor([[6], [2], [4], [1]]), "c": torch.arange(6)[None] < torch.tensor([[1], [6], [3], [5]])},
    )
    out = model(batch)
    (out["sentiment"].logsumexp(1).sum() + out["humour.level"].sum()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unused
    # Six ordered pairs, one stacked transformer each; three self-attention stacks of 2 x width.
    assert model.crossmodal.layers[0].in_proj.weight.shape == (6, 8, 24)
    assert model.self_attention.layers[0].in_proj.weight.shape == (3, 16, 48)


def test_one_sequence_input_attends_over_its_own_projection():
    model = build(inputs={"minilm:seq": InputSpec("minilm:seq", 5, "sequence"), "tabular": InputSpec("tabular", 4)}).train()
    assert model.crossmodal is None and model.self_attention.layers[0].in_proj.weight.shape == (1, 8, 24)
    batch = ragged_batch({"minilm:seq": [6, 1, 3]})
    model(batch)["sentiment"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "humour" not in n and "heads.layers.1" not in n)


def test_the_reference_architecture_at_its_cmu_mosei_defaults():
    # bench_mult.py counts the reference's MULTModel (text 300-d, audio 74-d, vision 35-d,
    # one output) at 1,073,731 parameters; mult at its defaults with the reference's
    # residual width (hidden = 6 x 30) has the same shapes.
    inputs = {name: InputSpec(name, d, "sequence") for name, d in (("text", 300), ("audio", 74), ("vision", 35))}
    model = MODELS.get("mult")(inputs, {"y": 1}, hidden=180)
    assert sum(p.numel() for p in model.parameters()) == 1_073_731


def test_mult_needs_a_sequence_input_and_checks_its_parameters():
    with pytest.raises(UsageError, match=r"model 'mult' needs at least one sequence input.*add a stored sequence with :seq"):
        MODELS.get("mult")({"a": InputSpec("a", 3), "b": InputSpec("b", 2)}, HEADS)
    bad = {
        "width=30 num_heads=4": ({"width": 30, "num_heads": 4}, "is not a multiple of num_heads=4"),
        "kernel_size=2": ({"kernel_size": 2}, "needs an odd size"),
        "pool=max": ({"pool": "max"}, "choose one of: last, mean"),
        "fusion=sum": ({"fusion": "sum"}, "choose one of: concat, gmu"),
        "layers=0": ({"layers": 0}, "needs a positive layers"),
        "attn_dropout=1": ({"attn_dropout": 1.0}, "not a dropout probability"),
    }
    for params, message in bad.values():
        with pytest.raises(UsageError, match=message):
            MODELS.get("mult")(specs(), HEADS, **params)


def test_only_gmu_fusion_explains():
    assert MODELS.capabilities("mult") == {"explains": True, "sequences": True, "missing": True}
    assert not supports_explain(build(fusion="concat"))
    model = build(fusion="gmu").eval()
    weights = model.explain(ragged_batch(LENGTHS))
    assert list(weights) == [*DIMS, "tabular"]
    torch.testing.assert_close(sum(weights.values()), torch.ones(5))


def test_attention_written_out_for_dropout_is_scaled_dot_product_attention():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 2, 5 if i == 0 else 7, 3, generator=generator) for i in range(3))
    mask = (torch.arange(7)[None, :] < torch.tensor([7, 1, 4, 6])[:, None]).view(4, 1, 1, 7)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # p = 1e-9 takes the written-out path (training, p > 0) and drops nothing (p rounds to 0).
    torch.testing.assert_close(attention(q, k, v, mask, 1e-9, True), expected)
    assert torch.equal(attention(q, k, v, mask, 0.5, False), expected)


def test_dropout_drops_its_share_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(400_000)
    for p in (0.1, 0.25):
        out = dropout(x, p, True)
        assert abs((out == 0).float().mean().item() - p) < 0.005
        assert abs(out.mean().item() - 1.0) < 0.01
        assert out.unique().tolist() == [0.0, pytest.approx(1 / (1 - p), rel=1e-4)]
    assert dropout(x, 0.25, False) is x and dropout(x, 0.0, True) is x
    # The default generator decides, so a seed repeats a step.
    torch.manual_seed(5)
    first = dropout(x, 0.5, True)
    torch.manual_seed(5)
    assert torch.equal(first, dropout(x, 0.5, True))


def _two_sequence_dataset(tmp_path):
    """sequence_data's dataset (label in the text's sequence; the first 10 texts blank)
    plus a stored image sequence of 1-4 noise steps per item."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys
    from mmtk.store import FeatureStore

    store = FeatureStore(tmp_path / "store")
    dataset = sequence_dataset(tmp_path, store, n=80, blank_texts=10)
    grid = resolve_backbone("efficientnet-lite0", "image", sequence=True)
    store.register(grid.fingerprint, {"backbone": grid.spec, "modality": "image", "kind": "sequence", "dim": 3})
    rng = np.random.default_rng(1)
    steps = [rng.normal(size=(int(rng.integers(1, 5)), 3)).astype(np.float32) for _ in dataset.records]
    store.put(grid.fingerprint, content_keys(dataset.values("img"), "image"), steps)
    return store


def test_mmtk_train_model_mult_end_to_end(tmp_path):
    _two_sequence_dataset(tmp_path)
    common = ["--store", str(tmp_path / "store"), "--device", "cpu", "--quiet"]
    data = str(tmp_path / "data.jsonl")
    args = [f"--model-arg={key}={value}" for key, value in {**SMALL, "fusion": "gmu", "pool": "mean"}.items()]
    trained = subprocess.run(
        [sys.executable, "-m", "mmtk", "train", data, "--features", "minilm:seq,efficientnet-lite0:seq,efficientnet-lite0",
         "--model", "mult", *args, "--task", "label", "--missing-modality", "mask", "--epochs", "40", "--lr", "5e-3",
         "--out", str(tmp_path / "run"), *common],
        capture_output=True, text=True, timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["name"] == "mult" and config["model"]["params"]["fusion"] == "gmu"
    assert [spec["kind"] for spec in config["model"]["inputs"]] == ["sequence", "sequence", "vector"]
    predicted = subprocess.run([sys.executable, "-m", "mmtk", "predict", str(tmp_path / "run"), data, "--explain", *common],
                               capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(records) == 80
    # The blank texts have no text sequence: gate 0, the other inputs share the rest.
    assert all(r["explain"]["minilm:seq"] == 0.0 for r in records[:10])
    assert all(r["explain"]["minilm:seq"] > 0.0 for r in records[10:])
    assert all(sum(r["explain"].values()) == pytest.approx(1.0, abs=1e-5) for r in records)
    labels = [json.loads(line)["label"] for line in (tmp_path / "data.jsonl").read_text().splitlines()]
    accuracy = np.mean([r["label"] == y for r, y in zip(records[10:], labels[10:])])
    assert accuracy > 0.8, accuracy
    vectors_only = subprocess.run(
        [sys.executable, "-m", "mmtk", "train", data, "--features", "efficientnet-lite0", "--model", "mult", "--task", "label",
         "--out", str(tmp_path / "vectors"), *common], capture_output=True, text=True, timeout=300,
    )
    assert vectors_only.returncode == 2 and "needs at least one sequence input" in vectors_only.stderr
    assert len(vectors_only.stderr.strip().splitlines()) == 1


def test_cross_attn_dropout_applies_only_into_the_named_targets():
    """The reference's defaults: attention dropout into text only (attn_dropout_a and
    attn_dropout_v are 0). With every other dropout off, in training mode the crossmodal
    transformer into the target without attention dropout is deterministic, the one
    into the target with it is not."""
    inputs = specs(vector=False)
    text, image = list(DIMS)
    no_other_dropout = {"embed_dropout": 0.0, "relu_dropout": 0.0, "res_dropout": 0.0}
    model = build(inputs=inputs, attn_dropout=0.5, cross_attn_dropout=f"{image}=0", **no_other_dropout).train()
    assert model.crossmodal.layers[0].attn_dropout == [0.5, 0.0]  # pairs (text <- image), (image <- text)
    assert model.self_attention.layers[0].attn_dropout == [0.5, 0.5]
    batch = ragged_batch({text: [6, 1, 3, 6, 2], image: [2, 4, 4, 1, 3]})
    projected = [p(batch.features[n].transpose(1, 2)).transpose(1, 2) for n, p in zip(model.sequences, model.projections)]
    masks = [batch.masks[n] for n in model.sequences]
    present = [m.any(dim=1) for m in masks]
    with torch.no_grad():
        first, second = (model._crossmodal(projected, masks, present) for _ in range(2))
    assert not torch.equal(first[0], second[0])  # into text: dropped at random
    assert torch.equal(first[1], second[1])  # into the image sequence: no attention dropout
    # Per-group dropout changes nothing at evaluation.
    uniform = build(inputs=inputs, attn_dropout=0.5, **no_other_dropout).eval()
    uniform.load_state_dict(model.state_dict())
    torch.testing.assert_close(logits(model.eval(), batch), logits(uniform, batch))


def test_cross_attn_dropout_is_checked():
    text, image = list(DIMS)
    for spec, message in (("audio=0", "does not name a sequence input"), (f"{image}=x", "is not a number"),
                          (f"{image}=1.5", "not a dropout probability"), ("tabular=0", "does not name a sequence input")):
        with pytest.raises(UsageError, match=message):
            MODELS.get("mult")(specs(), HEADS, **SMALL, cross_attn_dropout=spec)
