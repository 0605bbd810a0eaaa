"""The contract every registered model keeps, checked for each name in ``MODELS`` (a model
registered later is covered without editing this file).

(a) one backward pass on a small batch gives every parameter a finite, non-zero gradient
(an unused projection, as in the well-known GMU bug, fails this); (b) a model that takes
sequences gives the same outputs whatever its padded steps hold; (c) a model that honours
absent modalities gives the same outputs whatever an absent modality's values are;
(d) a saved run loads to the same outputs, whatever the random state at load; (e)
``represent`` gives ``(B, width)``; (f) ``mmtk.train.train`` then ``mmtk.evaluate`` run end
to end on a tiny generated dataset in seconds, learn its label, and evaluating the saved
run reproduces the best epoch's validation metrics.

Inputs are built from the capabilities on each registry entry, never from a model's name:
vector models get three vector inputs; ``sequences=True`` models get two sequence inputs
with ragged masks and one vector. A model declares what the generic checks cannot apply to:
``fits="arrays"`` (fitted whole on the training arrays, not by gradients) skips (a); ``interactions=False``
(e.g. a linear model, which cannot learn XOR) is held to learning the dataset's linearly
separable task only. ``tokens=True`` models also get word pieces and are built on a tiny
BERT checkpoint (``token_inputs``).
"""

from __future__ import annotations

import pytest
import torch

from mmtk.evaluate import evaluate
from mmtk.models import MODELS, model_capabilities, model_params, supports_explain
from mmtk.runs import CONFIG, WEIGHTS_SHA256, load_run, save_run
from mmtk.store import FeatureStore
from mmtk.train import train
from mmtk.training import AuxiliaryObjective, Batch, InputSpec, SupervisedObjective, TaskLoss
from mmtk.training.inputs import specs_from_json
from training.sequence_data import SEQ_FEATURES, sequence_dataset  # tests/training, beside its users
from synthetic_features import FEATURES, xor_split
from models import token_inputs  # tests/models: word pieces for tokens=True models

NAMES = MODELS.names()
BATCH = 8
# Names as users write them: a colon, an @, a dot (nn.ModuleDict would refuse some).
VECTORS = {"clip:ViT-B-32@laion2b_s34b_b79k": 6, "minilm@title": 5, "tabular.x": 3}
SEQUENCES = {"minilm:seq": 6, "efficientnet-lite0:seq@img": 4}
MAX_LEN = 7
# Ragged: a single step, full length, and lengths between.
LENGTHS = [[7, 1, 3, 5, 2, 7, 4, 6], [2, 7, 1, 4, 6, 3, 7, 5]]
HEADS = {"sentiment": 3, "humour": 1}
KINDS = {"sentiment": "multiclass", "humour": "binary"}
FAST = {"epochs": 30, "lr": 5e-3, "patience": 30, "batch_size": 32, "device": "cpu", "seed": 0}


def capability(name: str, key: str, default=False):
    """What model ``name`` built with its default parameters declares (its builder may
    refine the entry's capabilities from its parameters: ``model_capabilities``)."""
    return model_capabilities(name, model_params(name)).get(key, default)


def contract_inputs(name: str) -> dict[str, InputSpec]:
    if capability(name, "sequences"):
        specs = {n: InputSpec(n, d, "sequence", MAX_LEN) for n, d in SEQUENCES.items()}
        specs = {**specs, "tabular.x": InputSpec("tabular.x", 3)}
        return {**specs, token_inputs.NAME: token_inputs.token_spec(MAX_LEN)} if capability(name, "tokens") else specs
    return {n: InputSpec(n, d) for n, d in VECTORS.items()}


def random_batch(specs: dict[str, InputSpec], seed: int = 0) -> Batch:
    """Random features (sequences zero-padded past ragged lengths, as batch sources pad)
    and targets for ``HEADS``."""
    generator = torch.Generator().manual_seed(seed)
    features, masks = {}, {}
    sequences = [spec for spec in specs.values() if spec.is_sequence or spec.kind == "tokens"]
    for spec in specs.values():
        if spec.kind == "tokens":
            steps = spec.max_len or MAX_LEN
            lengths = torch.tensor(LENGTHS[sequences.index(spec) % len(LENGTHS)]).clamp(min=2, max=steps)  # [CLS] [SEP] at least
            masks[spec.name] = torch.arange(steps)[None, :] < lengths[:, None]
            features[spec.name] = token_inputs.random_ids(BATCH, steps, masks[spec.name], generator)
        elif spec.is_sequence:
            steps = spec.max_len or MAX_LEN
            lengths = torch.tensor(LENGTHS[sequences.index(spec) % len(LENGTHS)]).clamp(max=steps)
            mask = torch.arange(steps)[None, :] < lengths[:, None]
            features[spec.name] = torch.randn(BATCH, steps, spec.dim, generator=generator) * mask[..., None]
            masks[spec.name] = mask
        else:
            features[spec.name] = torch.randn(BATCH, spec.dim, generator=generator)
    targets = {
        "sentiment": torch.randint(0, 3, (BATCH,), generator=generator),
        "humour": torch.randint(0, 2, (BATCH,), generator=generator).float(),
    }
    return Batch(features=features, masks=masks, targets=targets)


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    extra = token_inputs.build_args(name) if capability(name, "tokens") else {}
    return MODELS.get(name)(contract_inputs(name), HEADS, **extra)


