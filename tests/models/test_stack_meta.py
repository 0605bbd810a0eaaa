"""The stack's meta-estimators (``mmtk.models.stack``) against scikit-learn: the final
estimator of ``StackingClassifier`` fitted on the same out-of-fold scores, trees and
forests kept as node arrays, votes as ``VotingClassifier``; ``auto`` per task and label;
buffers that save and load through safetensors alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier, StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

from mmtk.models import MODELS
from mmtk.models.objectives import to_outputs
from mmtk.models.stack import META, TreesPart, _tree_arrays
from mmtk.stacking import fit_meta

FINAL = {
    "logreg": LogisticRegression(max_iter=1000),
    "tree": DecisionTreeClassifier(random_state=0),
    "forest": RandomForestClassifier(random_state=0, n_jobs=1),
}


def two_modalities(classes: int, n: int = 360, seed: int = 0):
    """Items whose label shows partly in columns 0-2 and partly in columns 3-5."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, 6))
    x[:, 0] += 1.2 * y
    x[:, 4] -= 0.9 * y
    return x, y


def members():
    """Two scikit-learn base models, each reading one modality's columns."""
    return [
        (name, make_pipeline(FunctionTransformer(lambda x, cols=cols: x[:, cols]), LogisticRegression(max_iter=1000)))
        for name, cols in (("a", [0, 1, 2]), ("b", [3, 4, 5]))
    ]


def member_layout(probs: np.ndarray) -> np.ndarray:
    """A member's scores as the ``run`` feature source gives them: p(positive) for two
    classes, every class's probability otherwise."""
    return probs[:, 1:] if probs.shape[1] == 2 else probs


def stack_over(scores: dict, y: np.ndarray, kind: str, meta: str):
    classes = len(np.unique(y))
    units = 1 if kind == "binary" else classes
    model = MODELS.get("stack")({name: units for name in scores}, {"t": units})
    oof = np.concatenate(list(scores.values()), axis=1)
    parts, choices = fit_meta(model, oof, {"t": y}, {"t": kind}, meta, folds=5, seed=0)
    return model.fit_parts(parts).eval(), choices


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("meta", sorted(FINAL))
def test_the_stack_gives_stackingclassifiers_probabilities(kind, meta):
    x, y = two_modalities(2 if kind == "binary" else 3)
    train, test = slice(0, 260), slice(260, None)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    reference = StackingClassifier(members(), final_estimator=clone(FINAL[meta]), cv=cv, stack_method="predict_proba")
    reference.fit(x[train], y[train])
    # The out-of-fold scores StackingClassifier fits its final estimator on.
    oof = {name: member_layout(cross_val_predict(clone(est), x[train], y[train], cv=cv, method="predict_proba")) for name, est in members()}
    model, _ = stack_over(oof, y[train], kind, meta)
    # Its members refitted on every training item score the test items.
    test_scores = {name: torch.as_tensor(member_layout(est.predict_proba(x[test])), dtype=torch.float32)
                   for name, est in zip(oof, reference.estimators_)}
    with torch.no_grad():
        probs = to_outputs(kind, model(test_scores)["t"])
    expected = reference.final_estimator_.predict_proba(
        np.concatenate([s.numpy().astype(np.float64) for s in test_scores.values()], axis=1)
    )
    np.testing.assert_allclose(probs, expected, atol=2e-6)
    np.testing.assert_allclose(expected, reference.predict_proba(x[test]), atol=1e-6)  # float32 scores: as mmtk's runs give them


@pytest.mark.parametrize("voting", ["soft", "hard"])
def test_votes_are_votingclassifiers(voting):
    x, y = two_modalities(3)
    train, test = slice(0, 260), slice(260, None)
    reference = VotingClassifier(members(), voting=voting).fit(x[train], y[train])
    scores = {name: torch.as_tensor(est.predict_proba(x[test]), dtype=torch.float64) for name, est in zip("ab", reference.estimators_)}
    model, _ = stack_over({name: s.numpy() for name, s in scores.items()}, np.arange(len(scores["a"])) % 3, "multiclass", f"{voting}-vote")
    with torch.no_grad():
        probs = to_outputs("multiclass", model(scores)["t"])
    if voting == "soft":
        np.testing.assert_allclose(probs, reference.predict_proba(x[test]), atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(axis=1), reference.predict(x[test]))


