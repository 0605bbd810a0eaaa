"""multitask-heads: the four Memotion 2.0 designs over any trunk, their task weights, and
the presence task derived from an intensity task, down to `mmtk train`/evaluate/predict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.errors import UsageError
from mmtk.models import MODELS, model_capabilities, model_params
from mmtk.models.catalog.multitask import NAME, _can_be_trunk
from mmtk.models.derived import derived_presence
from mmtk.models.multitask import absent_mask, default_weights, presence_logit
from mmtk.training import Batch, InputSpec

INPUTS = {"image": InputSpec("image", 6), "text": InputSpec("text", 4)}
MEMOTION = {"sentiment": 3, "humour": 1, "humour_level": 4, "sarcasm": 1, "sarcasm_level": 4}
STAGES = "humour:humour_level,sarcasm:sarcasm_level"
MULTILABEL = {"sentiment": 3, "emotions": 2, "humour_level": 4, "sarcasm_level": 4}
MULTILABEL_STAGES = "emotions:humour_level,emotions:sarcasm_level"


def build(heads=MEMOTION, seed=0, **params):
    torch.manual_seed(seed)
    return MODELS.get(NAME)(INPUTS, heads, hidden=8, dropout=0.0, **params).eval()


def features(n=5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 6, generator=generator), "text": torch.randn(n, 4, generator=generator)}


@pytest.mark.parametrize(
    "design, heads, stages",
    [
        ("separate", MEMOTION, STAGES),
        ("shared", MEMOTION, STAGES),
        ("two-stage", MEMOTION, STAGES),
        ("two-stage-multilabel", MULTILABEL, MULTILABEL_STAGES),
        ("separate", {"label": 2}, ""),
    ],
)
def test_each_design_gives_one_logit_row_per_item_and_task(design, heads, stages):
    model = build(heads, design=design, stages=stages)
    logits = model(features())
    assert {task: tuple(out.shape) for task, out in logits.items()} == {task: (5, units) for task, units in heads.items()}
    assert model.represent(features()).shape == (5, model.width)


def _presence_layers(model, presence: str):
    return [p for name, p in model.named_parameters() if name.startswith(f"heads.outputs.{model.tasks.index(presence)}.")]


@pytest.mark.parametrize(
    "design, heads, stages, presence",
    [("two-stage", MEMOTION, STAGES, "humour"), ("two-stage-multilabel", MULTILABEL, MULTILABEL_STAGES, "emotions")],
)
def test_two_stage_designs_feed_presence_into_intensity(design, heads, stages, presence):
    model = build(heads, design=design, stages=stages)
    x = features()
    before = model(x)
    with torch.no_grad():
        for parameter in _presence_layers(model, presence):
            parameter.add_(torch.randn_like(parameter))
    after = model(x)
    assert not torch.allclose(before[presence], after[presence])
    assert not torch.allclose(before["humour_level"], after["humour_level"])
    torch.testing.assert_close(before["sentiment"], after["sentiment"])  # not fed: unchanged


def test_separate_heads_do_not_feed_presence_into_intensity():
    model = build(design="separate", stages=STAGES)
    x = features()
    before = model(x)
    with torch.no_grad():
        for parameter in _presence_layers(model, "humour"):
            parameter.add_(torch.randn_like(parameter))
    after = model(x)
    assert not torch.allclose(before["humour"], after["humour"])
    torch.testing.assert_close(before["humour_level"], after["humour_level"])


def test_the_fed_probability_is_the_presence_heads_sigmoid():
    model = build(design="two-stage", stages=STAGES)
    x = features()
    logits = model(x)
    shared = model.represent(x)
    layer = model.heads.outputs[model.tasks.index("humour_level")]
    expected = layer(torch.cat([shared, torch.sigmoid(logits["humour"])], dim=-1))
    torch.testing.assert_close(logits["humour_level"], expected)


def test_shared_design_has_one_hidden_layer_for_every_task():
    model = build(design="shared", stages=STAGES)
    assert isinstance(model.heads.shared[0], torch.nn.Linear) and model.heads.shared[0].out_features == 8
    assert all(isinstance(layer, torch.nn.Linear) and layer.in_features == 8 for layer in model.heads.outputs)


def test_presence_logit_is_the_log_odds_of_the_classes_above_not():
    # softmax of log(1..4) is 0.1, 0.2, 0.3, 0.4
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert presence_logit(logits, torch.tensor([True, False, False, False])).item() == pytest.approx(math.log(0.9 / 0.1))
    assert presence_logit(logits, torch.tensor([False, False, True, False])).item() == pytest.approx(math.log(0.7 / 0.3))
    assert torch.sigmoid(presence_logit(logits, torch.tensor([True, True, False, False]))).item() == pytest.approx(0.7)


def test_derived_presence_labels_count_any_class_but_not():
    classes = ["funny", "hilarious", "not_funny", "very_funny"]
    assert derived_presence(np.array([2, 0, 3, 1, 2]), classes, ["not_funny"]).tolist() == [0, 1, 1, 1, 0]
    assert derived_presence(np.array([0, 1, 2, 3]), [0, 1, 2, 3], [0]).tolist() == [0, 1, 1, 1]


def test_a_presence_task_that_is_not_trained_is_derived_from_its_intensity():
    tasks = {"sentiment": ("multiclass", [0, 1, 2]), "humour_level": ("multiclass", ["funny", "hilarious", "not_funny", "very_funny"])}
    model = build({"sentiment": 3, "humour_level": 4}, design="separate", stages="humour:humour_level", absent="not_funny")
    plan = model.task_plan(tasks)
    (entry,) = plan["derived"]
    assert entry["name"] == "humour" and entry["kind"] == "binary" and entry["encoder"]["classes"] == [0, 1]
    assert entry["derived"] == {"from": "humour_level", "absent": ["not_funny"]}
    logits = model(features())
    expected = torch.logsumexp(logits["humour_level"][:, [0, 1, 3]], dim=1) - logits["humour_level"][:, 2]
    torch.testing.assert_close(logits["humour"][:, 0], expected)
    with pytest.raises(UsageError, match="'not_fun' is no class of an intensity task"):
        build({"sentiment": 3, "humour_level": 4}, stages="humour:humour_level", absent="not_fun").task_plan(tasks)


def test_the_not_class_defaults_to_level_0_for_integer_levels_and_must_be_named_for_strings():
    assert absent_mask("level", [0, 1, 2, 3], ()).tolist() == [True, False, False, False]
    assert absent_mask("level", ["a", "none", "b"], ("none",)).tolist() == [False, True, False]
    with pytest.raises(UsageError, match="its classes are: funny, hilarious, not_funny") as error:
        absent_mask("humour_level", ["funny", "hilarious", "not_funny"], ())
    assert "absent=not_funny" in error.value.hint
    with pytest.raises(UsageError, match="nothing would count as present"):
        absent_mask("level", ["no", "yes"], ("no", "yes"))


def test_default_weights_are_the_papers_groups_split_evenly():
    memotion = default_weights(list(MEMOTION), [("humour", "humour_level"), ("sarcasm", "sarcasm_level")])
    assert memotion == pytest.approx({"sentiment": 0.4, "humour": 0.15, "sarcasm": 0.15, "humour_level": 0.15, "sarcasm_level": 0.15})
    multilabel = default_weights(list(MULTILABEL), [("emotions", "humour_level"), ("emotions", "sarcasm_level")])
    assert multilabel == pytest.approx({"sentiment": 0.4, "emotions": 0.3, "humour_level": 0.15, "sarcasm_level": 0.15})
    derived = default_weights(["sentiment", "humour_level"], [("humour", "humour_level")])
    assert derived == pytest.approx({"sentiment": 0.4, "humour_level": 0.3})
    assert default_weights(["label"], []) == {}


@pytest.mark.parametrize(
    "params, heads, message",
    [
        ({"design": "cascade"}, MEMOTION, "not a multi-task design"),
        ({"stages": "humour-humour_level"}, MEMOTION, "is not PRESENCE:INTENSITY"),
        ({"stages": "humour:humour_lvl"}, MEMOTION, "intensity task 'humour_lvl' is not among the tasks"),
        ({"stages": "humour:humour_level,sarcasm:humour_level"}, MEMOTION, "paired twice"),
        ({"stages": "humour:humour_level,humour_level:sarcasm_level"}, MEMOTION, "both a presence and an intensity"),
        ({"design": "two-stage"}, MEMOTION, "needs --model-arg stages"),
        ({"design": "two-stage", "stages": "funny:humour_level"}, MEMOTION, "trains presence task 'funny'"),
        ({"design": "two-stage", "stages": MULTILABEL_STAGES}, MULTILABEL, "needs binary presence tasks, but 'emotions' has 2 outputs"),
        ({"design": "two-stage-multilabel", "stages": STAGES}, MEMOTION, "one multi-label presence task"),
        ({"trunk": "no-such-model"}, MEMOTION, "unknown model 'no-such-model'"),
        ({"trunk": NAME}, MEMOTION, "cannot be the trunk"),
        ({"trunk_args": "hidden"}, MEMOTION, "is not KEY=VALUE"),
    ],
)
def test_bad_params_are_one_line_usage_errors(params, heads, message):
    with pytest.raises(UsageError, match=message) as error:
        build(heads, **params)
    assert "\n" not in str(error.value)


def test_a_bad_stage_names_the_tasks():
    with pytest.raises(UsageError) as error:
        build(design="two-stage", stages="humour:humour_lvl")
    assert error.value.hint == "the tasks are: sentiment, humour, humour_level, sarcasm, sarcasm_level"


def test_trunk_args_reach_the_trunk_and_a_bad_key_names_the_valid_ones():
    model = build(trunk="concat", trunk_args="hidden=12,dropout=0.0")
    assert model.width == 12 and type(model.trunk).__name__ == "ConcatMLP"
    with pytest.raises(UsageError, match="model 'concat' has no parameter 'width'") as error:
        build(trunk="concat", trunk_args="width=12")
    assert "hidden (default 256)" in error.value.hint


@pytest.mark.parametrize("design, heads, stages", [("two-stage", MEMOTION, STAGES), ("two-stage-multilabel", MULTILABEL, MULTILABEL_STAGES)])
def test_task_kinds_are_checked_against_the_design(design, heads, stages):
    model = build(heads, design=design, stages=stages)
    kinds = {task: ("multiclass", list(range(units))) for task, units in heads.items()}
    with pytest.raises(UsageError, match="presence task"):
        model.task_plan(kinds)
    kinds = {task: ("binary" if units == 1 else "multilabel" if task == "emotions" else "multiclass", list(range(max(units, 2))))
             for task, units in heads.items()}
    kinds["humour_level"] = ("binary", [0, 1])
    with pytest.raises(UsageError, match="intensity task 'humour_level' is binary, not multi-class"):
        model.task_plan(kinds)


def test_capabilities_are_the_trunks():
    assert model_capabilities(NAME, model_params(NAME)) == {
        **MODELS.capabilities(NAME), **{k: bool(MODELS.capabilities("gmu").get(k)) for k in ("explains", "sequences", "missing")}
    }
    concat = model_capabilities(NAME, {**model_params(NAME), "trunk": "concat"})
    assert concat["explains"] is False and concat["missing"] is True
    assert supports_explain_of(build(trunk="concat")) is False
    gmu = build(trunk="gmu")
    torch.testing.assert_close(gmu.explain(features())["image"], gmu.trunk.explain(features())["image"])


def supports_explain_of(model) -> bool:
    return callable(getattr(model, "explain", None))


TRUNKS = [name for name in MODELS.names() if name != NAME and _can_be_trunk(MODELS.capabilities(name))]
REFUSED = [name for name in MODELS.names() if name != NAME and not _can_be_trunk(MODELS.capabilities(name))]


def trunk_batch(trunk: str, n: int = 6) -> tuple[dict, Batch]:
    """Inputs by the trunk's capabilities: two ragged sequences and a vector for sequence
    models, two vectors otherwise; Memotion-like targets."""
    generator = torch.Generator().manual_seed(0)
    if MODELS.capabilities(trunk).get("sequences"):
        specs = {"minilm:seq": InputSpec("minilm:seq", 5, "sequence", 4), "clip:seq": InputSpec("clip:seq", 3, "sequence", 4), "v": InputSpec("v", 2)}
        lengths = torch.tensor([4, 1, 3, 2, 4, 2])[:n]
        mask = torch.arange(4)[None, :] < lengths[:, None]
        feats = {name: torch.randn(n, 4, spec.dim, generator=generator) * mask[..., None] for name, spec in specs.items() if spec.is_sequence}
        feats["v"] = torch.randn(n, 2, generator=generator)
        masks = {"minilm:seq": mask, "clip:seq": mask.flip(0)}
    else:
        specs, masks = dict(INPUTS), {}
        feats = {name: torch.randn(n, spec.dim, generator=generator) for name, spec in specs.items()}
    targets = {
        "sentiment": torch.randint(0, 3, (n,), generator=generator), "humour": torch.randint(0, 2, (n,), generator=generator).float(),
        "humour_level": torch.randint(0, 4, (n,), generator=generator),
    }
    return specs, Batch(features=feats, masks=masks, targets=targets)


def has_task_heads(trunk: str, specs: dict) -> bool:
    from mmtk.models.common import TaskHeads

    built = MODELS.get(trunk)(specs, {"sentiment": 3})
    return any(isinstance(module, TaskHeads) for module in built.modules())


@pytest.mark.parametrize("trunk", TRUNKS)
@pytest.mark.parametrize("design", ["separate", "two-stage"])
def test_any_registry_trunk_carries_the_heads_and_every_parameter_learns(trunk, design):
    from mmtk.training import AuxiliaryObjective, SupervisedObjective, TaskLoss

    if MODELS.capabilities(trunk).get("tokens"):
        pytest.skip(f"{trunk} reads word pieces into a pretrained checkpoint, which tests cannot download")
    specs, batch = trunk_batch(trunk)
    heads = {"sentiment": 3, "humour": 1, "humour_level": 4}
    if not has_task_heads(trunk, specs):  # a classifier of its own: refused, by its structure
        with pytest.raises(UsageError, match="classifies with its own heads"):
            MODELS.get(NAME)(specs, heads, trunk=trunk, design=design, stages="humour:humour_level")
        return
    torch.manual_seed(0)
    model = MODELS.get(NAME)(specs, heads, trunk=trunk, design=design, stages="humour:humour_level").train()
    objective = SupervisedObjective({"sentiment": TaskLoss("multiclass"), "humour": TaskLoss("binary"), "humour_level": TaskLoss("multiclass")})
    if model_capabilities(NAME, {**model_params(NAME), "trunk": trunk}).get("auxiliary"):
        objective = AuxiliaryObjective(objective)
    objective(model, batch)["total"].backward()
    # Every parameter is reached (the trunk's own heads are gone, not left unused); the
    # heads' gradients are non-zero. (Whether the trunk's are is the zoo contract's check
    # of the trunk itself: a score bias before a softmax gets only rounding noise.)
    unreached = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unreached, unreached
    zero = [n for n, p in model.named_parameters() if not n.startswith("trunk.") and not bool(p.grad.abs().sum() > 0)]
    assert not zero, zero
    assert model.represent(batch).shape == (len(batch), model.width)


def test_a_trunk_with_auxiliary_losses_keeps_them():
    if "mmae" not in MODELS:
        pytest.skip("mmae is not registered")
    specs, batch = trunk_batch("mmae")
    heads = {"sentiment": 3, "humour": 1, "humour_level": 4}
    assert model_capabilities(NAME, {**model_params(NAME), "trunk": "mmae"})["auxiliary"] is True
    torch.manual_seed(0)
    alone = MODELS.get("mmae")(specs, heads).eval()
    torch.manual_seed(0)  # the trunk is built first, so it starts with the same weights
    model = MODELS.get(NAME)(specs, heads, trunk="mmae", stages="humour:humour_level").eval()
    logits, terms = model(batch, auxiliary=True)
    _, expected = alone(batch, auxiliary=True)
    assert terms.keys() == expected.keys() and terms
    for name in terms:
        torch.testing.assert_close(terms[name], expected[name])
    torch.testing.assert_close(logits["humour_level"], model(batch)["humour_level"])


@pytest.mark.parametrize("trunk", REFUSED or ["none"])
def test_trunks_without_a_plain_representation_are_refused_naming_the_usable_ones(trunk):
    if trunk == "none":
        pytest.skip("every registered model can be a trunk")
    with pytest.raises(UsageError, match=f"cannot be the trunk") as error:
        build(trunk=trunk)
    assert "gmu" in error.value.hint


# --- end to end: a Memotion-like dataset in a real store ---------------------------------

HUMOUR = ["not_funny", "funny", "very_funny", "hilarious"]


def memotion_dataset(folder, store, n: int, seed: int, name: str):
    """``n`` memes: sentiment (3 classes) in the image features, humour intensity (named
    levels, ``not_funny`` the lowest) in the text features, sarcasm intensity (levels
    0-3) in both; ``humour``/``sarcasm`` are the presence columns (level above 0)."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset

    rng = np.random.default_rng(seed)
    (folder / f"{name}_img").mkdir(parents=True, exist_ok=True)
    sentiment, humour, sarcasm = rng.integers(0, 3, n), rng.integers(0, 4, n), rng.integers(0, 4, n)
    rows = []
    for i in range(n):
        (folder / f"{name}_img" / f"{i}.png").write_bytes(f"{name} meme {i}".encode())
        rows.append({
            "id": f"{name}-{i}", "img": f"{name}_img/{i}.png", "text": f"{name} caption {i}",
            "sentiment": ["negative", "neutral", "positive"][sentiment[i]],
            "humour_level": HUMOUR[humour[i]], "humour": int(humour[i] > 0),
            "sarcasm_level": int(sarcasm[i]), "sarcasm": int(sarcasm[i] > 0),
        })
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = read_dataset(path)
    image = rng.normal(size=(n, 8)).astype(np.float32) * 0.3
    text = rng.normal(size=(n, 6)).astype(np.float32) * 0.3
    image[np.arange(n), sentiment] += 2.0
    text[np.arange(n), humour] += 2.0
    image[:, 4] += sarcasm - 1.5
    text[:, 5] += sarcasm - 1.5
    for backbone, modality, column, arrays in (("efficientnet-lite0", "image", "img", image), ("minilm", "text", "text", text)):
        config = resolve_backbone(backbone, modality)
        store.register(config.fingerprint, {"backbone": config.spec, "modality": modality, "kind": "vector", "dim": arrays.shape[1]})
        store.put(config.fingerprint, content_keys(dataset.values(column), modality), list(arrays))
    return path


