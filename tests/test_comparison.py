"""``mmtk.comparison``: runs compared on the items they share, with the JSON shape the
report renders, seeded intervals, the paired test, the scorer seam and run globs."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.comparison import add_intervals, bootstrap_values, compare_predictions, expand_runs, run_labels
from mmtk.errors import DataError, UsageError
from mmtk.evaluate import RunPredictions, TaskPredictions, score_predictions

N = 120


def labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, N)


def run(accuracy: float, seed: int, *, y=None, ids=None, task: str = "label") -> RunPredictions:
    """Predictions of a binary run right on about ``accuracy`` of the items."""
    rng = np.random.default_rng(seed)
    y = labels() if y is None else y
    right = rng.random(len(y)) < accuracy
    p = np.where(right == (y == 1), rng.uniform(0.5, 1, len(y)), rng.uniform(0, 0.5, len(y)))
    ids = [f"item{i}" for i in range(len(y))] if ids is None else ids
    return RunPredictions(run=None, dataset=None, ids=ids, tasks={task: TaskPredictions(task, "binary", ["0", "1"], y, np.stack([1 - p, p], axis=1))})


def test_json_shape_is_the_one_the_report_renders():
    result = compare_predictions([run(0.6, 1), run(0.9, 2)], names=["runs/a", "runs/b"], data="test.jsonl", bootstrap=200, seed=3)
    assert list(result) == ["data", "n", "bootstrap", "seed", "confidence", "suite", "runs"]
    assert (result["data"], result["n"], result["bootstrap"], result["seed"], result["confidence"], result["suite"]) == (
        "test.jsonl", N, 200, 3, 0.95, None
    )
    first, second = result["runs"]
    assert list(first) == ["run", "result", "intervals"] and list(second) == ["run", "result", "intervals", "vs_first"]
    assert first["run"] == "runs/a" and first["result"] == score_predictions(run(0.6, 1))
    metrics = first["result"]["metrics"]
    assert set(first["intervals"]["label"]) == set(metrics)
    for name, (low, high) in first["intervals"]["label"].items():
        assert low <= metrics[name] <= high
    versus = second["vs_first"]["label"]["accuracy"]
    assert versus["difference"] == pytest.approx(second["result"]["metrics"]["accuracy"] - metrics["accuracy"])
    assert versus["p_value"] < 0.05  # 0.9 against 0.6 on 120 items


def test_identical_runs_differ_by_zero_with_p_one():
    result = compare_predictions([run(0.7, 1), run(0.7, 1)], names=["a", "b"], bootstrap=300)
    for entry in result["runs"][1]["vs_first"]["label"].values():
        assert entry == {"difference": 0.0, "p_value": 1.0}
    assert result["runs"][0]["intervals"] == result["runs"][1]["intervals"]


def test_the_seed_names_the_resamples():
    runs = [run(0.6, 1), run(0.8, 2)]
    once = compare_predictions(runs, names=["a", "b"], bootstrap=100, seed=7)
    assert compare_predictions(runs, names=["a", "b"], bootstrap=100, seed=7) == once
    assert compare_predictions(runs, names=["a", "b"], bootstrap=100, seed=8)["runs"][0]["intervals"] != once["runs"][0]["intervals"]


def test_items_are_aligned_by_id_not_by_position():
    y = labels()
    first, second = run(0.6, 1, y=y), run(0.9, 2, y=y)
    shuffled = second.subset(np.random.default_rng(4).permutation(N))
    assert shuffled.ids != second.ids
    in_order = compare_predictions([first, second], names=["a", "b"], bootstrap=100)
    assert compare_predictions([first, shuffled], names=["a", "b"], bootstrap=100) == in_order


def test_runs_that_scored_different_items_are_compared_on_the_common_ones():
    first, second = run(0.6, 1), run(0.9, 2)
    lacking = second.subset(np.arange(10, N))  # skipped its first 10 items
    notes = []
    result = compare_predictions([first, lacking], names=["a", "b"], bootstrap=100, notify=notes.append)
    assert result["n"] == N - 10
    assert result["runs"][0]["result"] == score_predictions(first, np.arange(10, N))
    assert len(notes) == 1 and notes[0].startswith("run a: 10 of its 120 items are not scored by every run (e.g. 'item0')")
    with pytest.raises(DataError, match="no item in common"):
        compare_predictions([first.subset(np.arange(5)), second.subset(np.arange(5, N))], names=["a", "b"])


def test_runs_must_predict_the_same_tasks():
    with pytest.raises(UsageError, match="run b does not predict task 'label', which run a predicts"):
        compare_predictions([run(0.6, 1), run(0.6, 2, task="sentiment")], names=["a", "b"])


def test_every_run_gets_the_same_resamples_so_the_test_is_paired():
    # The first run's values do not depend on which runs come after it.
    alone = compare_predictions([run(0.6, 1), run(0.6, 1)], names=["a", "b"], bootstrap=100, seed=2)
    with_more = compare_predictions([run(0.6, 1), run(0.9, 2), run(0.5, 3)], names=["a", "b", "c"], bootstrap=100, seed=2)
    assert alone["runs"][0]["intervals"] == with_more["runs"][0]["intervals"]


def test_any_scorer_plugs_in_and_gives_what_the_vectorised_default_gives():
    """The seam a metric suite uses: called once per resample with the resample's indices."""
    calls = []

    def scorer(predictions, indices):
        calls.append(indices)
        return score_predictions(predictions, indices)

    scorer.name = "plain"
    runs = [run(0.6, 1), run(0.8, 2)]
    by_scorer = compare_predictions(runs, names=["a", "b"], scorer=scorer, bootstrap=50, seed=5)
    default = compare_predictions(runs, names=["a", "b"], bootstrap=50, seed=5)
    assert by_scorer["suite"] == "plain" and len(calls) == 2 * (1 + 50)
    assert flat(by_scorer["runs"][1]["vs_first"]) == pytest.approx(flat(default["runs"][1]["vs_first"]))
    for a, b in zip(by_scorer["runs"], default["runs"]):
        assert flat(a["intervals"]) == pytest.approx(flat(b["intervals"]))


