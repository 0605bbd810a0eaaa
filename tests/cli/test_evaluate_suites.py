"""`mmtk evaluate --suite` end to end on tiny trained runs: Memotion's eleven tasks, a
Hateful Memes run, MM-IMDb with thresholds tuned on validation data, a custom suite file,
`mmtk list suites`, and the exit codes (0 scored, 1 a --fail-under miss, 2 a bad name,
an unmatched task or options that need a suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic_features import store_xor_features, write_xor_dataset

REPO = Path(__file__).resolve().parents[2]
SENTIMENT = {(0, 0): "very_negative", (0, 1): "neutral", (1, 0): "positive", (1, 1): "very_positive"}
HUMOUR = ("not_funny", "hilarious")
SARCASM = ("not_sarcastic", "general")
OFFENSIVE = ("not_offensive", "slight")
MOTIVATIONAL = ("not_motivational", "motivational")


def memotion_rows(path: Path) -> None:
    """Add Memotion's columns (and a ``genres`` list) to an xor dataset, from its hidden bits."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        p, q = row["p"], row["q"]
        row.update(
            overall_sentiment=SENTIMENT[(p, q)], humour=HUMOUR[p], sarcasm=SARCASM[q], offensive=OFFENSIVE[p ^ q], motivational=MOTIVATIONAL[1 - p],
            genres=[g for g, on in (("drama", p), ("comedy", q), ("horror", p ^ q)) if on],
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def mmtk(*args, env, check: int | None = 0):
    """``mmtk ARGS`` in a fresh interpreter, as a shell runs it."""
    result = subprocess.run([sys.executable, "-m", "mmtk", *map(str, args)], capture_output=True, text=True, env=env)
    if check is not None:
        assert result.returncode == check, result.stderr
    return result


def cli(*args, env, check: int = 0):
    """``mmtk ARGS`` in this process (the same exit code and output; no interpreter start)."""
    from typer.testing import CliRunner

    from mmtk.cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **({"MMTK_STORE": env["MMTK_STORE"]} if env else {})})
    assert result.exit_code == check, result.output
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A Memotion-like run (sentiment and four emotion intensities) and a genre run
    (multi-label), trained on synthetic features of 60 items; test and validation sets."""
    import os

    from mmtk.data import read_dataset
    from mmtk.store import FeatureStore

    root = tmp_path_factory.mktemp("suites")
    store = FeatureStore(root / "store")
    paths = {}
    for name, n, seed in (("train", 60, 1), ("test", 40, 2), ("val", 40, 3)):
        paths[name] = write_xor_dataset(root, name, n, seed=seed)
        memotion_rows(paths[name])
        store_xor_features(read_dataset(paths[name]), store, seed=seed + 10)
    env = {**os.environ, "MMTK_STORE": str(root / "store")}
    common = [paths["train"], "--features", "efficientnet-lite0,minilm", "--model", "concat", "--epochs", "3"]
    tasks = ["--task", "overall_sentiment", "--task", "humour", "--task", "sarcasm", "--task", "offensive", "--task", "motivational"]
    mmtk("train", *common, *tasks, "--out", root / "memotion", env=env)
    mmtk("train", *common, "--task", "genres:multilabel", "--out", root / "genres", env=env)
    mmtk("train", *common, "--task", "label:binary", "--out", root / "hateful", env=env)
    return {"env": env, **{k: str(v) for k, v in paths.items()}, **{k: str(root / k) for k in ("memotion", "genres", "hateful")}}


def test_memotion_suite_from_the_shell_matches_the_library(runs):
    from mmtk.evaluate import collect_predictions
    from mmtk.store import FeatureStore
    from mmtk.suites import get_suite

    result = json.loads(mmtk("evaluate", runs["memotion"], runs["test"], "--suite", "memotion", "--json", env=runs["env"]).stdout)
    assert result["suite"] == "memotion" and result["n"] == 40
    assert list(result["tasks"]) == [
        "task_a", "task_b/humour", "task_b/sarcasm", "task_b/offensive", "task_b/motivational", "task_b",
        "task_c/humour", "task_c/sarcasm", "task_c/offensive", "task_c/motivational", "task_c",
    ]
    predictions = collect_predictions(runs["memotion"], runs["test"], store=FeatureStore(Path(runs["env"]["MMTK_STORE"])), device="cpu")
    assert result == json.loads(json.dumps(get_suite("memotion")(predictions)))
    table = cli("evaluate", runs["memotion"], runs["test"], "--suite", "memotion", env=runs["env"]).stdout
    assert "(memotion)" in table and "task_c/motivational" in table and "weighted_f1" in table


def test_fail_under_takes_suite_names_and_gates(runs):
    missed = mmtk("evaluate", runs["memotion"], runs["test"], "--suite", "memotion", "--fail-under", "task_c.macro_f1=1.01", env=runs["env"], check=1)
    assert "task_c.macro_f1 = " in missed.stderr and "below the required 1.01" in missed.stderr
    cli("evaluate", runs["memotion"], runs["test"], "--suite", "memotion", "--fail-under", "task_a.macro_f1=0.0", env=runs["env"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--suite", "memotion", "--fail-under", "task_a.roc_auc=0.5"], ["unknown metric 'roc_auc' for suite task 'task_a'", "macro_f1, weighted_f1"]),
        (["--suite", "memotion", "--fail-under", "sentiment.macro_f1=0.5"], ["no task 'sentiment'", "task_a"]),
        (["--suite", "mami"], ["task 'sub_task_a'", "column 'misogynous'", "--suite-map sub_task_a=COLUMN"]),
        (["--suite", "memotion", "--suite-map", "task_a=sentiment"], ["task 'task_a'", "column 'sentiment'"]),
        (["--suite", "memotoin"], ["unknown suite 'memotoin'", "memotion"]),
        (["--suite-map", "task_a=sentiment"], ["--suite-map applies to a metric suite"]),
        (["--suite", "mmimdb", "--tune-threshold"], ["--tune-threshold needs --val DATA"]),
        (["--suite", "memotion", "--tune-threshold", "--val", "val.jsonl"], ["no multi-label task"]),
    ],
)
def test_bad_suite_usage_is_one_line_before_any_work(runs, tmp_path, args, expected):
    # New items whose features are not stored: the refusal must come before extraction.
    data = write_xor_dataset(tmp_path, "new", 6, seed=9)
    memotion_rows(data)
    result = cli("evaluate", runs["memotion"], data, *args, env=runs["env"], check=2)
    assert result.stderr.count("\n") == 1, result.stderr
    for text in expected:
        assert text in result.stderr


def test_suite_map_by_column_name(runs, tmp_path):
    """A suite file's task reading `sarcasm`, pointed at the hateful run's `label` column."""
    suite = tmp_path / "s.toml"
    suite.write_text('[[tasks]]\nname = "s"\ncolumn = "sarcasm"\nkind = "binary"\nmetrics = ["f1"]\n')
    plain = json.loads(cli("evaluate", runs["hateful"], runs["test"], "--json", env=runs["env"]).stdout)["metrics"]
    scored = json.loads(cli("evaluate", runs["hateful"], runs["test"], "--suite", suite, "--suite-map", "sarcasm=label", "--json", env=runs["env"]).stdout)
    assert scored["task"] == "s" and scored["metrics"] == {"f1": pytest.approx(plain["f1"])}


def test_a_label_outside_the_levels_names_file_and_line(runs, tmp_path):
    rows = Path(runs["test"]).read_text().splitlines()
    rows[2] = json.dumps({**json.loads(rows[2]), "humour": "very_hilarious"})
    data = tmp_path / "test.jsonl"
    data.write_text("\n".join(rows) + "\n")
    for name in ("img", "test_img"):
        if (Path(runs["test"]).parent / name).exists():
            (tmp_path / name).symlink_to(Path(runs["test"]).parent / name)
    result = mmtk("evaluate", runs["memotion"], data, "--suite", "memotion", env=runs["env"], check=2)
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{data}:3" in result.stderr and "'very_hilarious'" in result.stderr


def test_hateful_memes_and_the_example_suite_file(runs):
    plain = json.loads(cli("evaluate", runs["hateful"], runs["test"], "--json", env=runs["env"]).stdout)["metrics"]
    suite = json.loads(cli("evaluate", runs["hateful"], runs["test"], "--suite", "hateful-memes", "--json", env=runs["env"]).stdout)
    assert suite["task"] == "hateful" and suite["metrics"] == pytest.approx({"accuracy": plain["accuracy"], "roc_auc": plain["roc_auc"]})
    custom = json.loads(cli("evaluate", runs["hateful"], runs["test"], "--suite", REPO / "examples" / "suites" / "memes.toml", "--json", env=runs["env"]).stdout)
    assert custom["suite"] == "memes-sarcasm"
    assert custom["metrics"] == pytest.approx({k: plain[k] for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc")})


def test_mmimdb_with_thresholds_tuned_on_validation(runs):
    at_half = json.loads(cli("evaluate", runs["genres"], runs["test"], "--suite", "mmimdb", "--json", env=runs["env"]).stdout)
    assert set(at_half["metrics"]) == {"micro_f1", "macro_f1", "weighted_f1", "samples_f1"} and "thresholds" not in at_half
    tuned = json.loads(
        mmtk("evaluate", runs["genres"], runs["test"], "--suite", "mmimdb", "--tune-threshold", "--val", runs["val"], "--json", env=runs["env"]).stdout
    )
    assert set(tuned["thresholds"]) == {"comedy", "drama", "horror"}
    assert all(0 < t < 1 for t in tuned["thresholds"].values())
    shown = cli("evaluate", runs["genres"], runs["test"], "--suite", "mmimdb", "--tune-threshold", "--val", runs["val"], env=runs["env"]).stdout
    assert f"genres thresholds (tuned on {runs['val']}): comedy" in shown
    aps = json.loads(cli("evaluate", runs["genres"], runs["test"], "--suite", "moviescope", "--json", env=runs["env"]).stdout)
    assert set(aps["metrics"]) == {"micro_ap", "macro_ap", "samples_ap"}


def test_list_suites_shows_tasks_and_metrics():
    listed = cli("list", "suites", "--json", env=None)
    described = json.loads(listed.stdout)
    assert sorted(described["suites"]) == ["hateful-memes", "mami", "memotion", "mmimdb", "moviescope"]
    assert described["suite_tasks"]["mami"]["sub_task_b"] == {
        "of": ["sub_task_b/shaming", "sub_task_b/stereotype", "sub_task_b/objectification", "sub_task_b/violence"],
        "weights": "positives", "metrics": ["weighted_f1"], "description": "the four types' F1 weighted by positive gold items",
    }
    text = cli("list", "suites", env=None).stdout
    assert "task_c/motivational (column motivational): macro_f1, weighted_f1" in text


def test_a_suite_result_goes_into_the_report(runs, tmp_path):
    report = tmp_path / "report.html"
    cli("evaluate", runs["hateful"], runs["test"], "--suite", "hateful-memes", "--report", report, env=runs["env"])
    page = report.read_text()
    assert "hateful" in page and "roc_auc" in page


def test_a_comparison_tunes_each_runs_thresholds_on_its_own_validation_outputs(runs, tmp_path):
    import shutil

    twin = tmp_path / "genres-twin"  # the same model under another path: thresholds are kept per run path
    shutil.copytree(runs["genres"], twin)
    args = ["--suite", "mmimdb", "--tune-threshold", "--val", runs["val"], "--json"]
    compared = json.loads(cli("evaluate", runs["genres"], twin, runs["test"], *args, "--bootstrap", "30", env=runs["env"]).stdout)
    alone = json.loads(cli("evaluate", runs["genres"], runs["test"], *args, env=runs["env"]).stdout)
    assert compared["suite"] == "mmimdb"
    assert [entry["result"] for entry in compared["runs"]] == [alone, alone]
    assert all(entry == {"difference": 0.0, "p_value": 1.0} for entry in compared["runs"][1]["vs_first"]["genres"].values())
