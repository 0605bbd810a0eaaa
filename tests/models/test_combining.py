"""The combining modules against their written formulas (mmtk/models/combining.py), their
parameters' checks, and gating and weighted-sum from the command line with --explain.
Gradients, padding, absence, save/load and training are the zoo contract's
(tests/models/test_zoo_contract.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmtk.errors import UsageError
from mmtk.models import MODELS
from mmtk.training import Batch
from synthetic_features import FEATURES, xor_split

DIMS = {"a": 4, "b": 3, "c": 2}


def features(n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: 3 * torch.randn(n, d, generator=generator) for name, d in DIMS.items()}


def normed(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: F.layer_norm(v, v.shape[-1:]) for name, v in x.items()}


def build(name: str, **params):
    torch.manual_seed(0)
    return MODELS.get(name)(DIMS, {"t": 2}, dropout=0.0, **params).eval()


def hand_gating(model, x: dict[str, torch.Tensor], primary: str, beta: float, absent_primary: bool = False):
    """x + alpha * H, H = sum_i ReLU(G_i [x ; x_i]) * (W_i x_i) + b, alpha = min(beta |x| / |H|, 1)."""
    n = normed(x)
    z = torch.zeros_like(n[primary]) if absent_primary else n[primary]
    others = [name for name in DIMS if name != primary]
    shift = model.shift_bias.detach().clone()
    for name, gate, w in zip(others, model.gates, model.shifts):
        shift = shift + F.relu(gate(torch.cat([z, n[name]], dim=-1))) * w(n[name])
    alpha = torch.ones(len(z)) if absent_primary else (beta * z.norm(dim=-1) / shift.norm(dim=-1)).clamp(max=1)
    return z + alpha[:, None] * shift, shift


@pytest.mark.parametrize("beta", [0.05, 50.0])
def test_gating_shifts_the_primary_by_the_clamped_gated_sum(beta):
    model = build("gating", primary="b", beta=beta)
    x = features()
    with torch.no_grad():
        fused, terms = model.fuse(x)
        expected, shift = hand_gating(model, x, "b", beta)
    torch.testing.assert_close(fused, expected)
    primary = normed(x)["b"]
    moved = (fused - primary).norm(dim=-1)
    # The primary moves by the whole gated sum, or by beta of its own norm where that is less.
    limit = beta * primary.norm(dim=-1)
    torch.testing.assert_close(moved, torch.minimum(limit, shift.norm(dim=-1)))
    clamped = (shift.norm(dim=-1) > limit).sum()
    assert clamped >= 4 if beta < 1 else clamped == 0
    # The terms are the primary, then each other modality's scaled shift, in input order.
    torch.testing.assert_close(terms[:, 1], primary)
    assert model.width == 256 and model.body[1].in_features == DIMS["b"]


def test_gating_without_its_primary_is_the_shift_alone():
    model = build("gating")
    x = features()
    absent = torch.tensor([True, False, True, False, True, False])
    batch = Batch(features=x, present={"a": ~absent})
    with torch.no_grad():
        fused, _ = model.fuse(batch)
        alone, _ = hand_gating(model, x, "a", 0.2, absent_primary=True)
        full, _ = hand_gating(model, x, "a", 0.2)
        shares = model.explain(batch)
    torch.testing.assert_close(fused[absent], alone[absent])
    torch.testing.assert_close(fused[~absent], full[~absent])
    assert (shares["a"][absent] == 0).all() and (shares["a"][~absent] > 0).all()
    torch.testing.assert_close(sum(shares.values()), torch.ones(6))


def test_gating_parameters_are_checked_naming_the_fix():
    with pytest.raises(UsageError, match=r"gating has no input 'nope'.*name one of the --features: a, b, c"):
        MODELS.get("gating")(DIMS, {"t": 2}, primary="nope")
    with pytest.raises(UsageError, match="beta > 0"):
        MODELS.get("gating")(DIMS, {"t": 2}, beta=0.0)
    one = MODELS.get("gating")({"a": 4}, {"t": 2})  # a primary alone: only the bias shifts it
    assert len(one.gates) == 0 and one(features())["t"].shape == (6, 2)


def test_attention_is_a_softmax_of_leaky_relu_scores_against_the_mean_projection():
    model = build("attention")
    x = features()
    with torch.no_grad():
        fused, weights = model.attend(x)
        projected = torch.stack([p(v) for p, v in zip(model.projections, normed(x).values())], dim=1)
        context = projected.mean(dim=1, keepdim=True).expand_as(projected)
        a = model.score.weight[0]
        scores = F.leaky_relu(torch.cat([context, projected], dim=-1) @ a, 0.2)
        expected = torch.softmax(scores, dim=1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(fused, (expected[..., None] * projected).sum(dim=1))
    explained = model.explain(x)
    torch.testing.assert_close(torch.stack([explained[n] for n in DIMS], dim=1), expected)


def test_attention_leaves_an_absent_modality_out_of_the_context_and_the_softmax():
    model = build("attention")
    x = features()
    batch = Batch(features=x, present={"c": torch.zeros(6, dtype=torch.bool)})
    with torch.no_grad():
        _, weights = model.attend(batch)
        projected = torch.stack([p(normed(x)[n]) for p, n in zip(model.projections[:2], ["a", "b"])], dim=1)
        context = projected.mean(dim=1, keepdim=True).expand_as(projected)
        scores = F.leaky_relu(torch.cat([context, projected], dim=-1) @ model.score.weight[0], 0.2)
    assert (weights[:, 2] == 0).all()
    torch.testing.assert_close(weights[:, :2], torch.softmax(scores, dim=1))
    # An item with no modality at all gets no weight anywhere, not NaN.
    nothing = {name: torch.zeros(6, dtype=torch.bool) for name in DIMS}
    _, weights = model.attend(Batch(features=x, present=nothing))
    assert (weights == 0).all()


def test_weighted_sum_weights_each_projection_per_feature():
    model = build("weighted-sum")
    with torch.no_grad():
        model.weights.copy_(torch.randn_like(model.weights))  # negative weights too
        x = features()
        terms = model.terms(x)
        expected = torch.stack([w * p(v) for w, p, v in zip(model.weights, model.projections, normed(x).values())], dim=1)
        shares = model.explain(x)
    torch.testing.assert_close(terms, expected)
    torch.testing.assert_close(model.represent(x), model.body(expected.sum(dim=1)))
    mass = expected.abs().sum(dim=2)
    torch.testing.assert_close(torch.stack([shares[n] for n in DIMS], dim=1), mass / mass.sum(dim=1, keepdim=True))


def test_concat_mlp_with_one_layer_is_concat():
    def size(model) -> int:
        return sum(p.numel() for p in model.parameters())

    assert size(build("concat-mlp", layers=1)) == size(build("concat"))
    deep = build("concat-mlp", layers=3)
    assert [m.in_features for m in deep.body if isinstance(m, torch.nn.Linear)] == [sum(DIMS.values()), 256, 256]
    with pytest.raises(UsageError, match="at least one hidden layer"):
        MODELS.get("concat-mlp")(DIMS, {"t": 2}, layers=0)


def test_mlp_concat_has_one_layer_per_modality_before_the_concatenation():
    model = build("mlp-concat", hidden=5)
    assert [encoder[0].in_features for encoder in model.encoders] == list(DIMS.values())
    assert model.body[1].in_features == 5 * len(DIMS)
    # An absent modality's layer output (ReLU(bias) where its input is zero) is zeroed.
    x = features()
    x["b"] = torch.zeros_like(x["b"])
    batch = Batch(features=x, present={"b": torch.zeros(6, dtype=torch.bool)})
    with torch.no_grad():
        parts = [enc(v) for enc, v in zip(model.encoders, normed(x).values())]
        parts[1] = torch.zeros_like(parts[1])
        torch.testing.assert_close(model.represent(batch), model.body(torch.cat(parts, dim=-1)))


def run_mmtk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, timeout=300)


def test_gating_from_the_command_line_with_a_primary_and_explanations(tmp_path):
    from mmtk.store import FeatureStore

    xor_split(tmp_path, FeatureStore(tmp_path / "store"), n_train=60, n_test=10)
    common = ["--store", str(tmp_path / "store"), "--device", "cpu", "--quiet"]
    train = ["train", str(tmp_path / "train.jsonl"), "--features", ",".join(FEATURES), "--task", "label", "--epochs", "2"]
    refused = run_mmtk(*train, "--model", "gating", "--model-arg", "primary=clip", "--out", str(tmp_path / "bad"), *common)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: --model-arg primary=clip: gating has no input 'clip'; name one of the --features: efficientnet-lite0, minilm"
    for name, args in (("gating", ["--model-arg", "primary=minilm", "--model-arg", "beta=0.5"]), ("weighted-sum", [])):
        out = tmp_path / name
        trained = run_mmtk(*train, "--model", name, *args, "--out", str(out), *common)
        assert trained.returncode == 0, trained.stderr
        config = json.loads((out / "config.json").read_text())
        predicted = run_mmtk("predict", str(out), str(tmp_path / "test.jsonl"), "--explain", *common)
        assert predicted.returncode == 0, predicted.stderr
        records = [json.loads(line) for line in predicted.stdout.splitlines()]
        assert len(records) == 10
        for record in records:
            assert set(record["explain"]) == set(FEATURES)
            assert sum(record["explain"].values()) == pytest.approx(1.0, abs=1e-4)
    assert config["model"]["params"] == {"hidden": 256, "dropout": 0.2}
    gating = json.loads((tmp_path / "gating" / "config.json").read_text())["model"]["params"]
    assert gating == {"primary": "minilm", "hidden": 256, "beta": 0.5, "dropout": 0.2}


def test_list_models_shows_the_combiners_parameters_readably():
    listed = run_mmtk("list", "models")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    gating = lines[[i for i, line in enumerate(lines) if line.strip().startswith("gating ")][0] + 1]
    assert 'primary="" hidden=256 beta=0.2 dropout=0.2; --explain, --missing-modality mask' in gating
    as_json = json.loads(run_mmtk("list", "models", "--json").stdout)
    assert as_json["model_params"]["gating"] == {"primary": "", "hidden": 256, "beta": 0.2, "dropout": 0.2}
    assert as_json["model_params"]["concat-mlp"] == {"hidden": 256, "layers": 2, "dropout": 0.2}
    for name in ("mlp-concat", "concat-mlp", "attention", "gating", "weighted-sum"):
        assert as_json["model_capabilities"][name]["missing"] is True
        assert as_json["model_capabilities"][name]["explains"] is (name in ("attention", "gating", "weighted-sum"))


@pytest.mark.parametrize("name", ["mlp-concat", "concat-mlp", "attention", "gating", "weighted-sum"])
def test_an_item_with_no_modality_gives_finite_outputs_and_gradients(name):
    # train refuses such items, but a distillation view can remove an item's only modality.
    torch.manual_seed(0)
    model = MODELS.get(name)(DIMS, {"t": 2})
    nothing = torch.tensor([False, True, True, True, True, True])
    batch = Batch(features=features(), present={n: nothing for n in DIMS})
    logits = model(batch)["t"]
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if hasattr(model, "explain"):
        assert all((weights[0] == 0).item() for weights in model.explain(batch).values())
