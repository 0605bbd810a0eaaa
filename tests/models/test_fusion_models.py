"""The fusion models fuse: a label that needs both modalities is learned from both and
not from either alone, and GMU gates are proper, input-dependent modality weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtk.errors import UsageError
from mmtk.models import MODELS, explainable_models, supports_explain


def xor_data(n: int, seed: int, informative_b: bool = True):
    """Modality a carries bit p in dimension 0, modality b bit q in dimension 3, under
    noise; the label is p XOR q, so each modality alone is at chance."""
    rng = np.random.default_rng(seed)
    p, q = rng.integers(0, 2, n), rng.integers(0, 2, n)
    xa = rng.normal(size=(n, 16)).astype(np.float32)
    xb = rng.normal(size=(n, 8)).astype(np.float32)
    xa[:, 0] = (2 * p - 1) + 0.3 * rng.normal(size=n)
    if informative_b:
        xb[:, 3] = (2 * q - 1) + 0.3 * rng.normal(size=n)
    label = p ^ q if informative_b else p
    return {"a": torch.tensor(xa), "b": torch.tensor(xb)}, torch.tensor(label)


def fit(model, features, labels, epochs: int = 60):
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    n = len(labels)
    for _ in range(epochs):
        order = torch.randperm(n)
        for start in range(0, n, 64):
            idx = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model({k: v[idx] for k, v in features.items()})["t"], labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model, features, labels) -> float:
    with torch.no_grad():
        return (model(features)["t"].argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize("name", ["concat", "gmu"])
def test_fusion_learns_a_label_that_needs_both_modalities(name):
    train_x, train_y = xor_data(800, seed=0)
    test_x, test_y = xor_data(400, seed=1)
    torch.manual_seed(0)
    both = fit(MODELS.get(name)({"a": 16, "b": 8}, {"t": 2}, hidden=32, dropout=0.1), train_x, train_y)
    assert accuracy(both, test_x, test_y) > 0.9
    for only in ("a", "b"):
        torch.manual_seed(0)
        dims = {only: train_x[only].shape[1]}
        single = fit(MODELS.get(name)(dims, {"t": 2}, hidden=32, dropout=0.1), {only: train_x[only]}, train_y, epochs=30)
        assert accuracy(single, {only: test_x[only]}, test_y) < 0.6


def test_gmu_gates_sum_to_one_per_item_and_favour_the_informative_modality():
    features, labels = xor_data(800, seed=0, informative_b=False)
    torch.manual_seed(0)
    model = fit(MODELS.get("gmu")({"a": 16, "b": 8}, {"t": 2}, hidden=32, dropout=0.1), features, labels, epochs=30)
    gates = model.explain(features)
    assert set(gates) == {"a", "b"}
    assert gates["a"].shape == (800,)
    torch.testing.assert_close(gates["a"] + gates["b"], torch.ones(800))
    assert gates["a"].mean() > gates["b"].mean() + 0.1


def test_gmu_with_two_modalities_is_the_papers_sigmoid_gate():
    torch.manual_seed(0)
    model = MODELS.get("gmu")({"a": 4, "b": 3}, {"t": 1}, hidden=5, dropout=0.0).eval()
    features = {"a": torch.randn(6, 4), "b": torch.randn(6, 3)}
    _, gates = model.fuse(features)
    linear = [proj(x) for proj, x in zip(model.projections, model.norms(features))]
    scores = model.gate(torch.cat(linear, dim=-1)).view(6, 2, 5)
    torch.testing.assert_close(gates[:, 0], torch.sigmoid(scores[:, 0] - scores[:, 1]))


def test_any_number_of_modalities_and_several_heads():
    dims = {"clip:ViT-B-32@laion2b_s34b_b79k": 8, "minilm@title": 5, "x.y": 3}
    heads = {"sentiment": 3, "humour.level": 1}
    features = {name: torch.randn(4, d) for name, d in dims.items()}
    for name in ("concat", "gmu"):
        out = MODELS.get(name)(dims, heads, hidden=7)(features)
        assert {k: tuple(v.shape) for k, v in out.items()} == {"sentiment": (4, 3), "humour.level": (4, 1)}
    gates = MODELS.get("gmu")(dims, heads, hidden=7).explain(features)
    assert list(gates) == list(dims)


def test_explain_support_is_known_without_building():
    # Read from the registry entries: every registered model that declares explains.
    assert "gmu" in explainable_models() and "concat" not in explainable_models()
    assert explainable_models() == [n for n in MODELS.names() if MODELS.capabilities(n).get("explains")]
    assert supports_explain(MODELS.get("gmu")({"a": 2}, {"t": 1}))
    assert not supports_explain(MODELS.get("concat")({"a": 2}, {"t": 1}))


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(UsageError, match="unknown model 'nope'; choose one of: .*concat, .*gmu, "):
        MODELS.get("nope")


def test_missing_input_names_the_expected_features():
    model = MODELS.get("concat")({"a": 2, "b": 2}, {"t": 1})
    with pytest.raises(KeyError, match="lacks the features \\['b'\\]"):
        model({"a": torch.randn(1, 2)})


def test_attention_pool_scores_only_sequences_and_loads_runs_that_scored_vectors():
    from mmtk.training import InputSpec

    specs = {"minilm:seq": InputSpec("minilm:seq", 4, "sequence", 5), "tabular": InputSpec("tabular", 3)}
    model = MODELS.get("attention-pool")(specs, {"t": 2}, hidden=6)
    state = model.state_dict()
    assert "scores.0.weight" in state and not any(key.startswith("scores.1.") for key in state)
    # Runs saved before held a score layer for the vector input too, which never
    # influenced an output; they still load (strictly: nothing else is ignored).
    model.load_state_dict({**state, "scores.1.weight": torch.randn(1, 6), "scores.1.bias": torch.randn(1)})
    with pytest.raises(RuntimeError, match="scores.0.extra"):
        model.load_state_dict({**state, "scores.0.extra": torch.randn(1)})
