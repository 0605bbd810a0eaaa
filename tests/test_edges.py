"""Edges users meet: a --fail-under gate at a run's own figures, a rare class at a large
--val-split, a media file rewritten in place, and the NO_COLOR / --quiet conventions of
the command line. (Gates at exact equality in the library: test_metrics_contract.py;
kind inference at its boundaries: data/test_task_contract.py.)"""

from __future__ import annotations

import json
import math
import os
import pty
import re
import subprocess
import sys

import pytest

from mmtk.data import read_dataset
from mmtk.data.content import content_key
from mmtk.store import FeatureStore
from mmtk.train import split_indices, train
from synthetic_features import FEATURES, xor_split

FAST = {"epochs": 3, "hidden": 8, "dropout": 0.0, "lr": 1e-2, "patience": 3}


def mmtk(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, env=env, **kwargs)


# --- a --fail-under gate at the run's own figures -----------------------------------------

def test_evaluate_gate_at_the_run_s_own_figures_exits_0_and_just_past_them_1(tmp_path):
    """The gate a CI job writes from a previous evaluation's JSON passes on the same run."""
    store = FeatureStore(tmp_path / "store")
    train_ds, test_ds = xor_split(tmp_path, store, n_train=60, n_test=30)
    run = tmp_path / "run"
    train(train_ds, features=FEATURES, model="concat", tasks=["label:binary", "p:regression"], out=run, store=store, seed=0, **FAST)
    env = {**os.environ, "MMTK_STORE": str(tmp_path / "store")}
    result = mmtk("evaluate", str(run), str(test_ds.source), "--json", env=env)
    assert result.returncode == 0, result.stderr
    tasks = json.loads(result.stdout)["tasks"]
    accuracy, rmse = tasks["label"]["metrics"]["accuracy"], tasks["p"]["metrics"]["rmse"]

    gates = ["--fail-under", f"label.accuracy={accuracy!r}", "--fail-under", f"p.rmse={rmse!r}"]
    result = mmtk("evaluate", str(run), str(test_ds.source), "--json", *gates, env=env)
    assert result.returncode == 0, result.stderr

    stricter = ["--fail-under", f"label.accuracy={accuracy!r}", "--fail-under", f"p.rmse={math.nextafter(rmse, 0.0)!r}"]
    result = mmtk("evaluate", str(run), str(test_ds.source), "--json", *stricter, env=env)
    assert result.returncode == 1
    assert "p.rmse" in result.stderr and "above the allowed" in result.stderr and "accuracy" not in result.stderr


# --- the rare-class cap of the validation split ------------------------------------------


@pytest.mark.parametrize("fraction", [0.6, 0.8, 0.95])
def test_a_rare_class_stays_in_training_at_large_validation_splits(fraction):
    strata = ["common"] * 20 + ["pair"] * 2 + ["single"]
    train_idx, val_idx = split_indices(strata, fraction, seed=0)
    assert sorted(train_idx + val_idx) == list(range(len(strata)))
    in_train = {strata[i] for i in train_idx}
    assert in_train == {"common", "pair", "single"}
    assert 22 in train_idx and 22 not in val_idx
    # Each class still gives round(n * fraction) to validation, less the one it keeps.
    assert [strata[i] for i in val_idx].count("pair") == 1
    assert [strata[i] for i in val_idx].count("common") == min(round(20 * fraction), 19)


def test_training_at_a_large_validation_split_knows_every_class(tmp_path):
    """End to end: at --val-split 0.6 the one-item class is fitted, so the run's label
    encoder knows it."""
    store = FeatureStore(tmp_path / "store")
    train_ds, _ = xor_split(tmp_path, store, n_train=41, n_test=2)
    rows = [json.loads(line) for line in train_ds.source.read_text().splitlines()]
    for row in rows:
        row["label"] = "rare" if row["id"] == "train-0" else str(row["label"])
    path = tmp_path / "rare.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = tmp_path / "run"
    train(read_dataset(path), features=FEATURES, model="concat", tasks=["label:multiclass"], out=run, store=store, val_split=0.6, **FAST)
    config = json.loads((run / "config.json").read_text())
    assert "rare" in json.dumps(config)


# --- a media file rewritten in place -----------------------------------------------------


def test_same_size_same_mtime_rewrite_gets_a_new_key(tmp_path):
    """Filesystem clocks tick coarsely (a few ms), so a file rewritten right after it was
    hashed can keep its size and mtime; its key must still follow its bytes."""
    path = tmp_path / "a.png"
    path.write_bytes(b"first version")
    before = content_key(str(path), "image")
    stat = path.stat()
    path.write_bytes(b"other version")  # same length
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after = content_key(str(path), "image")
    assert after != before
    assert after == content_key(str(path), "image")


def test_file_restored_to_an_old_mtime_gets_a_new_key(tmp_path):
    """`cp -p`, `touch -r`, tar and rsync -t set an old mtime on new bytes; the change
    time they cannot set still tells the two versions apart."""
    path = tmp_path / "a.wav"
    path.write_bytes(b"A" * 64)
    old = 1_500_000_000_000_000_000
    os.utime(path, ns=(old, old))
    before = content_key(str(path), "audio")
    path.write_bytes(b"B" * 64)
    os.utime(path, ns=(old, old))
    assert content_key(str(path), "audio") != before