@pytest.fixture
def memotion(tmp_path):
    from mmtk.store import FeatureStore

    store = FeatureStore(tmp_path / "store")  # conftest points MMTK_STORE here
    return memotion_dataset(tmp_path, store, 240, seed=0, name="train"), memotion_dataset(tmp_path, store, 120, seed=1, name="test")


runner = CliRunner()
TRAIN = ["--features", "efficientnet-lite0,minilm", "--model", NAME, "--epochs", "25", "--lr", "0.01", "--seed", "0"]


def mmtk(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_mmtk_train_two_stage_records_default_weights_and_learns_every_task(tmp_path, memotion):
    train_path, test_path = memotion
    tasks = ["--task", "sentiment", "--task", "humour:binary", "--task", "humour_level", "--task", "sarcasm:binary", "--task", "sarcasm_level"]
    result = mmtk("train", train_path, *TRAIN, *tasks, "--model-arg", "design=two-stage", "--model-arg", f"stages={STAGES}",
                  "--out", tmp_path / "run", "--val", test_path, "--json")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["task_weights"] == pytest.approx(
        {"sentiment": 0.4, "humour": 0.15, "sarcasm": 0.15, "humour_level": 0.15, "sarcasm_level": 0.15}
    )
    assert config["model"]["params"]["design"] == "two-stage"
    evaluated = mmtk("evaluate", tmp_path / "run", test_path, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    accuracy = {task: r["metrics"]["accuracy"] for task, r in json.loads(evaluated.stdout)["tasks"].items()}
    assert set(accuracy) == {"sentiment", "humour", "humour_level", "sarcasm", "sarcasm_level"}
    assert min(accuracy.values()) > 0.6, accuracy  # chance: 1/3, 3/4 (always present), 1/4


def test_mmtk_train_two_stage_multilabel_with_one_presence_task_of_several_columns(tmp_path, memotion):
    train_path, test_path = memotion
    tasks = ["--task", "sentiment", "--task", "emotions=humour,sarcasm:multilabel", "--task", "humour_level", "--task", "sarcasm_level"]
    result = mmtk("train", train_path, *TRAIN, *tasks, "--model-arg", "design=two-stage-multilabel",
                  "--model-arg", "stages=emotions:humour_level,emotions:sarcasm_level", "--out", tmp_path / "run", "--val", test_path)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["task_weights"] == pytest.approx({"sentiment": 0.4, "emotions": 0.3, "humour_level": 0.15, "sarcasm_level": 0.15})
    tasks = json.loads(mmtk("evaluate", tmp_path / "run", test_path, "--json").stdout)["tasks"]
    assert tasks["emotions"]["metrics"]["macro_f1"] > 0.8 and tasks["sarcasm_level"]["metrics"]["accuracy"] > 0.6


@pytest.mark.parametrize(
    "kind, message",
    [
        ("multiclass", "design=two-stage needs binary presence tasks, but 'humour' has 2 outputs"),  # seen when built
        ("regression", "design=two-stage needs a binary presence task, but 'humour' is regression"),  # one output: seen by its kind
    ],
)
def test_a_design_given_tasks_of_the_wrong_kind_exits_2(tmp_path, memotion, kind, message):
    train_path, _ = memotion
    result = mmtk("train", train_path, *TRAIN, "--epochs", "1", "--task", f"humour:{kind}", "--task", "humour_level",
                  "--model-arg", "design=two-stage", "--model-arg", "stages=humour:humour_level", "--model-arg", "absent=not_funny",
                  "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_task_weight_overrides_the_defaults_it_names(tmp_path, memotion):
    train_path, _ = memotion
    result = mmtk("train", train_path, *TRAIN, "--epochs", "2", "--task", "sentiment", "--task", "humour_level",
                  "--model-arg", "stages=humour:humour_level", "--model-arg", "absent=not_funny",
                  "--task-weight", "sentiment=2", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["task_weights"] == {"sentiment": 2.0, "humour_level": 0.3}
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    terms = log[0]["val_terms"]
    assert terms["total"] == pytest.approx(2.0 * terms["task.sentiment"] + 0.3 * terms["task.humour_level"], rel=1e-5)


def test_derived_presence_is_predicted_and_evaluated_from_either_labels(tmp_path, memotion):
    train_path, test_path = memotion
    result = mmtk("train", train_path, *TRAIN, "--task", "sentiment", "--task", "humour_level", "--task", "sarcasm_level",
                  "--model-arg", f"stages={STAGES}", "--model-arg", "absent=not_funny", "--out", tmp_path / "run", "--val", test_path)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    derived = {task["name"]: task["derived"] for task in config["tasks"] if "derived" in task}
    assert derived == {"humour": {"from": "humour_level", "absent": ["not_funny"]}, "sarcasm": {"from": "sarcasm_level", "absent": [0]}}

    predicted = mmtk("predict", tmp_path / "run", test_path)
    assert predicted.exit_code == 0, predicted.output
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    first = records[0]["tasks"]
    assert set(first) == {"sentiment", "humour_level", "sarcasm_level", "humour", "sarcasm"}
    level = first["humour_level"]["probs"]
    assert first["humour"]["probs"]["1"] == pytest.approx(1 - level["not_funny"], abs=1e-5)
    assert first["sarcasm"]["probs"]["1"] == pytest.approx(1 - first["sarcasm_level"]["probs"]["0"], abs=1e-5)

    # Labels from the data's presence columns ...
    with_columns = json.loads(mmtk("evaluate", tmp_path / "run", test_path, "--json").stdout)["tasks"]
    assert with_columns["humour"]["metrics"]["accuracy"] > 0.8
    # ... or, without them, from the intensity labels: the same labels here, so the same metrics.
    rows = [json.loads(line) for line in test_path.read_text().splitlines()]
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({k: v for k, v in row.items() if k not in ("humour", "sarcasm")}) + "\n" for row in rows))
    without = mmtk("evaluate", tmp_path / "run", bare, "--json")
    assert without.exit_code == 0, without.output
    assert json.loads(without.stdout)["tasks"]["humour"] == with_columns["humour"]
    # A presence column that says otherwise is what gets scored.
    flipped = tmp_path / "flipped.jsonl"
    flipped.write_text("".join(json.dumps({**row, "humour": 1 - row["humour"]}) + "\n" for row in rows))
    scored = json.loads(mmtk("evaluate", tmp_path / "run", flipped, "--json").stdout)["tasks"]["humour"]["metrics"]["accuracy"]
    assert scored == pytest.approx(1 - with_columns["humour"]["metrics"]["accuracy"])


def test_string_levels_without_a_named_not_class_exit_2(tmp_path, memotion):
    train_path, _ = memotion
    result = mmtk("train", train_path, *TRAIN, "--epochs", "1", "--task", "humour_level", "--model-arg", "stages=humour:humour_level",
                  "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "absent=not_funny" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_sequence_trunk_gets_its_sequences_unpooled(tmp_path):
    from mmtk.evaluate import evaluate
    from mmtk.store import FeatureStore
    from mmtk.train import train
    from training.sequence_data import SEQ_FEATURES, sequence_dataset

    store = FeatureStore(tmp_path / "store")
    dataset = sequence_dataset(tmp_path, store, n=160)
    report = train(dataset.subset(range(120)), features=SEQ_FEATURES, model=NAME, tasks=["label"], out=tmp_path / "run", store=store,
                   val_dataset=dataset.subset(range(120, 160)), model_args={"trunk": "attention-pool"}, epochs=30, lr=3e-3, device="cpu")
    config = json.loads((report.run / "config.json").read_text())
    assert config["preprocessing"]["pool"] is None  # the trunk pools them itself
    assert [spec["kind"] for spec in config["model"]["inputs"]] == ["sequence", "vector"]
    assert evaluate(report.run, dataset.subset(range(120, 160)), store=store, device="cpu")["metrics"]["accuracy"] > 0.75


def test_a_bad_trunk_parameter_exits_2_naming_the_valid_ones(tmp_path, memotion):
    train_path, _ = memotion
    result = mmtk("train", train_path, *TRAIN, "--epochs", "1", "--task", "sentiment", "--model-arg", "trunk_args=width=3",
                  "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: model 'gmu' has no parameter 'width'") and "hidden (default 256)" in result.stderr
