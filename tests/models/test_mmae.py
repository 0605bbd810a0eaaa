"""``mmae``: the reconstruction losses against their written-out formula (weights, absent
items left out), attention weights as explanations, absence, parameters, and training
end to end with the ``aux.recon.*`` terms in ``train_log.jsonl``."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mmtk.errors import UsageError
from mmtk.models import MODELS
from mmtk.store import FeatureStore
from mmtk.train import train
from mmtk.training import AuxiliaryObjective, Batch, SupervisedObjective, TaskLoss
from synthetic_features import FEATURES, xor_split

DIMS = {"clip": 6, "minilm@title": 5, "tabular": 3}
HEADS = {"sentiment": 3, "humour": 1}
B = 6


def build(seed=0, **params):
    torch.manual_seed(seed)
    return MODELS.get("mmae")(DIMS, HEADS, **{"hidden": 8, "code": 4, **params})


def batch(seed=0, present=None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    features = {name: torch.randn(B, d, generator=g) for name, d in DIMS.items()}
    targets = {"sentiment": torch.tensor([0, 1, 2, 1, 0, 2]), "humour": torch.tensor([1.0, 0, 1, 1, 0, 0])}
    return Batch(features=features, present=present or {}, targets=targets)


def test_shapes_explanations_and_a_gradient_for_every_parameter():
    model = build().train()
    out, terms = model(batch(), auxiliary=True)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"sentiment": (B, 3), "humour": (B, 1)}
    assert set(terms) == {"recon.clip", "recon.minilm@title", "recon.tabular"}
    assert model.represent(batch()).shape == (B, model.width) == (B, 8)
    (sum(o.sum() for o in out.values()) + sum(terms.values())).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    weights = model.explain(batch())
    assert list(weights) == list(DIMS)
    torch.testing.assert_close(sum(weights.values()), torch.ones(B))


def test_reconstruction_losses_are_the_written_out_formula():
    absent = torch.tensor([False, True, False, False, True, False])
    b = batch(present={"minilm@title": ~absent})
    model = build(recon_weights="0.5,2,1").eval()
    _, terms = model(b, auxiliary=True)
    present = {name: ~absent if name == "minilm@title" else torch.ones(B, dtype=torch.bool) for name in DIMS}
    normed = {name: F.layer_norm(x.masked_fill(~present[name][:, None], 0.0), (x.shape[1],)) for name, x in b.features.items()}
    # The code: each input's encoder output, zero where the item lacks the input.
    code = torch.cat([model.encoders[i](normed[n]) * present[n][:, None] for i, n in enumerate(DIMS)], dim=1)
    for i, (name, weight) in enumerate(zip(DIMS, (0.5, 2.0, 1.0))):
        error = (model.decoders[i](code) - normed[name]) ** 2
        items = present[name]
        expected = weight * error[items].sum() / (items.sum() * DIMS[name])  # mean over present items' features
        torch.testing.assert_close(terms[f"recon.{name}"], expected)
    # An absent item's values reach neither its reconstruction loss nor the outputs.
    noisy = batch(present={"minilm@title": ~absent})
    noisy.features["minilm@title"][absent] = float("nan")
    again_logits, again = model(noisy, auxiliary=True)
    for name in terms:
        torch.testing.assert_close(again[name], terms[name])
    for task, value in model(b).items():
        torch.testing.assert_close(again_logits[task], value)


def test_absent_inputs_get_attention_zero_and_an_item_with_none_stays_finite():
    absent = torch.tensor([True, False, False, False, False, True])
    none = torch.tensor([False, False, False, False, False, True])
    b = batch(present={"clip": ~absent, "minilm@title": ~none, "tabular": ~none})
    model = build().eval()
    weights = model.explain(b)
    assert bool((weights["clip"][absent] == 0).all()) and bool((weights["clip"][~absent] > 0).all())
    torch.testing.assert_close(sum(w[~none] for w in weights.values()), torch.ones(int((~none).sum())))
    assert all(float(w[5]) == 0.0 for w in weights.values())
    out, terms = model(b, auxiliary=True)
    assert all(bool(torch.isfinite(v).all()) for v in [*out.values(), *terms.values()])


def test_a_zero_weight_drops_that_term_and_its_decoder():
    model = build(recon_weights="1,0,1")
    _, terms = model(batch(), auxiliary=True)
    assert set(terms) == {"recon.clip", "recon.tabular"}
    assert not any(name.startswith("decoders.1.") for name, _ in model.named_parameters())
    supervised = SupervisedObjective({"sentiment": TaskLoss("multiclass"), "humour": TaskLoss("binary")})
    off = AuxiliaryObjective(supervised)(build(recon_weights="0").train(), batch())
    assert set(off) == {"task.sentiment", "task.humour", "total"}
    torch.manual_seed(5)
    plain = supervised(build(recon_weights="0").train(), batch())
    torch.manual_seed(5)
    again = AuxiliaryObjective(supervised)(build(recon_weights="0").train(), batch())
    assert torch.equal(again["total"], plain["total"])


@pytest.mark.parametrize("value, match", [
    ("1,2", "wants one weight >= 0, or one per input \\(3\\)"),
    ("-1", "wants one weight"),
    ("a,b,c", "wants one weight"),
    ("nan", "wants one weight"),
])
def test_bad_reconstruction_weights_are_usage_errors(value, match):
    with pytest.raises(UsageError, match=match):
        build(recon_weights=value)


def test_bad_sizes_are_usage_errors():
    with pytest.raises(UsageError, match="code >= 1"):
        build(code=0)
    with pytest.raises(UsageError, match="dropout"):
        build(dropout=1.0)


def test_trains_with_reconstruction_terms_in_the_log_and_explains(tmp_path):
    from mmtk.predict import predict

    store = FeatureStore(tmp_path / "store")
    train_ds, test_ds = xor_split(tmp_path, store, n_train=320, n_test=120)
    report = train(train_ds, features=FEATURES, model="mmae", tasks=["label"], out=tmp_path / "run", store=store,
                   val_dataset=test_ds, epochs=40, lr=5e-3, patience=40, batch_size=32, device="cpu",
                   model_args={"recon_weights": "0.5,1"})
    assert report.val_metrics["metrics"]["accuracy"] > 0.85
    log = [json.loads(line) for line in (report.run / "train_log.jsonl").read_text().splitlines()]
    assert set(log[0]["train_terms"]) == {"task.label", "aux.recon.efficientnet-lite0", "aux.recon.minilm", "total"}
    # The reconstructions improve while the model trains.
    assert log[-1]["train_terms"]["aux.recon.minilm"] < 0.7 * log[0]["train_terms"]["aux.recon.minilm"]
    records = predict(report.run, test_ds, store=store, device="cpu", explain=True)
    assert all(sum(r["explain"].values()) == pytest.approx(1.0, abs=1e-5) for r in records)