def flat(tree, prefix="") -> dict:
    """A nested dict of numbers (or pairs) as {"a.b.c": number}, for pytest.approx."""
    if isinstance(tree, dict):
        return {key: value for name, sub in tree.items() for key, value in flat(sub, f"{prefix}{name}.").items()}
    if isinstance(tree, list):
        return {f"{prefix}{i}": value for i, value in enumerate(tree)}
    return {prefix: tree}


def test_a_scorer_with_score_resamples_is_not_called_per_resample():
    def scorer(predictions, indices):
        assert indices is None, "called per resample"
        return score_predictions(predictions)

    scorer.score_resamples = lambda predictions, counts: {"label": {"accuracy": counts[:, 0] / N}}
    values = bootstrap_values(run(0.6, 1), scorer=scorer, bootstrap=30)
    assert values["label"]["accuracy"].shape == (30,)


def test_add_intervals_puts_them_beside_the_metrics():
    predictions = run(0.7, 1)
    result = add_intervals(score_predictions(predictions), predictions, bootstrap=100)
    assert set(result["intervals"]) == set(result["metrics"])
    with pytest.raises(UsageError, match="--bootstrap 0"):
        bootstrap_values(predictions, bootstrap=0)


def test_globs_expand_to_run_folders_and_skip_files(tmp_path):
    for name in ("gmu", "concat"):
        (tmp_path / "cmp" / name).mkdir(parents=True)
    (tmp_path / "cmp" / "comparison.csv").write_text("model\n")
    runs, skipped = expand_runs([f"{tmp_path}/cmp/*"])
    assert runs == [tmp_path / "cmp" / "concat", tmp_path / "cmp" / "gmu"] and skipped == [tmp_path / "cmp" / "comparison.csv"]
    # Expanded by the shell: the same runs.
    shell = sorted(str(path) for path in (tmp_path / "cmp").iterdir())
    assert expand_runs(shell)[0] == runs
    lone = tmp_path / "cmp" / "comparison.csv"
    assert expand_runs([lone]) == ([lone], [])  # load_run says what is wrong with it
    with pytest.raises(UsageError, match="matches nothing"):
        expand_runs([f"{tmp_path}/nothing/*"])


def test_run_labels_are_the_shortest_distinct_suffixes():
    assert run_labels(["runs/cmp/gmu", "runs/cmp/concat"]) == ["gmu", "concat"]
    assert run_labels(["a/gmu", "b/gmu", "c/concat"]) == ["a/gmu", "b/gmu", "c/concat"]
    assert run_labels(["runs/gmu", "runs/gmu"]) == ["runs/gmu", "runs/gmu"]