def test_settled_files_are_hashed_once_and_a_replaced_one_again(tmp_path, monkeypatch):
    """Files older than the clock's tick are memoised (a warm re-run reads no file);
    one replaced by a rename, even with the old size and mtime, is read again."""
    from mmtk.data import content

    reads = []
    real_hash = content._hash_file
    monkeypatch.setattr(content, "_hash_file", lambda path: reads.append(path) or real_hash(path))
    later = content.time.time_ns() + 3600 * 10**9
    monkeypatch.setattr(content.time, "time_ns", lambda: later)
    content._file_digest.cache_clear()

    path = tmp_path / "a.jpg"
    path.write_bytes(b"version one")
    first = content_key(str(path), "image")
    assert content_key(str(path), "image") == first and len(reads) == 1

    stat = path.stat()
    replacement = tmp_path / "a.jpg.new"
    replacement.write_bytes(b"version two")
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)
    assert content_key(str(path), "image") != first and len(reads) == 2


def test_extraction_recomputes_an_image_rewritten_in_place(tmp_path):
    """The store side of the same rule: the rewritten picture gets its own features."""
    from PIL import Image

    from mmtk.extract import extract_features

    image = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (0, 0, 0)).save(image)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "img": "img.png"}) + "\n")
    store = FeatureStore(tmp_path / "store")
    first = extract_features(read_dataset(data), "pixels:4", store=store, num_workers=1)
    stat = image.stat()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = extract_features(read_dataset(data), "pixels:4", store=store, num_workers=1)
    assert (first.computed, second.computed) == (1, 1)


# --- NO_COLOR and --quiet ----------------------------------------------------------------

# SGR parameters that set a colour (foreground, background, 256/true colour, bright).
_COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_run")
    store = FeatureStore(folder / "store")
    train_ds, test_ds = xor_split(folder, store, n_train=40, n_test=20)
    train(train_ds, features=FEATURES, model="concat", tasks=["label"], out=folder / "run", store=store, **FAST)
    return folder, test_ds.source


def _run_with_terminal_stderr(args: list[str], env: dict) -> tuple[int, str, str]:
    """Run ``python -m mmtk ARGS`` with stderr on a pseudo-terminal (as in a shell), so
    logs and progress bars are drawn unless --quiet says otherwise."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "mmtk", *args], stdout=subprocess.PIPE, stderr=slave, env=env, text=True
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout = process.stdout.read()
        process.wait(timeout=120)
    finally:
        os.close(master)
    return process.returncode, stdout, b"".join(chunks).decode("utf-8", "replace")


def test_no_color_draws_the_terminal_progress_display_without_colour(small_run):
    folder, test_data = small_run
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(MMTK_STORE=str(folder / "store"), TERM="xterm-256color")
    args = ["evaluate", str(folder / "run"), str(test_data), "--json"]
    code, stdout, stderr = _run_with_terminal_stderr(args, env)
    assert code == 0 and _COLOUR.search(stderr), "the bar is coloured by default, or this test proves nothing"
    code, plain_stdout, plain_stderr = _run_with_terminal_stderr(args, {**env, "NO_COLOR": "1"})
    assert code == 0 and "features" in plain_stderr
    assert not _COLOUR.search(plain_stderr)
    assert json.loads(plain_stdout) == json.loads(stdout)


def test_quiet_keeps_stderr_empty_on_a_terminal_and_results_on_stdout(small_run):
    folder, test_data = small_run
    env = {**os.environ, "MMTK_STORE": str(folder / "store")}
    args = ["evaluate", str(folder / "run"), str(test_data), "--json"]
    code, stdout, stderr = _run_with_terminal_stderr(args, env)
    assert code == 0 and json.loads(stdout)["task"] == "label"
    assert stderr, "without --quiet a terminal gets the progress display"
    code, quiet_stdout, quiet_stderr = _run_with_terminal_stderr([*args, "--quiet"], env)
    assert code == 0 and json.loads(quiet_stdout) == json.loads(stdout)
    assert quiet_stderr == ""


def test_quiet_silences_skipped_item_warnings_but_not_errors(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "ok", "img": "ok.png"}) + "\n" + json.dumps({"id": "bad", "img": "bad.png"}) + "\n")
    env = {**os.environ, "MMTK_STORE": str(tmp_path / "store")}
    args = ["extract-features", str(data), "--backbone", "pixels:4", "--on-error", "skip", "--json"]
    loud = mmtk(*args, env=env)
    assert loud.returncode == 0, loud.stderr
    assert "warning: skipped" in loud.stderr and "bad" in loud.stderr
    quiet = mmtk(*args, "--store", str(tmp_path / "other"), "--quiet", env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    report = json.loads(quiet.stdout)
    assert report["skipped"] == json.loads(loud.stdout)["skipped"] and report["backbones"][0]["computed"] == 1
    failing = mmtk("extract-features", str(data), "--backbone", "pixels:4", "--quiet", "--store", str(tmp_path / "third"), env=env)
    assert failing.returncode == 2 and failing.stderr.count("\n") == 1 and "bad" in failing.stderr
