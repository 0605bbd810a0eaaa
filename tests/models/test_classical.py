"""The classical baselines (``svm``, ``logreg``): their torch buffers reproduce
scikit-learn's decision functions and calibrated probabilities, runs hold no pickle, and
train / evaluate / predict / the CLI drive them like any other model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmtk.errors import DataError, UsageError
from mmtk.models import MODELS
from mmtk.models.classical import CalibratedLinear, CalibratedSVC, fit_logreg, fit_svm, fit_temperature
from mmtk.models.objectives import to_outputs
from mmtk.training.inputs import InputSpec

GRID = "0.01,0.1,1"


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """scikit-learn fitted here directly gets the one BLAS thread fit_arrays gives it (two
    OpenBLAS threads on a busy 2-core machine are many times slower)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def blobs(n: int, classes: int, seed: int, dims: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Classes shifted along two dimensions, under noise, on unequal scales."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, dims))
    x[:, 0] += 1.5 * y
    x[:, 1] += np.cos(y)
    x[:, 2] *= 10.0
    return x, y


def probabilities(logits: torch.Tensor, kind: str) -> np.ndarray:
    return to_outputs(kind, logits)


def split_inputs(x: np.ndarray) -> dict[str, torch.Tensor]:
    """Two named inputs (the model concatenates them in name order: "a" then "b")."""
    return {"b": torch.as_tensor(x[:, 4:], dtype=torch.float32), "a": torch.as_tensor(x[:, :4], dtype=torch.float32)}


def build(name: str, heads: dict[str, int], **params):
    inputs = {"a": InputSpec("a", 4), "b": InputSpec("b", 2)}
    if name == "logreg":
        params.setdefault("grid", GRID)
    return MODELS.get(name)(inputs, heads, **params)


def sklearn_reference(name: str, x: np.ndarray, y: np.ndarray, balanced: bool = False):
    """The estimator scikit-learn fits on the standardised ``x`` with the model's settings."""
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit(x).transform(x)
    folds = min(5, int(np.bincount(y).min()))
    if name == "svm":
        return fit_svm(scaled, y, C=1.0, folds=folds, balanced=balanced, seed=0)
    return fit_logreg(scaled, y, grid=(0.01, 0.1, 1.0), folds=folds, max_iter=3000, balanced=balanced, seed=0)


def scaled_like_training(x_train: np.ndarray, x: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit(x_train).transform(x)


# ------------------------------------------------------------------ the buffers equal scikit-learn


def platt_reference(estimator, x: np.ndarray, y: np.ndarray, folds: int = 5):
    """scikit-learn's own Platt calibration of ``estimator`` on cross-validated decision values."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold

    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    return CalibratedClassifierCV(estimator, method="sigmoid", cv=cv, ensemble=False).fit(x, y)


def temperature_reference(fitted, x: np.ndarray) -> np.ndarray:
    """softmax(decision_function / T), written out."""
    scores = fitted.estimator.decision_function(x) * fitted.scale
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [2, 4])
def test_svm_part_reproduces_decision_function_and_calibrated_probabilities(classes):
    from sklearn.svm import SVC

    x, y = blobs(240, classes, seed=1)
    held_out, _ = blobs(120, classes, seed=2)
    fitted = fit_svm(x, y, C=1.0, folds=5, balanced=False, seed=0)
    part = CalibratedSVC.from_fit(fitted)
    t = torch.as_tensor(held_out)
    # multi-class: scikit-learn's one-vs-one pairs aggregated one-vs-rest (its default "ovr" shape)
    assert np.allclose(part.decision(t).numpy(), fitted.estimator.decision_function(held_out), atol=1e-6)
    assert part(t).shape == (120, 1 if classes == 2 else classes)
    if classes == 2:
        expected = platt_reference(SVC(C=1.0, gamma=fitted.estimator.gamma), x, y).predict_proba(held_out)
        assert np.allclose(probabilities(part(t), "binary"), expected, atol=1e-5)
    else:
        expected = temperature_reference(fitted, held_out)
        assert np.allclose(probabilities(part(t), "multiclass"), expected, atol=1e-5)
    assert np.allclose(fitted.predict_proba(held_out), expected, atol=1e-9)
    assert len(set(np.round(expected[:, -1], 3))) > 20  # not a constant answer


@pytest.mark.parametrize("classes", [2, 5])
def test_logreg_part_reproduces_calibrated_probabilities(classes):
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(240, classes, seed=3)
    held_out, _ = blobs(100, classes, seed=4)
    fitted = fit_logreg(x, y, grid=(0.01, 0.1, 1.0), folds=5, max_iter=3000, balanced=False, seed=0)
    part = CalibratedLinear.from_fit(fitted)
    t = torch.as_tensor(held_out)
    assert np.allclose(part.decision(t).numpy(), fitted.estimator.decision_function(held_out), atol=1e-9)
    if classes == 2:
        expected = platt_reference(LogisticRegression(C=fitted.estimator.C, max_iter=3000), x, y).predict_proba(held_out)
        assert np.allclose(probabilities(part(t), "binary"), expected, atol=1e-5)
    else:
        expected = temperature_reference(fitted, held_out)
        assert np.allclose(probabilities(part(t), "multiclass"), expected, atol=1e-5)
    assert np.allclose(fitted.predict_proba(held_out), expected, atol=1e-9)


def test_the_temperature_minimises_the_log_loss_and_recovers_a_known_one():
    rng = np.random.default_rng(17)
    logits = 3.0 * rng.normal(size=(4000, 5))
    drawn = np.array([rng.choice(5, p=np.exp(row / 2.0) / np.exp(row / 2.0).sum()) for row in logits])
    temperature = fit_temperature(logits, drawn)
    assert 1.8 < temperature < 2.2

    def nll(t: float) -> float:
        scaled = logits / t
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        return float(-(scaled[np.arange(len(drawn)), drawn] - np.log(np.exp(scaled).sum(axis=1))).mean())

    assert nll(temperature) <= min(nll(temperature * 1.01), nll(temperature / 1.01))


def test_svm_kernel_is_computed_in_blocks_without_changing_it(monkeypatch):
    import mmtk.models.classical as classical

    x, y = blobs(200, 3, seed=5)
    part = CalibratedSVC.from_fit(fit_svm(x, y, C=1.0, folds=3, balanced=False, seed=0))
    whole = part.decision(torch.as_tensor(x))
    monkeypatch.setattr(classical, "KERNEL_BLOCK", part.support.shape[0] * 7)  # 7 rows at a time
    assert torch.allclose(part.decision(torch.as_tensor(x)), whole, atol=1e-12)


@pytest.mark.parametrize("name", ["svm", "logreg"])
@pytest.mark.parametrize("balanced", [False, True])
def test_model_equals_scikit_learn_per_task_and_per_label(name, balanced):
    x, y = blobs(300, 3, seed=6)
    rng = np.random.default_rng(7)
    binary = (x[:, 1] + 0.5 * rng.normal(size=300) > 0.8).astype(np.int64)  # unbalanced: class_weight matters
    labels = np.stack([(y == 0), (x[:, 3] + rng.normal(size=300) > 0)], axis=1).astype(np.float32)
    held_out, _ = blobs(150, 3, seed=8)
    model = build(name, {"kind": 3, "flag": 1, "tags": 2})
    model.fit_arrays(split_inputs(x), {"kind": y, "flag": binary, "tags": labels}, {"kind": "multiclass", "flag": "binary", "tags": "multilabel"}, balanced=balanced, seed=0)
    logits = model(split_inputs(held_out))
    # The model reads float32 inputs, as runs give them; scikit-learn the same values.
    x32 = np.concatenate([x[:, :4], x[:, 4:]], axis=1).astype(np.float32).astype(np.float64)
    held32 = held_out.astype(np.float32).astype(np.float64)
    scaled = scaled_like_training(x32, held32)
    expected = {
        "kind": sklearn_reference(name, x32, y, balanced).predict_proba(scaled),
        "flag": sklearn_reference(name, x32, binary, balanced).predict_proba(scaled),
        "tags": np.stack([sklearn_reference(name, x32, labels[:, i].astype(np.int64), balanced).predict_proba(scaled)[:, 1] for i in range(2)], axis=1),
    }
    for task, kind in (("kind", "multiclass"), ("flag", "binary"), ("tags", "multilabel")):
        assert logits[task].dtype == torch.float32
        got = probabilities(logits[task], kind)
        assert np.allclose(got, expected[task], atol=1e-5), task
        if kind != "multilabel":
            assert np.allclose(got.sum(axis=1), 1.0, atol=1e-6)
    assert model.represent(split_inputs(held_out)).shape == (150, model.width) == (150, 6)


def test_class_weights_change_the_fit():
    x, y = blobs(300, 2, seed=9)
    y = (x[:, 0] + x[:, 1] > 2.2).astype(np.int64)  # a rare positive class
    plain, balanced = build("svm", {"t": 1}), build("svm", {"t": 1})
    plain.fit_arrays(split_inputs(x), {"t": y}, {"t": "binary"}, balanced=False)
    balanced.fit_arrays(split_inputs(x), {"t": y}, {"t": "binary"}, balanced=True)
    assert not torch.equal(plain.state_dict()["parts.0.0.dual"], balanced.state_dict()["parts.0.0.dual"])


# ------------------------------------------------------------------ state: buffers only, rebuilt on load


@pytest.mark.parametrize("name", ["svm", "logreg"])
def test_state_dict_is_buffers_and_a_fresh_model_loads_it(name):
    x, y = blobs(200, 3, seed=10)
    model = build(name, {"kind": 3, "tags": 2})
    labels = np.stack([y == 1, y == 2], axis=1).astype(np.float32)
    model.fit_arrays(split_inputs(x), {"kind": y, "tags": labels}, {"kind": "multiclass", "tags": "multilabel"})
    assert list(model.parameters()) == []
    state = model.state_dict()
    assert all(t.dtype in (torch.float64, torch.int64) for t in state.values())
    fresh = build(name, {"kind": 3, "tags": 2})
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh(split_inputs(x))
    fresh.load_state_dict(state)
    for task in ("kind", "tags"):
        assert torch.equal(fresh(split_inputs(x))[task], model(split_inputs(x))[task])


def test_a_state_with_a_missing_or_stray_buffer_is_refused():
    x, y = blobs(120, 2, seed=11)
    model = build("svm", {"t": 1})
    model.fit_arrays(split_inputs(x), {"t": y}, {"t": "binary"})
    state = model.state_dict()
    without = {k: v for k, v in state.items() if k != "parts.0.0.gamma"}
    with pytest.raises(RuntimeError, match="no classical model part"):
        build("svm", {"t": 1}).load_state_dict(without)
    with pytest.raises(RuntimeError, match="give 1 outputs, its head has 3"):
        build("svm", {"t": 3}).load_state_dict(state)  # saved for one logit, built for three classes
    with pytest.raises(RuntimeError, match="inconsistent shapes"):
        build("svm", {"t": 1}).load_state_dict({**state, "parts.0.0.intercept": torch.zeros(3, dtype=torch.float64)})
    with pytest.raises(RuntimeError, match="fitted parts give 0"):
        build("svm", {"t": 1}).load_state_dict({"mean": state["mean"], "scale": state["scale"]})


# ------------------------------------------------------------------ refusals


def test_regression_is_refused_naming_the_models_that_regress():
    x, _ = blobs(60, 2, seed=12)
    with pytest.raises(UsageError, match="'svm' classifies, but task 'score' is a regression") as error:
        build("svm", {"score": 1}).fit_arrays(split_inputs(x), {"score": x[:, 0]}, {"score": "regression"})
    able = error.value.hint
    assert "gmu" in able and "svm" not in able and "logreg" not in able


def test_a_class_with_one_training_item_is_refused():
    x, _ = blobs(30, 2, seed=13)
    y = np.array([0] * 29 + [1])
    with pytest.raises(DataError, match="task t: class 1 has 1 training item"):
        build("logreg", {"t": 1}).fit_arrays(split_inputs(x), {"t": y}, {"t": "binary"})
    two = np.array([0] * 28 + [1, 1])  # two items: two folds, fitted
    build("logreg", {"t": 1}).fit_arrays(split_inputs(x), {"t": two}, {"t": "binary"})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("svm", {"C": 0.0}, "C=0.0 must be positive"),
        ("svm", {"folds": 1}, "folds=1 must be at least 2"),
        ("logreg", {"grid": "0.1,x"}, "is not a list of positive Cs"),
        ("logreg", {"grid": "0.1,-1"}, "is not a list of positive Cs"),
        ("logreg", {"max_iter": 0}, "max_iter=0 must be at least 1"),
    ],
)
def test_bad_model_args_are_usage_errors(name, params, message):
    with pytest.raises(UsageError, match=message):
        build(name, {"t": 1}, **params)


def test_capabilities_say_fitted_whole_without_gradients_or_absent_modalities():
    for name in ("svm", "logreg"):
        capabilities = MODELS.capabilities(name)
        assert (capabilities["fits"], capabilities["missing"], capabilities["sequences"], capabilities["regression"]) == ("arrays", False, False, False)


# ------------------------------------------------------------------ train / evaluate / predict


@pytest.fixture
def xor(tmp_path):
    from mmtk.store import FeatureStore
    from synthetic_features import xor_split

    store = FeatureStore(tmp_path / "store")
    return (store, *xor_split(tmp_path, store, n_train=200, n_test=100))


def test_train_fits_once_saves_no_pickle_and_evaluate_predict_read_the_run(tmp_path, xor):
    from mmtk.evaluate import evaluate
    from mmtk.predict import predict
    from mmtk.runs import load_run
    from mmtk.train import train
    from synthetic_features import FEATURES

    store, train_ds, test_ds = xor
    report = train(train_ds, features=FEATURES, model="svm", tasks=["p"], out=tmp_path / "run", store=store, val_dataset=test_ds, seed=0)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "train_log.jsonl"]
    for path in run.iterdir():  # JSON and safetensors only: no pickle stream (protocol 2+ starts with 0x80)
        data = path.read_bytes()
        assert b"\x80\x04\x95" not in data and b"\x80\x02" not in data[:2]
    json.loads((run / "config.json").read_text())
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["epoch"] == 1 and log[0]["lr"] is None
    assert report.best_epoch == report.epochs_run == 1
    assert report.val_metrics["metrics"]["accuracy"] > 0.9  # p lives in the image features
    loaded = load_run(run)
    evaluated = evaluate(run, test_ds, store=store, device="cpu", extract_missing=False)
    assert evaluated["metrics"] == report.val_metrics["metrics"]
    rows = predict(loaded, test_ds, store=store, device="cpu", extract_missing=False)
    probs = np.array([[row["probs"]["0"], row["probs"]["1"]] for row in rows])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert 0.9 < np.mean([row["label"] == record.values["p"] for row, record in zip(rows, test_ds.records)])


def test_train_hands_class_weights_seed_and_standardised_inputs_to_the_fit(tmp_path, xor, monkeypatch):
    from mmtk.models.classical import ClassicalModel
    from mmtk.train import train
    from synthetic_features import FEATURES

    store, train_ds, _ = xor
    seen = []
    original = ClassicalModel.fit_arrays

    def spy(self, features, targets, kinds, *, balanced=False, seed=0):
        seen.append((balanced, seed, sorted(features), kinds, {n: float(x.std()) for n, x in features.items()}))
        return original(self, features, targets, kinds, balanced=balanced, seed=seed)

    monkeypatch.setattr(ClassicalModel, "fit_arrays", spy)
    train(train_ds, features=FEATURES, model="logreg", tasks=["p"], out=tmp_path / "run", store=store,
          class_weights=True, seed=7, standardize="all", model_args={"grid": GRID})
    ((balanced, seed, names, kinds, stds),) = seen
    assert (balanced, seed, names, kinds) == (True, 7, sorted(FEATURES), {"p": "binary"})
    assert all(abs(std - 1.0) < 0.05 for std in stds.values())  # the run's standardisation came first


def test_hidden_and_dropout_do_not_apply(tmp_path, xor):
    from mmtk.train import train

    store, train_ds, _ = xor
    with pytest.raises(UsageError, match="model 'logreg' has no parameter 'hidden'"):
        train(train_ds, features=["minilm"], model="logreg", tasks=["q"], out=tmp_path / "run", store=store, hidden=32)
    with pytest.raises(UsageError, match="'missing-modality|cannot ignore an absent modality"):
        train(train_ds, features=["minilm"], model="svm", tasks=["q"], out=tmp_path / "run", store=store, missing_modality="mask")


def mmtk(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, env=env)


def test_cli_trains_logreg_then_evaluates_and_predicts(tmp_path, xor):
    store, train_ds, test_ds = xor
    env = {**os.environ, "MMTK_STORE": str(store.root)}
    run = str(tmp_path / "cli-run")
    made = mmtk(
        "train", str(train_ds.source), "--features", "efficientnet-lite0,minilm", "--model", "logreg",
        "--model-arg", f"grid={GRID}", "--task", "p", "--class-weights", "--out", run, "--json", env=env,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["best_epoch"] == 1
    config = json.loads((tmp_path / "cli-run" / "config.json").read_text())
    assert config["model"]["params"] == {"grid": GRID, "folds": 5, "max_iter": 3000} and config["training"]["class_weights"] is True
    evaluated = mmtk("evaluate", run, str(test_ds.source), "--json", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["metrics"]["accuracy"] > 0.9  # p lives in the image features: linear
    predicted = mmtk("predict", run, str(test_ds.source), "--out", "-", env=env)
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == len(test_ds)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "svm", "--hidden", "32"], "model 'svm' has no parameter 'hidden'"),
        (["--model", "logreg", "--model-arg", "grid=big"], "is not a list of positive Cs"),
        (["--model", "logreg", "--task", "p:regression"], "'logreg' classifies, but task 'p' is a regression"),
    ],
)
def test_cli_refuses_bad_options_in_one_line(tmp_path, xor, extra, message):
    store, train_ds, _ = xor
    env = {**os.environ, "MMTK_STORE": str(store.root)}
    task = [] if "--task" in extra else ["--task", "q"]
    made = mmtk("train", str(train_ds.source), "--features", "minilm", *task, *extra, "--out", str(tmp_path / "r"), env=env)
    assert made.returncode == 2, made.stderr
    assert message in made.stderr and len(made.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["svm", "logreg"])
def test_a_two_class_multiclass_task_gives_two_softmax_logits(name):
    x, y = blobs(160, 2, seed=14)
    held_out, _ = blobs(60, 2, seed=15)
    multiclass, binary = build(name, {"t": 2}), build(name, {"t": 1})
    multiclass.fit_arrays(split_inputs(x), {"t": y}, {"t": "multiclass"})
    binary.fit_arrays(split_inputs(x), {"t": y}, {"t": "binary"})
    logits = multiclass(split_inputs(held_out))["t"]
    assert logits.shape == (60, 2)
    assert np.allclose(probabilities(logits, "multiclass"), probabilities(binary(split_inputs(held_out))["t"], "binary"), atol=1e-6)
    fresh = build(name, {"t": 2})
    fresh.load_state_dict(multiclass.state_dict())
    assert torch.equal(fresh(split_inputs(held_out))["t"], logits)


def test_a_state_for_other_input_widths_is_refused_at_load():
    x, y = blobs(120, 2, seed=16)
    model = build("logreg", {"t": 1})
    model.fit_arrays(split_inputs(x), {"t": y}, {"t": "binary"})
    state = dict(model.state_dict())
    state["parts.0.0.weight"] = torch.zeros(1, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="reads 5 features, the model's inputs have 6"):
        build("logreg", {"t": 1}).load_state_dict(state)
