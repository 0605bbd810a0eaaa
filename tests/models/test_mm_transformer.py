"""``mm-transformer``: both encoders with both classifiers (shapes, gradients, padding and
absence), the auxiliary losses against their written-out formulas, their weights, and
``mmtk train --model mm-transformer`` end to end."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.errors import UsageError
from mmtk.models import MODELS, check_model_params
from mmtk.models.mm_transformer import class_labels
from mmtk.training import AuxiliaryObjective, Batch, InputSpec, SupervisedObjective, TaskLoss

MODES = list(itertools.product(("shared", "multi"), ("cls", "class-query")))
INPUTS = {"clip:patches": InputSpec("clip:patches", 6, "sequence", 5), "minilm:seq": InputSpec("minilm:seq", 5, "sequence", 7),
          "tabular": InputSpec("tabular", 3)}
HEADS = {"sentiment": 3, "humour": 1, "topics": 2, "score": 1}
KINDS = {"sentiment": "multiclass", "humour": "binary", "topics": "multilabel", "score": "regression"}
B = 6


def build(encoder="shared", classifier="cls", seed=0, **params):
    torch.manual_seed(seed)
    params = {"hidden": 16, "num_heads": 2, "feedforward": 32, **params}
    return MODELS.get("mm-transformer")(INPUTS, HEADS, encoder=encoder, classifier=classifier, **params)


def batch(seed=0, **extra) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = {"clip:patches": [5, 1, 3, 2, 5, 4], "minilm:seq": [2, 7, 1, 4, 6, 3]}
    features, masks = {}, {}
    for name, spec in INPUTS.items():
        if spec.is_sequence:
            mask = torch.arange(spec.max_len)[None] < torch.tensor(lengths[name])[:, None]
            features[name] = torch.randn(B, spec.max_len, spec.dim, generator=g) * mask[..., None]
            masks[name] = mask
        else:
            features[name] = torch.randn(B, spec.dim, generator=g)
    targets = {
        "sentiment": torch.tensor([0, 1, 2, 1, 0, 2]),
        "humour": torch.tensor([1.0, 0, 1, 1, 0, 0]),
        "topics": torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]]),
        "score": torch.randn(B, generator=g),
    }
    return Batch(features=features, masks=masks, targets=targets, **extra)


def logits(model, b):
    with torch.no_grad():
        return model.eval()(b)


@pytest.mark.parametrize("encoder, classifier", MODES)
def test_shapes_width_and_a_gradient_for_every_parameter(encoder, classifier):
    model = build(encoder, classifier).train()
    out, terms = model(batch(), auxiliary=True)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"sentiment": (B, 3), "humour": (B, 1), "topics": (B, 2), "score": (B, 1)}
    assert set(terms) == {"align", "contrastive"}
    width = 16 if classifier == "cls" else 16 * (3 + 1 + 2 + 1)  # one query per class, one per binary/regression task
    assert model.width == width and model.represent(batch()).shape == (B, width)
    (sum(o.sum() for o in out.values()) + sum(terms.values())).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not unused


@pytest.mark.parametrize("encoder, classifier", MODES)
def test_padding_and_absent_inputs_do_not_change_the_outputs_but_valid_steps_do(encoder, classifier):
    model = build(encoder, classifier)
    absent = torch.tensor([False, True, False, False, True, False])
    base = batch(present={"minilm:seq": ~absent, "tabular": ~absent.flip(0)})
    base.masks["minilm:seq"] = base.masks["minilm:seq"] & ~absent[:, None]
    reference = logits(model, base)
    noisy = Batch({k: v.clone() for k, v in base.features.items()}, base.masks, base.present)
    noisy.features["clip:patches"][~base.masks["clip:patches"]] = 1e4
    noisy.features["minilm:seq"][absent] = float("nan")  # an absent input's values may be anything
    noisy.features["tabular"][absent.flip(0)] = -1e4
    again = logits(model, noisy)
    for task in reference:
        torch.testing.assert_close(again[task], reference[task], atol=1e-6, rtol=1e-6)
    # Longer padding (a batch whose longest item is longer) changes nothing either.
    longer = Batch(dict(base.features), dict(base.masks), base.present)
    longer.features["clip:patches"] = F.pad(base.features["clip:patches"], (0, 0, 0, 4), value=7.0)
    longer.masks["clip:patches"] = F.pad(base.masks["clip:patches"], (0, 4), value=False)
    again = logits(model, longer)
    for task in reference:
        torch.testing.assert_close(again[task], reference[task], atol=1e-6, rtol=1e-6)
    # The checks above can fail: a valid step's value does reach the output.
    changed = Batch({k: v.clone() for k, v in base.features.items()}, base.masks, base.present)
    changed.features["clip:patches"][0, 0, 0] += 3.0  # one feature (a LayerNorm undoes a shift of all)
    assert not torch.allclose(logits(model, changed)["sentiment"][0], reference["sentiment"][0])


@pytest.mark.parametrize("encoder, classifier", MODES)
def test_an_item_with_no_input_at_all_gets_finite_outputs(encoder, classifier):
    model = build(encoder, classifier)
    none = torch.tensor([True, False, False, False, False, False])
    b = batch(present={name: ~none for name in INPUTS})
    for name in ("clip:patches", "minilm:seq"):
        b.masks[name] = b.masks[name] & ~none[:, None]
    out, terms = model.eval()(b, auxiliary=True)
    assert all(bool(torch.isfinite(v).all()) for v in [*out.values(), *terms.values()])


def test_alignment_loss_is_the_written_out_formula():
    model = build(contrastive_weight=0.0, align_weight=0.5)
    absent = torch.tensor([False, False, True, False, False, False])
    b = batch(present={"tabular": ~absent})
    _, terms = model.eval()(b, auxiliary=True)
    per_input = []
    for i, (name, spec) in enumerate(INPUTS.items()):
        x = b.features[name]
        projected = model.projections[i](F.layer_norm(x, (spec.dim,)))
        if spec.is_sequence:  # pairs of distinct valid tokens within each item
            groups = [(x[item, : int(b.masks[name][item].sum())], projected[item, : int(b.masks[name][item].sum())]) for item in range(B)]
        else:  # a vector: pairs of distinct present items of the batch
            groups = [(x[~absent], projected[~absent])]
        errors = []
        for raw, proj in groups:
            for j, k in itertools.permutations(range(len(raw)), 2):
                errors.append((F.cosine_similarity(raw[j], raw[k], dim=0) - F.cosine_similarity(proj[j], proj[k], dim=0)) ** 2)
        per_input.append(torch.stack(errors).mean())
    torch.testing.assert_close(terms["align"], 0.5 * torch.stack(per_input).mean())


@pytest.mark.parametrize("classifier", ["cls", "class-query"])
def test_contrastive_loss_is_the_written_out_formula(classifier):
    model = build(classifier=classifier, align_weight=0.0, contrastive_weight=2.0)
    labelled = torch.tensor([True, True, False, True, True, True])  # item 2 has no sentiment label
    b = batch(target_masks={"sentiment": labelled})
    model.eval()
    _, terms = model(b, auxiliary=True)
    rep = model.represent(b)
    embeddings = rep if classifier == "cls" else rep.view(B, 7, 16)

    def class_loss(e, y, items):
        pairs = [(i, j) for i, j in itertools.combinations(items, 2)]
        values = [(1 - (1.0 if y[i] == y[j] else -1.0) * F.cosine_similarity(e[i], e[j], dim=0)) / 2 for i, j in pairs]
        return torch.stack(values).mean()

    everyone = list(range(B))
    classes = []  # (query index, labels, items): sentiment one-vs-rest, humour, each topic; score has none
    classes += [(c, (b.targets["sentiment"] == c).tolist(), [i for i in everyone if labelled[i]]) for c in range(3)]
    classes += [(3, b.targets["humour"].tolist(), everyone)]
    classes += [(4 + c, b.targets["topics"][:, c].tolist(), everyone) for c in range(2)]
    losses = [class_loss(embeddings if classifier == "cls" else embeddings[:, q], y, items) for q, y, items in classes]
    torch.testing.assert_close(terms["contrastive"], 2.0 * torch.stack(losses).mean())
    # An unlabelled item's label does not count.
    relabelled = batch(target_masks={"sentiment": labelled})
    relabelled.targets["sentiment"][2] = 0
    torch.testing.assert_close(model(relabelled, auxiliary=True)[1]["contrastive"], terms["contrastive"])


def test_class_labels_per_task_kind():
    assert class_labels(torch.tensor([2, 0]), 3).tolist() == [[False, False, True], [True, False, False]]
    assert class_labels(torch.tensor([1.0, 0.0]), 1).tolist() == [[True], [False]]
    assert class_labels(torch.tensor([[1.0, 0.0]]), 2).tolist() == [[True, False]]
    assert class_labels(torch.tensor([0.3, -1.2]), 1) is None  # standardised regression targets


def objective():
    return SupervisedObjective({task: TaskLoss(kind) for task, kind in KINDS.items()})


def test_auxiliary_terms_add_to_the_total_and_a_zero_weight_turns_each_off():
    b = batch()
    on = AuxiliaryObjective(objective())(build().train(), b)
    assert set(on) == {"task.sentiment", "task.humour", "task.topics", "task.score", "aux.align", "aux.contrastive", "total"}
    assert on["aux.align"] > 0 and on["aux.contrastive"] > 0
    tasks = sum(on[f"task.{t}"] for t in HEADS)
    torch.testing.assert_close(on["total"], tasks + on["aux.align"] + on["aux.contrastive"])
    only_align = AuxiliaryObjective(objective())(build(contrastive_weight=0.0).train(), b)
    assert "aux.contrastive" not in only_align and "aux.align" in only_align
    torch.manual_seed(1)
    off = AuxiliaryObjective(objective())(build(align_weight=0.0, contrastive_weight=0.0).train(), b)
    torch.manual_seed(1)
    plain = objective()(build(align_weight=0.0, contrastive_weight=0.0).train(), b)
    assert off.keys() == plain.keys() and torch.equal(off["total"], plain["total"])


def test_multitask_heads_replace_the_cls_classifier_and_keep_the_auxiliary_losses():
    if "multitask-heads" not in MODELS:
        pytest.skip("multitask-heads is not registered")
    heads = {"sentiment": 3, "humour": 1, "humour_level": 4}
    torch.manual_seed(0)
    model = MODELS.get("multitask-heads")(INPUTS, heads, trunk="mm-transformer", trunk_args="hidden=16,num_heads=2",
                                          stages="humour:humour_level")
    out, terms = model.eval()(batch(), auxiliary=True)
    assert {task: tuple(v.shape) for task, v in out.items() if task in heads} == {"sentiment": (B, 3), "humour": (B, 1), "humour_level": (B, 4)}
    assert set(terms) == {"align", "contrastive"}
    # The class-query classifier is the model itself: it cannot be replaced.
    with pytest.raises(UsageError, match="classifies with its own heads"):
        MODELS.get("multitask-heads")(INPUTS, heads, trunk="mm-transformer", trunk_args="hidden=16,num_heads=2,classifier=class-query",
                                      stages="humour:humour_level")


def test_bad_parameters_are_usage_errors_naming_the_fix():
    with pytest.raises(UsageError, match="encoder=both.*choose one of: shared, multi"):
        build(encoder="both")
    with pytest.raises(UsageError, match="classifier=query.*choose one of: cls, class-query"):
        build(classifier="query")
    with pytest.raises(UsageError, match="hidden=10 is not divisible by num_heads=4"):
        build(hidden=10, num_heads=4)
    with pytest.raises(UsageError, match="layers >= 1"):
        build(layers=0)
    assert check_model_params("mm-transformer", {"align_weight": "0", "encoder": "multi"}) == {"align_weight": 0.0, "encoder": "multi"}


def test_mmtk_train_with_mm_transformer_end_to_end(tmp_path):
    from mmtk.store import FeatureStore
    from training.sequence_data import SEQ_FEATURES, sequence_dataset

    store = tmp_path / "store"  # the suite's MMTK_STORE
    sequence_dataset(tmp_path, FeatureStore(store), n=160)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", str(tmp_path / "data.jsonl"), "--features", ",".join(SEQ_FEATURES), "--model", "mm-transformer",
        "--task", "label", "--out", str(run), "--epochs", "25", "--lr", "3e-3", "--batch-size", "32", "--device", "cpu",
        "--model-arg", "encoder=multi", "--model-arg", "classifier=class-query", "--model-arg", "hidden=32",
        "--model-arg", "contrastive_weight=0.2", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["params"]["encoder"] == "multi" and config["model"]["params"]["contrastive_weight"] == 0.2
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    terms = log[-1]["train_terms"]
    assert {"aux.align", "aux.contrastive", "task.label", "total"} == set(terms)
    assert terms["total"] == pytest.approx(terms["task.label"] + terms["aux.align"] + terms["aux.contrastive"], rel=1e-5)
    assert set(log[-1]["val_terms"]) == {"task.label", "total"}  # validation compares task losses only
    evaluated = CliRunner().invoke(app, ["evaluate", str(run), str(tmp_path / "data.jsonl"), "--json", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["metrics"]["accuracy"] > 0.8