@pytest.mark.parametrize("estimator", [DecisionTreeClassifier(random_state=0), RandomForestClassifier(n_estimators=25, random_state=0, n_jobs=1)])
@pytest.mark.parametrize("classes", [2, 4])
def test_tree_arrays_reproduce_predict_proba(estimator, classes):
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int) + (classes > 2) * (x[:, 1] > 0) * 2
    fitted = clone(estimator).fit(x, y)
    trees = getattr(fitted, "estimators_", [fitted])
    part = TreesPart(np.arange(5).reshape(5, 1), **_tree_arrays(trees))
    unseen = rng.normal(size=(200, 5))
    unseen[:10] = x[:10]  # training points sit next to thresholds (midpoints of float32 values)
    with torch.no_grad():
        probs = part.probabilities(torch.as_tensor(unseen)).numpy()
    np.testing.assert_allclose(probs, fitted.predict_proba(unseen), rtol=0, atol=1e-12)
    assert part.trees == len(trees) and set(part.children_left.tolist()) >= {-1}


def test_auto_picks_per_task_and_per_label():
    rng = np.random.default_rng(0)
    n = 400
    flip, easy, tags = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 2, (n, 2))

    def confident(bits):  # a member score that separates the two classes clearly
        return 1 / (1 + np.exp(-(6 * (2 * bits - 1) + rng.normal(size=bits.shape))))

    # Tasks in order: flip (binary), easy (binary), tags (multi-label, 2 labels): 4 columns a member.
    good = np.column_stack([confident(flip), confident(easy), confident(tags)])
    # The second member has "flip" backwards: averaging it cancels out, a fitted meta-estimator turns it round.
    backwards = np.column_stack([1 - confident(flip), confident(easy), confident(tags[:, 0]), 1 - confident(tags[:, 1])])
    model = MODELS.get("stack")({"m1": 4, "m2": 4}, {"flip": 1, "easy": 1, "tags": 2})
    targets = {"flip": flip, "easy": easy, "tags": tags}
    parts, choices = fit_meta(model, np.concatenate([good, backwards], axis=1), targets,
                              {"flip": "binary", "easy": "binary", "tags": "multilabel"}, "auto", folds=5, seed=0)
    assert choices["flip"]["meta"] in ("logreg", "tree", "forest")
    assert choices["flip"]["cv_macro_f1"]["soft-vote"] < 0.8 < choices["flip"]["cv_macro_f1"][choices["flip"]["meta"]]
    assert choices["easy"]["meta"] == "soft-vote"  # every estimator is perfect: the simplest wins the tie
    assert [c["meta"] for c in choices["tags"]][0] == "soft-vote" and choices["tags"][1]["meta"] != "soft-vote"
    for choice in [choices["flip"], choices["easy"], *choices["tags"]]:
        best = max(choice["cv_macro_f1"].values())
        assert choice["cv_macro_f1"][choice["meta"]] == best
    model.fit_parts(parts).eval()
    assert [len(p) for p in model.parts] == [1, 1, 2]
    scores = {"m1": torch.as_tensor(good[:5], dtype=torch.float32), "m2": torch.as_tensor(backwards[:5], dtype=torch.float32)}
    with torch.no_grad():
        tags = to_outputs("multilabel", model(scores)["tags"])
    assert tags.shape == (5, 2)
    np.testing.assert_array_equal((tags >= 0.5).astype(int), targets["tags"][:5])  # both labels right on clear scores


def test_saved_buffers_load_into_a_fresh_stack(tmp_path):
    x, y = two_modalities(3)
    scores = {name: member_layout(cross_val_predict(est, x, y, cv=3, method="predict_proba")) for name, est in members()}
    heads, outputs = {"t": 3}, {}
    for meta in META.names():
        model, _ = stack_over(scores, y, "multiclass", meta)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / f"{meta}.safetensors"))
        fresh = MODELS.get("stack")({"a": 3, "b": 3}, heads)
        fresh.load_state_dict(load_file(str(tmp_path / f"{meta}.safetensors")))
        batch = {name: torch.as_tensor(s[:50], dtype=torch.float32) for name, s in scores.items()}
        with torch.no_grad():
            assert torch.equal(model(batch)["t"], fresh.eval()(batch)["t"]), meta
            outputs[meta] = fresh(batch)["t"]
    assert len({tuple(v[:, 0].tolist()) for v in outputs.values()}) == len(outputs)  # five different estimators


def test_inputs_that_are_not_member_scores_are_refused():
    from mmtk.errors import UsageError

    with pytest.raises(UsageError, match="member's scores"):
        MODELS.get("stack")({"a": 3, "b": 2}, {"t": 3})
    with pytest.raises(UsageError, match="unknown --meta 'boost'"):
        MODELS.get("stack")({"a": 3, "b": 3}, {"t": 3}, meta="boost")
