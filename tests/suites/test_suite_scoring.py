"""Metric suites score as their shared tasks define: hand-computed values on small
examples, scikit-learn on random data, Memotion's 5->3 sentiment and task B from task C,
MAMI's positives-weighted sub-task B, threshold tuning, custom suite files, and the
one-line errors for a missing mapping or an unknown label value."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from mmtk.errors import DataError, UsageError
from mmtk.suites import SUITES, get_suite
from mmtk.suites.scoring import tune_thresholds
from suite_fakes import one_hot, predictions, write_rows

SENTIMENT_CLASSES = ["negative", "neutral", "positive", "very_negative", "very_positive"]  # a run's sorted classes
HUMOUR_CLASSES = ["funny", "hilarious", "not_funny", "very_funny"]
LEVELS = {
    "sarcasm": ["general", "not_sarcastic", "twisted_meaning", "very_twisted"],
    "offensive": ["hateful_offensive", "not_offensive", "slight", "very_offensive"],
    "motivational": ["motivational", "not_motivational"],
}


def probs_over(classes: list[str], rows: list[dict[str, float]]) -> np.ndarray:
    return np.array([[row.get(c, 0.0) for c in classes] for row in rows])


def memotion_example(tmp_path):
    """Six memes; sentiment and humour predicted with the probabilities below, the other
    emotions predicted exactly (one-hot of the gold level)."""
    sentiment = ["very_negative", "negative", "neutral", "positive", "very_positive", "positive"]
    humour = ["not_funny", "funny", "very_funny", "hilarious", "funny", "not_funny"]
    others = {
        "sarcasm": ["not_sarcastic", "general", "twisted_meaning", "not_sarcastic", "very_twisted", "general"],
        "offensive": ["not_offensive", "slight", "very_offensive", "hateful_offensive", "not_offensive", "slight"],
        "motivational": ["not_motivational", "motivational", "not_motivational", "motivational", "not_motivational", "not_motivational"],
    }
    rows = [{"overall_sentiment": s, "humour": h, **{k: v[i] for k, v in others.items()}} for i, (s, h) in enumerate(zip(sentiment, humour))]
    path = write_rows(tmp_path, rows)
    heads = {
        "overall_sentiment": {"kind": "multiclass", "columns": ["overall_sentiment"], "classes": SENTIMENT_CLASSES, "outputs": probs_over(SENTIMENT_CLASSES, [
            {"very_negative": 0.3, "negative": 0.3, "neutral": 0.4},  # 5-level argmax neutral; negative 0.6 in 3 ways
            {"negative": 0.3, "neutral": 0.7},
            {"neutral": 0.9, "positive": 0.1},
            {"positive": 0.35, "very_positive": 0.35, "neutral": 0.3},
            {"negative": 0.8, "very_positive": 0.2},
            {"positive": 0.6, "neutral": 0.4},
        ])},
        "humour": {"kind": "multiclass", "columns": ["humour"], "classes": HUMOUR_CLASSES, "outputs": probs_over(HUMOUR_CLASSES, [
            {"not_funny": 0.6, "funny": 0.4},
            {"funny": 0.7, "not_funny": 0.3},
            {"very_funny": 0.4, "funny": 0.3, "not_funny": 0.3},
            {"not_funny": 0.4, "hilarious": 0.3, "very_funny": 0.3},  # most likely "not", yet present with 0.6
            {"hilarious": 0.5, "funny": 0.2, "not_funny": 0.3},
            {"funny": 0.45, "not_funny": 0.55},
        ])},
    }
    for emotion, gold in others.items():
        heads[emotion] = {"kind": "multiclass", "columns": [emotion], "classes": LEVELS[emotion], "outputs": one_hot([LEVELS[emotion].index(g) for g in gold], len(LEVELS[emotion]))}
    return predictions(path, heads)


def test_memotion_by_hand(tmp_path):
    result = get_suite("memotion")(memotion_example(tmp_path))
    tasks = result["tasks"]
    assert result["suite"] == "memotion" and result["n"] == 6
    assert list(tasks) == [
        "task_a", "task_b/humour", "task_b/sarcasm", "task_b/offensive", "task_b/motivational", "task_b",
        "task_c/humour", "task_c/sarcasm", "task_c/offensive", "task_c/motivational", "task_c",
    ]
    # Task A, 3 ways: gold neg neg neu pos pos pos; decisions (summed levels) neg neu neu pos neg pos.
    # negative TP1 FP1 FN1 -> 2/4 = 0.5; neutral TP1 FP1 FN0 -> 2/3; positive TP2 FP0 FN1 -> 4/5 = 0.8
    # macro (0.5 + 0.6667 + 0.8) / 3 = 0.65556; weighted by support 2, 1, 3: (1 + 0.6667 + 2.4) / 6 = 0.67778
    assert tasks["task_a"]["metrics"]["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert tasks["task_a"]["metrics"]["weighted_f1"] == pytest.approx((2 * 0.5 + 2 / 3 + 3 * 0.8) / 6)
    # Task C humour: gold nf f vf h f nf; decisions nf f vf nf h nf.
    # not_funny TP2 FP1 -> 4/5 = 0.8; funny TP1 FN1 -> 2/3; very_funny 1; hilarious TP0 -> 0
    # macro (0.8 + 0.6667 + 1 + 0) / 4 = 0.61667; weighted (2*0.8 + 2*0.6667 + 1 + 0) / 6 = 0.65556
    assert tasks["task_c/humour"]["metrics"]["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 4)
    assert tasks["task_c/humour"]["metrics"]["weighted_f1"] == pytest.approx((1.6 + 4 / 3 + 1) / 6)
    # Task B humour from the intensities: presence gold 0 1 1 1 1 0; present probability
    # 0.4 0.7 0.7 0.6 0.7 0.45 -> 0 1 1 1 1 0: every decision right (item 3's most
    # likely level is "not", but the levels above it hold 0.6).
    assert tasks["task_b/humour"]["metrics"] == {"macro_f1": 1.0, "weighted_f1": 1.0}
    for emotion in LEVELS:  # predicted exactly
        assert tasks[f"task_b/{emotion}"]["metrics"]["macro_f1"] == 1.0
        assert tasks[f"task_c/{emotion}"]["metrics"]["macro_f1"] == 1.0
    # Averages over the four emotions: B (1 + 1 + 1 + 1) / 4; C (0.61667 + 3) / 4 = 0.90417
    assert tasks["task_b"]["metrics"]["macro_f1"] == 1.0
    assert tasks["task_c"]["metrics"]["macro_f1"] == pytest.approx(((0.8 + 2 / 3 + 1) / 4 + 3) / 4)
    assert tasks["task_c"]["metrics"]["weighted_f1"] == pytest.approx(((1.6 + 4 / 3 + 1) / 6 + 3) / 4)


def test_memotion_three_level_sentiment_head_and_gold(tmp_path):
    """Data and head with 3 sentiment levels score the same as the merged 5."""
    sentiment = ["negative", "negative", "neutral", "positive", "positive", "positive"]
    five = memotion_example(tmp_path / "five")
    rows = [dict(r.values) | {"overall_sentiment": s} for r, s in zip(five.dataset.records, sentiment)]
    three_classes = ["negative", "neutral", "positive"]
    merged = five.tasks["overall_sentiment"].outputs @ np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    heads = {name: {"kind": t.kind, "columns": [name], "classes": t.classes, "outputs": t.outputs} for name, t in five.tasks.items()}
    heads["overall_sentiment"] = {"kind": "multiclass", "columns": ["overall_sentiment"], "classes": three_classes, "outputs": merged}
    three = predictions(write_rows(tmp_path / "three", [{k: v for k, v in r.items() if k not in ("id", "text")} for r in rows]), heads)
    suite = get_suite("memotion")
    assert suite(three)["tasks"]["task_a"] == suite(five)["tasks"]["task_a"]


def test_memotion_presence_head_is_used_for_task_b(tmp_path):
    """A binary presence head reading a 0/1 column scores task B; task C keeps the intensity head."""
    base = memotion_example(tmp_path / "a")
    rows = [{k: v for k, v in r.values.items() if k not in ("id", "text")} | {"funny": int(r.values["humour"] != "not_funny")} for r in base.dataset.records]
    heads = {name: {"kind": t.kind, "columns": [name], "classes": t.classes, "outputs": t.outputs} for name, t in base.tasks.items()}
    wrong_everywhere = one_hot([1, 0, 0, 0, 0, 1], 2)
    heads["funny"] = {"kind": "binary", "columns": ["funny"], "classes": [0, 1], "outputs": wrong_everywhere}
    scored = get_suite("memotion", {"task_b/humour": "funny"})(predictions(write_rows(tmp_path / "b", rows), heads))
    assert scored["tasks"]["task_b/humour"]["metrics"]["macro_f1"] == 0.0
    assert scored["tasks"]["task_c/humour"]["metrics"]["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 4)


def mami_example(tmp_path, *, multilabel_head: bool):
    gold = {
        "misogynous": [1, 1, 0, 0, 1],
        "shaming": [1, 0, 0, 0, 0],
        "stereotype": [1, 1, 0, 0, 1],
        "objectification": [0, 1, 0, 0, 1],
        "violence": [0, 0, 0, 0, 0],
    }
    decided = {
        "misogynous": [1, 0, 0, 1, 1],
        "shaming": [1, 0, 0, 0, 0],
        "stereotype": [1, 0, 0, 0, 1],
        "objectification": [0, 1, 0, 1, 0],
        "violence": [0, 0, 0, 0, 0],
    }
    path = write_rows(tmp_path, [{k: v[i] for k, v in gold.items()} for i in range(5)])
    heads = {"misogynous": {"kind": "binary", "columns": ["misogynous"], "classes": [0, 1], "outputs": one_hot(decided["misogynous"], 2) * 0.8 + 0.1}}
    types = ["shaming", "stereotype", "objectification", "violence"]
    if multilabel_head:
        heads["types"] = {"kind": "multilabel", "columns": types, "classes": types, "outputs": np.array([decided[t] for t in types]).T * 0.8 + 0.1}
    else:
        heads.update({t: {"kind": "binary", "columns": [t], "classes": [0, 1], "outputs": one_hot(decided[t], 2) * 0.8 + 0.1} for t in types})
    return predictions(path, heads)


@pytest.mark.parametrize("multilabel_head", [True, False])
def test_mami_by_hand(tmp_path, multilabel_head):
    tasks = get_suite("mami")(mami_example(tmp_path, multilabel_head=multilabel_head))["tasks"]
    # Sub-task A: class 1 TP2 FP1 FN1 -> 4/6; class 0 (gold 2,3; decided 1,2) TP1 FP1 FN1 -> 0.5
    assert tasks["sub_task_a"]["metrics"]["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    # Per type, the mean of both classes' F1 (positives in brackets):
    # shaming exact -> 1 (1); stereotype class 1 TP2 FN1 -> 0.8, class 0 TP2 FP1 -> 0.8 -> 0.8 (3);
    # objectification class 1 TP1 FP1 FN1 -> 0.5, class 0 TP2 FP1 FN1 -> 4/6 -> 0.58333 (2);
    # violence never present nor predicted: class 1 scores 0, class 0 1 -> 0.5 (0)
    expected = {"shaming": 1.0, "stereotype": 0.8, "objectification": (0.5 + 2 / 3) / 2, "violence": 0.5}
    for kind, value in expected.items():
        assert tasks[f"sub_task_b/{kind}"]["metrics"]["macro_f1"] == pytest.approx(value)
    # Weighted by positives: (1*1 + 3*0.8 + 2*0.58333 + 0*0.5) / 6 = 0.76111, where
    # scikit-learn's multilabel weighted F1 (positive class only) gives (1 + 2.4 + 1 + 0) / 6 = 0.7333.
    assert tasks["sub_task_b"]["metrics"]["weighted_f1"] == pytest.approx((1 + 2.4 + 2 * (0.5 + 2 / 3) / 2) / 6)


def test_hateful_memes_by_hand(tmp_path):
    positive = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    path = write_rows(tmp_path, [{"label": label} for label in [0, 0, 1, 1, 1, 0]])
    scored = get_suite("hateful-memes")(predictions(path, {"label": {"kind": "binary", "columns": ["label"], "classes": [0, 1], "outputs": np.stack([1 - positive, positive], 1)}}))
    # decisions 0 1 1 0 1 0: right on items 0, 2, 4, 5 -> 4/6. AUC: of the 9 (positive,
    # negative) pairs, 0.7 beats 3, 0.4 beats 2 (not 0.6), 0.9 beats 3 -> 8/9.
    assert scored == {"task": "hateful", "n": 6, "metrics": {"accuracy": pytest.approx(4 / 6), "roc_auc": pytest.approx(8 / 9)}, "suite": "hateful-memes"}


GENRES = ["Drama", "Comedy", "Horror"]
GENRE_GOLD = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]])
GENRE_PROBS = np.array([[0.9, 0.6, 0.1], [0.4, 0.7, 0.2], [0.2, 0.8, 0.3], [0.1, 0.2, 0.45]])


def genre_predictions(tmp_path, gold=GENRE_GOLD, probs=GENRE_PROBS, labels=GENRES, name="gold.jsonl"):
    path = write_rows(tmp_path, [{"genres": [g for g, on in zip(labels, row) if on]} for row in gold], name=name)
    return predictions(path, {"genres": {"kind": "multilabel", "columns": ["genres"], "classes": labels, "outputs": probs, "labels": gold}})


def test_mmimdb_by_hand(tmp_path):
    metrics = get_suite("mmimdb")(genre_predictions(tmp_path))["metrics"]
    # At 0.5: decided [D C] [C] [C] []. Drama TP1 FN1 -> 2/3 (support 2); Comedy TP2 FP1 -> 0.8 (2);
    # Horror TP0 FN1 -> 0 (1). micro: TP3 FP1 FN2 -> 6/9; macro (2/3 + 0.8 + 0) / 3;
    # weighted (2*2/3 + 2*0.8) / 5; samples: items 2/3, 2/3, 1, 0 -> 0.58333
    assert metrics == pytest.approx({
        "micro_f1": 6 / 9, "macro_f1": (2 / 3 + 0.8) / 3, "weighted_f1": (4 / 3 + 1.6) / 5, "samples_f1": (2 / 3 + 2 / 3 + 1) / 4,
    })


def test_moviescope_by_hand(tmp_path):
    metrics = get_suite("moviescope")(genre_predictions(tmp_path))["metrics"]
    # Every label's and every item's positives rank above its negatives: macro and samples AP 1.
    # Micro: all 12 scores ranked: .9 P, .8 P, .7 P, .6 N, .45 P, .4 P, ... -> precisions at the
    # positives 1, 1, 1, 4/5, 5/6 -> 0.92667
    assert metrics == pytest.approx({"micro_ap": (3 + 0.8 + 5 / 6) / 5, "macro_ap": 1.0, "samples_ap": 1.0})


def test_suites_match_scikit_learn_on_random_data(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    # Memotion: random levels and random probabilities over a 5-level sentiment head.
    sentiment = rng.choice(SENTIMENT_CLASSES, n)
    emotions = {"humour": HUMOUR_CLASSES, **LEVELS}
    gold = {name: rng.choice(levels, n) for name, levels in emotions.items()}
    rows = [{"overall_sentiment": sentiment[i], **{k: v[i] for k, v in gold.items()}} for i in range(n)]
    heads = {"overall_sentiment": {"kind": "multiclass", "columns": ["overall_sentiment"], "classes": SENTIMENT_CLASSES, "outputs": rng.dirichlet(np.ones(5), n)}}
    heads.update({k: {"kind": "multiclass", "columns": [k], "classes": v, "outputs": rng.dirichlet(np.ones(len(v)), n)} for k, v in emotions.items()})
    scored = get_suite("memotion")(predictions(write_rows(tmp_path / "memotion", rows), heads))["tasks"]
    three = {"very_negative": "negative", "very_positive": "positive"}
    merged = heads["overall_sentiment"]["outputs"] @ np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    gold_a = [three.get(s, s) for s in sentiment]
    decided_a = np.array(["negative", "neutral", "positive"])[merged.argmax(1)]
    assert scored["task_a"]["metrics"]["macro_f1"] == pytest.approx(f1_score(gold_a, decided_a, average="macro"))
    assert scored["task_a"]["metrics"]["weighted_f1"] == pytest.approx(f1_score(gold_a, decided_a, average="weighted"))
    c_scores, b_scores = [], []
    for emotion, levels in emotions.items():
        outputs = heads[emotion]["outputs"]
        decided = np.array(levels)[outputs.argmax(1)]
        c_scores.append(f1_score(gold[emotion], decided, average="macro"))
        assert scored[f"task_c/{emotion}"]["metrics"]["macro_f1"] == pytest.approx(c_scores[-1])
        not_level = levels.index(next(level for level in levels if level.startswith("not")))
        present = (outputs.sum(1) - outputs[:, not_level]) > outputs[:, not_level]
        b_scores.append(f1_score(gold[emotion] != levels[not_level], present, average="macro"))
        assert scored[f"task_b/{emotion}"]["metrics"]["macro_f1"] == pytest.approx(b_scores[-1])
    assert scored["task_c"]["metrics"]["macro_f1"] == pytest.approx(np.mean(c_scores))
    assert scored["task_b"]["metrics"]["macro_f1"] == pytest.approx(np.mean(b_scores))

    # MAMI: random 0/1 labels, random probabilities.
    columns = ["misogynous", "shaming", "stereotype", "objectification", "violence"]
    mami_gold = rng.integers(0, 2, (n, 5))
    probs = rng.random((n, 5))
    path = write_rows(tmp_path / "mami", [dict(zip(columns, map(int, row))) for row in mami_gold])
    heads = {c: {"kind": "binary", "columns": [c], "classes": [0, 1], "outputs": np.stack([1 - probs[:, i], probs[:, i]], 1)} for i, c in enumerate(columns)}
    mami = get_suite("mami")(predictions(path, heads))["tasks"]
    per_type = [f1_score(mami_gold[:, i], probs[:, i] > 0.5, average="macro") for i in range(1, 5)]
    assert mami["sub_task_a"]["metrics"]["macro_f1"] == pytest.approx(f1_score(mami_gold[:, 0], probs[:, 0] > 0.5, average="macro"))
    assert mami["sub_task_b"]["metrics"]["weighted_f1"] == pytest.approx(np.average(per_type, weights=mami_gold[:, 1:].sum(0)))

    # Hateful Memes, MM-IMDb and Moviescope.
    label = rng.integers(0, 2, n)
    positive = rng.random(n)
    path = write_rows(tmp_path / "hateful", [{"label": int(v)} for v in label])
    hateful = get_suite("hateful-memes")(predictions(path, {"label": {"kind": "binary", "columns": ["label"], "classes": [0, 1], "outputs": np.stack([1 - positive, positive], 1)}}))
    assert hateful["metrics"] == pytest.approx({"accuracy": np.mean((positive > 0.5) == label), "roc_auc": roc_auc_score(label, positive)})
    labels = [f"g{i}" for i in range(6)]
    genre_gold = rng.integers(0, 2, (n, 6))
    # Every item with a genre: scikit-learn's samples AP counts an item without positives
    # as 0, which mmtk (and the suite) leave out (mmtk.metrics).
    genre_gold[np.arange(n), rng.integers(0, 6, n)] = 1
    genre_probs = rng.random((n, 6))
    movies = genre_predictions(tmp_path / "movies", genre_gold, genre_probs, labels)
    f1s = get_suite("mmimdb")(movies)["metrics"]
    for average in ("micro", "macro", "weighted", "samples"):
        assert f1s[f"{average}_f1"] == pytest.approx(f1_score(genre_gold, genre_probs >= 0.5, average=average, zero_division=0))
    aps = get_suite("moviescope")(movies)["metrics"]
    for average in ("micro", "macro", "samples"):
        assert aps[f"{average}_ap"] == pytest.approx(average_precision_score(genre_gold, genre_probs, average=average))


def test_a_resample_scores_the_chosen_items(tmp_path):
    full = memotion_example(tmp_path)
    suite = get_suite("memotion")
    rows = [0, 0, 3, 5, 5, 2]
    assert suite(full, rows) == suite(full.subset(rows))
    assert suite(full, np.arange(6)) == suite(full)


def test_thresholds_tuned_on_validation_improve_or_keep_its_f1(tmp_path):
    rng = np.random.default_rng(1)
    labels = [f"g{i}" for i in range(5)]
    val_gold = rng.integers(0, 2, (200, 5))
    # Probabilities shifted low for some labels: 0.5 is a poor cut for them.
    shift = np.array([0.0, -0.3, -0.2, 0.2, 0.0])
    val_probs = np.clip(0.5 * val_gold + 0.5 * rng.random((200, 5)) - 0.25 + shift + 0.25, 0, 1)
    val = genre_predictions(tmp_path, val_gold, val_probs, labels, name="val.jsonl")
    suite = get_suite("mmimdb")
    tuned = suite.tuned([val])
    at_half, at_tuned = suite(val)["metrics"], tuned(val)
    assert at_tuned["metrics"]["macro_f1"] >= at_half["macro_f1"]
    assert at_tuned["metrics"]["macro_f1"] > at_half["macro_f1"]  # the shifted labels gain
    cut = tune_thresholds(val_gold, val_probs)
    assert at_tuned["thresholds"] == pytest.approx(dict(zip(labels, cut)))
    assert cut[1] < 0.5 and cut[2] < 0.5
    for label in range(5):  # each threshold is the best of the grid for its label
        best = max(f1_score(val_gold[:, label], val_probs[:, label] >= t) for t in np.arange(1, 100) / 100)
        assert f1_score(val_gold[:, label], val_probs[:, label] >= cut[label]) == pytest.approx(best)


def test_tuning_needs_a_multilabel_task():
    with pytest.raises(UsageError, match="no multi-label task"):
        get_suite("hateful-memes").tuned([])


def test_a_missing_head_names_task_column_and_the_fix(tmp_path):
    path = write_rows(tmp_path, [{"label": 0}, {"label": 1}])
    run_predictions = predictions(path, {"label": {"kind": "binary", "columns": ["label"], "classes": [0, 1], "outputs": one_hot([0, 1], 2)}})
    with pytest.raises(UsageError) as caught:
        get_suite("mami")(run_predictions)
    assert "task 'sub_task_a'" in str(caught.value) and "'misogynous'" in str(caught.value) and "--suite-map sub_task_a=COLUMN" in str(caught.value)
    mapped = get_suite("mami", {"sub_task_a": "label"}).tasks[0]
    assert mapped.column == "label"


def test_data_lacking_the_column_names_task_column_and_the_fix(tmp_path):
    path = write_rows(tmp_path, [{"target": 0}, {"target": 1}])
    run_predictions = predictions(path, {"label": {"kind": "binary", "columns": ["label"], "classes": [0, 1], "outputs": one_hot([0, 1], 2)}})
    with pytest.raises(UsageError) as caught:
        get_suite("hateful-memes")(run_predictions)
    assert "'hateful'" in str(caught.value) and "column 'label'" in str(caught.value) and "--suite-map hateful=COLUMN" in str(caught.value)


def test_a_value_outside_the_levels_names_file_line_and_the_allowed_values(tmp_path):
    example = memotion_example(tmp_path / "ok")
    rows = [{k: v for k, v in r.values.items() if k not in ("id", "text")} for r in example.dataset.records]
    rows[3]["humour"] = "very_hilarious"
    path = write_rows(tmp_path / "bad", rows)
    heads = {name: {"kind": t.kind, "columns": [name], "classes": t.classes, "outputs": t.outputs} for name, t in example.tasks.items()}
    with pytest.raises(DataError) as caught:
        get_suite("memotion")(predictions(path, heads))
    message = str(caught.value)
    assert f"{path}:4" in message and "'very_hilarious'" in message and "not_funny, funny, very_funny, hilarious" in message


def test_a_head_with_other_classes_is_refused(tmp_path):
    path = write_rows(tmp_path, [{"label": 0}, {"label": 1}])
    run_predictions = predictions(path, {"label": {"kind": "binary", "columns": ["label"], "classes": ["no", "yes"], "outputs": one_hot([0, 1], 2)}})
    with pytest.raises(UsageError, match="run task 'label' predicts 'no'"):
        get_suite("hateful-memes")(run_predictions)


def test_an_unknown_mapping_key_lists_the_valid_ones():
    with pytest.raises(UsageError, match="neither a task nor a column.*map one of: hateful, label"):
        get_suite("hateful-memes", {"sentiment": "x"})


def test_an_unknown_suite_lists_the_registered_ones():
    with pytest.raises(UsageError, match="unknown suite 'memotoin'.*hateful-memes, mami, memotion, mmimdb, moviescope"):
        get_suite("memotoin")
    assert SUITES.names() == ["hateful-memes", "mami", "memotion", "mmimdb", "moviescope"]


CUSTOM = """
name = "sentiment-and-humour"