def outputs(model, batch: Batch) -> dict[str, torch.Tensor]:
    """Everything a model shows: logits per task, its representation, its explanation."""
    with torch.no_grad():
        shown = {f"logits.{task}": logits for task, logits in model(batch).items()}
        shown["represent"] = model.represent(batch)
        if supports_explain(model):
            shown.update({f"explain.{n}": w for n, w in model.explain(batch).items()})
    return shown


def assert_same(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.isfinite(a[key]).all(), f"{key} is not finite"
        torch.testing.assert_close(a[key], b[key], msg=lambda m, key=key: f"{key}: {m}", **tolerance)


def objective(name: str):
    supervised = SupervisedObjective({task: TaskLoss(kind) for task, kind in KINDS.items()})
    return AuxiliaryObjective(supervised) if capability(name, "auxiliary") else supervised


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    if capability(name, "fits", "gradient") != "gradient":
        pytest.skip(f"{name} is fitted on the training arrays (fits={capability(name, 'fits')!r}), not by gradients")
    model = build(name).train()
    batch = random_batch(contract_inputs(name))
    objective(name)(model, batch)["total"].backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params, f"{name} has no trainable parameters"
    unused = [n for n, p in params if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not unused, f"{name}: no gradient reaches {unused}"
    broken = [n for n, p in params if not bool(torch.isfinite(p.grad).all())]
    assert not broken, f"{name}: non-finite gradients in {broken}"


@pytest.mark.parametrize("name", NAMES)
def test_padded_steps_do_not_change_the_outputs(name):
    if not capability(name, "sequences"):
        pytest.skip(f"{name} takes no sequences (they are pooled before it)")
    model = build(name).eval()
    batch = random_batch(contract_inputs(name))
    noisy = Batch(features=dict(batch.features), masks=batch.masks)
    generator = torch.Generator().manual_seed(1)
    for input_name, mask in batch.masks.items():
        values = batch.features[input_name]
        if not values.is_floating_point():  # word pieces: other ids in the padding
            noisy.features[input_name] = token_inputs.vary_pieces(values, ~mask, generator)
            continue
        noise = 100 * torch.randn(values.shape, generator=generator)
        noisy.features[input_name] = torch.where(mask[..., None], values, noise)
    assert_same(outputs(model, batch), outputs(model, noisy), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_an_absent_modality_does_not_change_the_outputs(name):
    if not capability(name, "missing"):
        pytest.skip(f"{name} does not honour absent modalities (--missing-modality mask)")
    model = build(name).eval()
    specs = contract_inputs(name)
    absent = torch.tensor([True, False] * (BATCH // 2))
    for input_name, spec in specs.items():
        batch = random_batch(specs)
        present = {input_name: ~absent}
        masks = dict(batch.masks)
        if spec.is_sequence:  # an absent sequence has no valid step, as the data layer gives it
            masks[input_name] = batch.masks[input_name] & ~absent[:, None]
        zeros, noise = dict(batch.features), dict(batch.features)
        values = batch.features[input_name]
        if not values.is_floating_point():  # word pieces: an absent text's pieces after [CLS] vary
            generator = torch.Generator().manual_seed(2)
            zeros[input_name] = token_inputs.vary_pieces(values, absent[:, None], generator)
            noise[input_name] = token_inputs.vary_pieces(values, absent[:, None], generator)
            quiet = outputs(model, Batch(features=zeros, masks=masks, present=present))
            loud = outputs(model, Batch(features=noise, masks=masks, present=present))
            assert_same(quiet, loud, atol=1e-5, rtol=1e-5)
            continue
        where = absent.view(-1, *[1] * (values.dim() - 1))
        zeros[input_name] = torch.where(where, torch.zeros_like(values), values)
        noise[input_name] = torch.where(where, 100 * torch.randn(values.shape, generator=torch.Generator().manual_seed(2)), values)
        quiet = outputs(model, Batch(features=zeros, masks=masks, present=present))
        loud = outputs(model, Batch(features=noise, masks=masks, present=present))
        assert_same(quiet, loud, atol=1e-5, rtol=1e-5)


def _train(name: str, folder):
    """Train ``name`` on a tiny generated dataset: the XOR store for vector models (tasks:
    ``label`` = p XOR q, which needs both modalities, and ``p``, linear in one of them),
    the stored-sequence set for sequence models (label in the sequence)."""
    store = FeatureStore(folder / "store")
    if capability(name, "sequences"):
        # One dataset cut in two: its items' texts (content keys) are unique within it.
        dataset = sequence_dataset(folder, store, n=200)
        train_ds, val_ds = dataset.subset(range(150)), dataset.subset(range(150, 200))
        features, tasks = SEQ_FEATURES, ["label"]
        if capability(name, "tokens"):
            features = [token_inputs.feature_ref(), *features]
    else:
        train_ds, val_ds = xor_split(folder, store, n_train=320, n_test=120)
        features, tasks = FEATURES, ["label", "p"]
    model_args = token_inputs.build_args(name) if capability(name, "tokens") else None
    report = train(train_ds, features=features, model=name, tasks=tasks, out=folder / "run", store=store,
                   val_dataset=val_ds, standardize=True, model_args=model_args, **FAST)
    return report, store, val_ds


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(name)``: the model trained once per module, as (report, store, val set)."""
    runs = {}

    def get(name: str):
        if name not in runs:
            runs[name] = _train(name, tmp_path_factory.mktemp(name))
        return runs[name]

    return get


def per_task(metrics: dict) -> dict[str, dict]:
    """``{task: {metric: value}}`` of evaluate's JSON (one task, or several under "tasks")."""
    tasks = metrics.get("tasks", {"label": metrics})
    return {task: result["metrics"] for task, result in tasks.items()}


@pytest.mark.parametrize("name", NAMES)
def test_trains_and_evaluates_end_to_end(name, trained):
    report, store, val = trained(name)
    assert report.epochs_run >= 1 and (report.run / CONFIG).is_file()
    # The saved run reproduces the best epoch's validation metrics.
    evaluated = per_task(evaluate(report.run, val, store=store, device="cpu"))
    recorded = per_task(report.val_metrics)
    assert evaluated.keys() == recorded.keys()
    for task, metrics in evaluated.items():
        assert metrics == pytest.approx(recorded[task], rel=1e-5, abs=1e-6), task
    # Clearly above chance: 0.7 of 120 validation items is over 4 standard deviations
    # above 0.5. (gating learns XOR slowest: its other modalities shift the primary by at
    # most beta = 0.2 of its norm; 0.72 here, 0.8 after 50 epochs.)
    accuracy = {task: metrics["accuracy"] for task, metrics in evaluated.items()}
    if capability(name, "sequences"):
        assert accuracy["label"] > 0.75, accuracy
    else:
        assert accuracy["p"] > 0.9, accuracy
        if capability(name, "interactions", True):
            assert accuracy["label"] > 0.7, accuracy


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_run_loads_to_the_same_outputs(name, trained, tmp_path):
    report, _, _ = trained(name)
    torch.manual_seed(101)
    first = load_run(report.run)
    batch = random_batch(specs_from_json(first.config["model"]), seed=3)
    before = outputs(first.model, batch)
    config = {key: value for key, value in first.config.items() if key not in ("format", WEIGHTS_SHA256)}
    save_run(tmp_path / "copy", config=config, model=first.model, metrics={}, log=[])
    torch.manual_seed(202)  # state the weights do not hold would come out different here
    again = load_run(tmp_path / "copy")
    assert again.model.state_dict().keys() == first.model.state_dict().keys()
    assert_same(before, outputs(again.model, batch), atol=0.0, rtol=0.0)


@pytest.mark.parametrize("name", NAMES)
def test_represent_gives_one_row_of_width_per_item(name, trained):
    run = load_run(trained(name)[0].run)
    model, specs = run.model, specs_from_json(run.config["model"])
    shown = outputs(model, random_batch(specs))
    assert shown["represent"].shape == (BATCH, model.width)
    # An explaining model declares it (predict --explain and `mmtk list` read the registry),
    # and explains every input with one weight per item.
    if supports_explain(model):
        assert capability(name, "explains"), f"{name} has explain() but its registry entry says explains=False"
        assert {key.removeprefix("explain.") for key in shown if key.startswith("explain.")} == set(specs)
        assert all(shown[f"explain.{n}"].shape == (BATCH,) for n in specs)
