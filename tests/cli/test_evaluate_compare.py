"""`mmtk evaluate RUN1 RUN2 ... DATA`: tiny runs of the zoo's comparison folder compared
from the shell, by glob or by name, with --json, --fail-under per run, tasks and items
that differ; and `mmtk evaluate RUN DATA` as before, with intervals on --bootstrap."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from synthetic_features import store_xor_features, write_xor_dataset


def mmtk(*args, env, cwd):
    """``mmtk ARGS`` run in ``cwd`` (in-process: a subprocess per call costs seconds of imports)."""
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(arg) for arg in args], env=env)
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """``cmp/`` as `mmtk train --model concat,gmu --out cmp` writes it (both modalities),
    ``text-only`` (chance on XOR labels), and ``two-tasks`` (also predicts ``p``), all on
    synthetic features of 200 training items; 60 test items."""
    from mmtk.data import read_dataset
    from mmtk.store import FeatureStore

    root = tmp_path_factory.mktemp("zoo")
    train, test = write_xor_dataset(root, "train", 200, seed=1), write_xor_dataset(root, "test", 60, seed=2)
    store = FeatureStore(root / "store")
    store_xor_features(read_dataset(train), store, seed=3)
    store_xor_features(read_dataset(test), store, seed=4)
    env = {"MMTK_STORE": str(root / "store"), "COLUMNS": "100"}
    common = ["--task", "label:binary", "--epochs", "30", "--quiet"]
    for features, model, out, extra in (
        ("efficientnet-lite0,minilm", "concat,gmu", "cmp", []),
        ("minilm", "concat", "text-only", []),
        ("efficientnet-lite0,minilm", "concat", "two-tasks", ["--task", "p:binary"]),
    ):
        made = mmtk("train", train, "--features", features, "--model", model, "--out", out, *common, *extra, env=env, cwd=root)
        assert made.exit_code == 0, made.output
    return {"root": root, "env": env, "test": "test.jsonl"}


def evaluate(zoo, *args):
    return mmtk("evaluate", *args, env=zoo["env"], cwd=zoo["root"])


def test_a_glob_of_the_zoo_folder_compares_its_runs(zoo):
    result = evaluate(zoo, "cmp/*", zoo["test"], "--json", "--bootstrap", "300", "--seed", "4")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["data"], document["n"], document["bootstrap"], document["seed"], document["suite"]) == ("test.jsonl", 60, 300, 4, None)
    assert [entry["run"] for entry in document["runs"]] == ["cmp/concat", "cmp/gmu"]  # comparison.csv is no run
    for entry in document["runs"]:
        alone = json.loads(evaluate(zoo, entry["run"], zoo["test"], "--json").stdout)
        assert entry["result"] == alone  # the same figures as evaluating the run by itself
        for metric, (low, high) in entry["intervals"]["label"].items():
            assert low <= alone["metrics"][metric] <= high
    assert set(document["runs"][1]["vs_first"]["label"]) == set(document["runs"][0]["result"]["metrics"])
    # The shell's expansion of cmp/* (comparison.csv included) gives the same comparison.
    expanded = sorted(str(path.relative_to(zoo["root"])) for path in (zoo["root"] / "cmp").iterdir())
    assert "cmp/comparison.csv" in expanded
    again = evaluate(zoo, *expanded, zoo["test"], "--json", "--bootstrap", "300", "--seed", "4")
    assert json.loads(again.stdout) == document


def test_the_table_has_a_row_per_run_and_the_test_against_the_first(zoo):
    result = evaluate(zoo, "cmp/gmu", "text-only", zoo["test"], "--bootstrap", "200")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "label on test.jsonl (n=60)"
    assert max(len(line) for line in lines if "bootstrap resamples" not in line) <= 100
    rows = [line.split()[0] for line in lines if line.startswith(" ") and line.split() and line.split()[0] in ("gmu", "text-only")]
    assert rows == ["gmu", "text-only"]
    assert result.stdout.count("Δ ") == 6 and result.stdout.count("p ") >= 6  # six metrics, one run against the first
    assert "difference to gmu, p: paired bootstrap test" in " ".join(result.stdout.split())


def test_a_run_that_learnt_beats_one_at_chance(zoo):
    document = json.loads(evaluate(zoo, "text-only", "cmp/gmu", zoo["test"], "--json").stdout)
    chance, fusion = (entry["result"]["metrics"]["accuracy"] for entry in document["runs"])
    assert fusion > chance + 0.2
    assert document["runs"][1]["vs_first"]["label"]["accuracy"]["p_value"] < 0.05


def test_fail_under_applies_to_every_run_and_names_the_ones_that_miss(zoo):
    document = json.loads(evaluate(zoo, "text-only", "cmp/gmu", zoo["test"], "--json").stdout)
    best = max(entry["result"]["metrics"]["accuracy"] for entry in document["runs"])
    result = evaluate(zoo, "text-only", "cmp/gmu", zoo["test"], "--fail-under", f"accuracy={best}")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: text-only: accuracy = ") and "cmp/gmu" not in result.stderr
    assert result.stderr.count("\n") == 1
    passed = evaluate(zoo, "text-only", "cmp/gmu", zoo["test"], "--fail-under", "accuracy=0.1", "--bootstrap", "20")
    assert passed.exit_code == 0, passed.stderr
    refused = evaluate(zoo, "text-only", "cmp/gmu", zoo["test"], "--fail-under", "macro_f=0.1")
    assert refused.exit_code == 2 and "unknown metric 'macro_f'" in refused.stderr


def test_runs_predicting_other_tasks_are_refused_naming_run_and_task(zoo):
    result = evaluate(zoo, "cmp/gmu", "two-tasks", zoo["test"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "run cmp/gmu does not predict task 'p', which run two-tasks predicts" in result.stderr


def test_runs_that_score_different_items_are_compared_on_the_common_ones(zoo, tmp_path):
    """A run trained with --missing-modality skip leaves out items without a picture;
    the other run scores them all: both are compared on the items both scored."""
    root, env = zoo["root"], zoo["env"]
    skipping = tmp_path / "skipping"
    made = mmtk("train", "train.jsonl", "--features", "efficientnet-lite0,minilm", "--model", "concat", "--task", "label:binary",
                "--epochs", "2", "--missing-modality", "skip", "--quiet", "--out", skipping, env=env, cwd=root)
    assert made.exit_code == 0, made.stderr
    rows = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    for row in rows[:5]:
        row["img"] = ""
    shutil.copytree(root / "test_img", tmp_path / "test_img")
    (tmp_path / "gaps.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = mmtk("evaluate", root / "text-only", skipping, tmp_path / "gaps.jsonl", "--json", "--bootstrap", "50", env=env, cwd=root)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["n"] == 55
    assert document["runs"][0]["result"]["n"] == 55
    assert f"run {root / 'text-only'}: 5 of its 60 items are not scored by every run (e.g. 'test-0'); comparing on the 55" in result.stderr


def test_one_run_is_evaluated_as_before_and_gets_intervals_on_request(zoo):
    plain = evaluate(zoo, "cmp/gmu", zoo["test"], "--json")
    assert plain.exit_code == 0, plain.stderr
    assert set(json.loads(plain.stdout)) == {"task", "n", "metrics"}
    with_intervals = evaluate(zoo, "cmp/gmu", zoo["test"], "--json", "--bootstrap", "100", "--seed", "2")
    document = json.loads(with_intervals.stdout)
    assert document["metrics"] == json.loads(plain.stdout)["metrics"]
    assert set(document["intervals"]) == set(document["metrics"])
    assert json.loads(evaluate(zoo, "cmp/gmu", zoo["test"], "--json", "--bootstrap", "100", "--seed", "2").stdout) == document
    table = evaluate(zoo, "cmp/gmu", zoo["test"], "--bootstrap", "100")
    assert "[low, high]: 95% bootstrap percentile intervals" in table.stdout
    assert f"{document['metrics']['accuracy']:.4f} [" in table.stdout


def test_usage_errors_are_one_line(zoo):
    lone = evaluate(zoo, "cmp/gmu")
    assert lone.exit_code == 2 and lone.stderr.count("\n") == 1
    assert "takes one or more run directories, then DATA" in lone.stderr
    stdin = evaluate(zoo, "cmp/gmu", "text-only", "-")
    assert stdin.exit_code == 2 and "standard input" in stdin.stderr and stdin.stderr.count("\n") == 1
    nothing = evaluate(zoo, "runs/none/*", zoo["test"])
    assert nothing.exit_code == 2 and "matches nothing" in nothing.stderr
    zero = evaluate(zoo, "cmp/gmu", "text-only", zoo["test"], "--bootstrap", "0")
    assert zero.exit_code == 2


def test_a_suite_scores_every_run_of_a_comparison(zoo):
    """--suite plugs into the comparison as its scorer: the suite's tasks and metrics,
    "suite" named, each run's result what evaluating it alone with the suite gives."""
    result = evaluate(zoo, "text-only", "cmp/gmu", zoo["test"], "--suite", "hateful-memes", "--json", "--bootstrap", "50")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["suite"] == "hateful-memes"
    for entry in document["runs"]:
        alone = json.loads(evaluate(zoo, entry["run"], zoo["test"], "--suite", "hateful-memes", "--json").stdout)
        assert entry["result"] == alone
        assert set(entry["intervals"]["hateful"]) == {"accuracy", "roc_auc"}
    assert set(document["runs"][1]["vs_first"]["hateful"]) == {"accuracy", "roc_auc"}
    gated = evaluate(zoo, "text-only", "cmp/gmu", zoo["test"], "--suite", "hateful-memes", "--fail-under", "hateful.accuracy=1.01", "--bootstrap", "20")
    assert gated.exit_code == 1 and "text-only: hateful.accuracy" in gated.stderr and "cmp/gmu: hateful.accuracy" in gated.stderr


def test_the_report_of_a_comparison_holds_every_run_and_its_plots(zoo, tmp_path):
    page = tmp_path / "comparison.html"
    result = evaluate(zoo, "cmp/*", zoo["test"], "--report", page, "--plots", tmp_path / "plots", "--bootstrap", "50")
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "cmp/concat" in html and "cmp/gmu" in html and html.count("data:image/png;base64,") >= 2
    for label in ("concat", "gmu"):  # a folder of plots per run
        assert any((tmp_path / "plots" / label).glob("*.png"))
    assert f"report: {page}" in result.stdout