[[tasks]]
name = "sentiment"
column = "overall_sentiment"
kind = "multiclass"
levels = ["very_negative", "negative", "neutral", "positive", "very_positive"]
merge = { very_negative = "negative", very_positive = "positive" }
metrics = ["macro_f1", "accuracy"]

[[tasks]]
name = "funny"
column = "humour"
kind = "binary"
levels = ["not_funny", "funny", "very_funny", "hilarious"]
absent = ["not_funny"]
metrics = ["macro_f1", "f1"]

[[averages]]
name = "overall"
of = ["sentiment", "funny"]
metrics = { mean_f1 = "macro_f1" }
"""


def test_a_custom_toml_suite(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(CUSTOM)
    suite = get_suite(path)
    assert suite.name == "sentiment-and-humour"
    assert suite.metric_names() == {"sentiment": ("macro_f1", "accuracy"), "funny": ("macro_f1", "f1"), "overall": ("mean_f1",)}
    tasks = suite(memotion_example(tmp_path / "data"))["tasks"]
    # the same definitions as memotion's task A and task B humour (values above);
    # accuracy: 4 of 6 sentiment decisions right (items 0, 2, 3, 5)
    assert tasks["sentiment"]["metrics"] == pytest.approx({"macro_f1": (0.5 + 2 / 3 + 0.8) / 3, "accuracy": 4 / 6})
    assert tasks["funny"]["metrics"] == {"macro_f1": 1.0, "f1": 1.0}
    assert tasks["overall"]["metrics"]["mean_f1"] == pytest.approx(((0.5 + 2 / 3 + 0.8) / 3 + 1) / 2)
    json_suite = tmp_path / "mine.json"
    import json
    import tomllib

    json_suite.write_text(json.dumps(tomllib.loads(CUSTOM)))
    assert get_suite(json_suite)(memotion_example(tmp_path / "again"))["tasks"] == tasks


def test_the_bundled_example_suite_file_loads():
    from pathlib import Path

    suite = get_suite(Path(__file__).parents[2] / "examples" / "suites" / "memes.toml")
    assert suite.metric_names()["sarcasm"] == ("accuracy", "macro_f1", "weighted_f1", "roc_auc")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[[tasks]]\nname = 'a'\ncolumn = 'c'\nkind = 'binary'\nmetrics = ['macro_f9']\n", "unknown metric 'macro_f9'"),
        ("[[tasks]]\nname = 'a'\ncolumn = 'c'\nkind = 'ordinal'\nmetrics = ['macro_f1']\n", "unknown kind 'ordinal'"),
        ("[[tasks]]\nname = 'a'\ncolumn = 'c'\nkind = 'multiclass'\nmetrics = ['macro_f1']\n", "needs its 'levels'"),
        ("[[tasks]]\nname = 'a'\ncolumn = 'c'\nkind = 'binary'\nmetric = ['f1']\n", "unknown key 'metric'"),
        ("[[tasks]]\nname = 'a'\ncolumn = 'c'\nkind = 'binary'\nmetrics = ['f1']\n[[averages]]\nname = 'm'\nof = ['b']\nmetrics = ['f1']\n", "unknown task 'b'"),
        ("tasks = [\n", "does not parse"),
    ],
)
def test_a_bad_suite_file_is_one_line_naming_it(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        get_suite(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_fail_under_names_and_gates_come_from_the_suite(tmp_path):
    from mmtk.metrics import check_threshold_names, check_thresholds, parse_fail_under

    suite = get_suite("mmimdb")
    known = suite.metric_names()
    assert check_threshold_names([parse_fail_under("weighted_f1=0.5")], known) == ["genres"]  # not a multilabel kind's metric
    with pytest.raises(UsageError, match="unknown metric 'micro_ap' for suite task 'genres'.*micro_f1, macro_f1, weighted_f1, samples_f1"):
        check_threshold_names([parse_fail_under("genres.micro_ap=0.5")], known)
    result = suite(genre_predictions(tmp_path / "g"))
    assert check_thresholds(result, [parse_fail_under("weighted_f1=0.58")], known) == []
    assert check_thresholds(result, [parse_fail_under("weighted_f1=0.59")], known) == ["weighted_f1 = 0.5867 is below the required 0.59"]
    # ROC-AUC left out on one class is a miss (exit 1), not an unknown name (exit 2).
    path = write_rows(tmp_path / "h", [{"label": 1}, {"label": 1}])
    one_class = get_suite("hateful-memes")(predictions(path, {"label": {"kind": "binary", "columns": ["label"], "classes": [0, 1], "outputs": one_hot([1, 0], 2)}}))
    assert "roc_auc" not in one_class["metrics"]
    misses = check_thresholds(one_class, [parse_fail_under("roc_auc=0.5")], get_suite("hateful-memes").metric_names())
    assert misses == ["roc_auc is undefined on this data (e.g. one class only), required 0.5"]
