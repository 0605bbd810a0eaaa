"""A reader that goes away (`mmtk train ... | head -n 1`, `mmtk store ls | true`) has what it
wanted: mmtk exits 0 and says nothing, whichever command and output path wrote to the
closed pipe (rich tables, plain lines, JSON, Typer's own help)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthetic_features import write_xor_dataset, store_xor_features

REPEATS = 2


def run_into_closed_pipe(args: list[str], env: dict) -> list[tuple[int, str]]:
    """Run ``mmtk ARGS`` with its stdout a pipe whose reading end is already closed, so
    its first write meets EPIPE (as `| head -n 1` does once head has its line, and
    `| true` does at once), REPEATS times; each run's exit code and stderr."""
    results = []
    for _ in range(REPEATS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmtk", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        results.append((proc.wait(timeout=300), stderr))
    return results


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A store with synthetic features for a small dataset, and a run trained on them."""
    from mmtk.data import read_dataset
    from mmtk.store import FeatureStore

    root = tmp_path_factory.mktemp("pipe")
    data = write_xor_dataset(root, "train", 40, seed=1)
    store = root / "store"
    store_xor_features(read_dataset(data), FeatureStore(store), seed=3)
    env = {**os.environ, "MMTK_STORE": str(store)}
    train = [str(data), "--features", "efficientnet-lite0,minilm", "--model", "concat", "--task", "label:binary", "--epochs", "1"]
    made = subprocess.run([sys.executable, "-m", "mmtk", "train", *train, "--out", str(root / "run")], capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stderr
    return {"root": root, "data": str(data), "run": str(root / "run"), "train": train, "env": env}


@pytest.mark.parametrize(
    "case",
    ["train", "evaluate --plots", "evaluate --json", "store ls", "list", "train --help"],
)
def test_closed_stdout_exits_0_quietly(workspace, case):
    w = workspace
    args = {
        "train": ["train", *w["train"], "--out", str(w["root"] / "run2")],
        "evaluate --plots": ["evaluate", w["run"], w["data"], "--plots", str(w["root"] / "plots")],
        "evaluate --json": ["evaluate", w["run"], w["data"], "--json"],
        "store ls": ["store", "ls"],
        "list": ["list"],
        "train --help": ["train", "--help"],
    }[case]
    for code, stderr in run_into_closed_pipe(args, w["env"]):
        assert (code, stderr) == (0, "")


def test_closed_pipe_keeps_other_exit_codes(workspace):
    """Only a closed stdout is forgiven: bad usage into a closed pipe still exits 2."""
    for code, stderr in run_into_closed_pipe(["evaluate", workspace["run"]], workspace["env"]):
        assert code == 2
        assert "Missing argument" in stderr
