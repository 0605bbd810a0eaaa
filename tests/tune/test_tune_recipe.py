"""`mmtk.tune.tune` on a tiny synthetic store: the best configuration is the table's
best trial, a study resumes with only the missing trials, the median pruner stops bad
trials, k-fold scores are the folds' mean, and a changed space is refused."""

from __future__ import annotations

import csv
import json
import math

import pytest

from synthetic_features import store_xor_features, write_xor_dataset

from mmtk.errors import UsageError
from mmtk.tune.recipe import PRUNE_WARMUP

FEATURES = ["efficientnet-lite0", "minilm"]
# lr from far too small to far too large: some trials are clearly bad.
SPACE = "lr: {type: float, low: 1.0e-6, high: 1.0, log: true}\nhidden: {type: int, low: 4, high: 32, log: true}\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from mmtk.data import read_dataset
    from mmtk.store import FeatureStore

    root = tmp_path_factory.mktemp("tune")
    dataset = read_dataset(write_xor_dataset(root, "train", 120, seed=1))
    store = FeatureStore(root / "store")
    store_xor_features(dataset, store, seed=3)
    space = root / "space.yaml"
    space.write_text(SPACE)
    return {"dataset": dataset, "store": store, "space": space}


def run(data, out, trials, **options):
    from mmtk.tune import tune

    settings = dict(features=FEATURES, model="concat", tasks=["label:binary"], space=data["space"], store=data["store"],
                    epochs=6, prune_startup=2, seed=0)
    settings.update(options)
    return tune(data["dataset"], trials=trials, out=out, **settings)


def test_best_config_is_the_best_trial_of_the_table(data, tmp_path):
    report = run(data, tmp_path / "t", 5, metric="accuracy", command=["mmtk", "train", "train.jsonl"])
    rows = json.loads((tmp_path / "t" / "trials.json").read_text())
    assert [row["number"] for row in rows] == list(range(5)) and report.ran == 5
    complete = [row for row in rows if row["state"] == "complete"]
    best_row = max(complete, key=lambda row: row["value"])  # accuracy: higher is better
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert best["value"] == best_row["value"] == max(row["value"] for row in complete)
    assert best["params"] == best_row["params"] and best["direction"] == "maximize"
    assert best["train_arguments"]["lr"] == best_row["params"]["lr"]
    assert best["train_arguments"]["model_args"] == {"hidden": best_row["params"]["hidden"]}
    assert best["argv"][-4:] == ["--monitor", "accuracy", "--out", str(tmp_path / "t" / "best-run")]
    assert ["--model-arg", f"hidden={best_row['params']['hidden']}"] == best["argv"][-6:-4]
    with open(tmp_path / "t" / "trials.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in table] == list(range(5))
    assert {r["state"] for r in table} <= {"complete", "pruned"}
    assert float(table[best_row["number"]]["value"]) == pytest.approx(best_row["value"])
    assert list(table[0])[:7] == ["number", "state", "value", "epochs", "duration_s", "lr", "hidden"]


@pytest.mark.parametrize("metric, val_split, used, direction", [
    ("auto", 0.5, "macro_f1", "maximize"),  # 60 validation items
    ("auto", 0.2, "val_loss", "minimize"),  # 24: auto keeps the loss under 50, as train does
    (None, 0.2, "val_loss", "minimize"),
])
def test_the_best_command_names_the_monitor_the_trials_used(data, tmp_path, metric, val_split, used, direction):
    # train's --monitor defaults to auto: a val_loss study must still say val_loss.
    report = run(data, tmp_path / "t", 2, metric=metric, val_split=val_split, command=["mmtk", "train", "train.jsonl"])
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert (report.metric, best["metric"], best["direction"], best["train_arguments"]["monitor"]) == (used, used, direction, used)
    assert best["argv"][-4:-2] == ["--monitor", used]


def test_median_pruning_stops_clearly_bad_trials(data, tmp_path):
    report = run(data, tmp_path / "p", 8)
    pruned = [row for row in report.rows if row["state"] == "pruned"]
    complete = [row for row in report.rows if row["state"] == "complete"]
    assert pruned, report.rows
    # Pruned mid-training: fewer epochs than any complete trial, and no value.
    assert all(row["epochs"] < min(c["epochs"] for c in complete) and row["value"] is None for row in pruned)
    assert all(row["epochs"] > PRUNE_WARMUP for row in pruned)  # never during the warm-up epochs
    assert report.counts == {"complete": len(complete), "pruned": len(pruned)}
    unpruned = run(data, tmp_path / "np", 5, pruning=False)
    assert unpruned.counts == {"complete": 5}


def test_a_study_resumes_with_only_the_missing_trials(data, tmp_path):
    first = run(data, tmp_path / "r", 3)
    assert first.ran == 3
    again = run(data, tmp_path / "r", 5)
    assert again.ran == 2 and [row["number"] for row in again.rows] == [0, 1, 2, 3, 4]
    assert [row["params"] for row in again.rows[:3]] == [row["params"] for row in first.rows]  # the earlier trials kept
    assert run(data, tmp_path / "r", 5).ran == 0
    # The sampler is seeded by the seed and the history's length: resuming is reproducible.
    run(data, tmp_path / "w", 3)
    twin = run(data, tmp_path / "w", 5)
    assert [row["params"] for row in twin.rows] == [row["params"] for row in again.rows]


def test_a_trial_left_running_by_a_killed_process_is_run_again(data, tmp_path):
    import optuna

    from mmtk.tune import load_space

    run(data, tmp_path / "k", 2)
    study = optuna.load_study(study_name="mmtk-tune", storage=f"sqlite:///{tmp_path / 'k' / 'study.db'}")
    killed = study.ask()
    load_space(data["space"], "concat").suggest(killed)  # drew its settings, then the process died
    report = run(data, tmp_path / "k", 3)
    assert report.ran == 1
    states = {row["number"]: row for row in report.rows}
    assert states[killed.number]["state"] == "fail" and "interrupted" in states[killed.number]["error"]
    assert states[3]["params"] == killed.params and states[3]["state"] in ("complete", "pruned")


def test_another_space_or_metric_against_an_existing_study_is_refused(data, tmp_path):
    run(data, tmp_path / "s", 1)
    other = tmp_path / "other.yaml"
    other.write_text("lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    with pytest.raises(UsageError, match=r"study\.db: the study searched another space \(hidden, lr differ\)"):
        run(data, tmp_path / "s", 2, space=other)
    with pytest.raises(UsageError, match=r"the study was made with other settings \(metric differ\)"):
        run(data, tmp_path / "s", 2, metric="accuracy")


def test_k_fold_scores_a_trial_by_the_mean_of_its_folds(data, tmp_path):
    report = run(data, tmp_path / "f", 2, folds=3, metric="accuracy", pruning=False)
    for row in report.rows:
        assert len(row["fold_values"]) == 3
        assert row["value"] == pytest.approx(sum(row["fold_values"]) / 3)
        assert row["epochs"] == 3 * 6


def test_a_metric_the_tasks_do_not_report_and_a_fixed_tuned_key_are_refused(data, tmp_path):
    with pytest.raises(UsageError, match="--metric 'rmse' is not reported for these tasks"):
        run(data, tmp_path / "m", 2, metric="rmse")
    with pytest.raises(UsageError, match="hidden is both tuned and fixed"):
        run(data, tmp_path / "m", 2, model_args={"hidden": "8"})
    assert not (tmp_path / "m").exists()  # refused before any study was made


def test_a_diverging_trial_is_recorded_as_failed_and_the_study_goes_on(data, tmp_path):
    space = tmp_path / "wild.yaml"
    space.write_text("lr: {type: categorical, choices: [1.0e+30, 0.01]}\n")
    report = run(data, tmp_path / "d", 4, space=space, pruning=False)
    states = {row["params"]["lr"]: row for row in report.rows}
    assert states[1e30]["state"] == "fail" and states[1e30]["error"].startswith("diverged: training diverged")
    assert states[0.01]["state"] == "complete" and math.isfinite(states[0.01]["value"])
    assert report.best["params"] == {"lr": 0.01}


def test_one_process_works_a_study_at_a_time(data, tmp_path):
    from mmtk.tune.study import study_lock

    with study_lock(tmp_path / "l" / "study.db"):  # another mmtk tune holds it
        with pytest.raises(UsageError, match="another mmtk tune is working on this study"):
            run(data, tmp_path / "l", 1)
    assert run(data, tmp_path / "l", 1).ran == 1


def test_changed_tabular_columns_are_other_settings(data, tmp_path):
    from mmtk.tabular.spec import TabularSpec

    features = [*FEATURES, "tabular"]
    assert run(data, tmp_path / "tab", 1, features=features, tabular=TabularSpec(num_cols=("p",))).ran == 1
    with pytest.raises(UsageError, match=r"other settings \(options differ\)"):
        run(data, tmp_path / "tab", 2, features=features, tabular=TabularSpec(num_cols=("q",)))
