"""A reader that goes away (`mmtk train ... | head -n 1`, `mmtk store ls | true`) has what it
wanted: mmtk exits 0 and says nothing, whichever command and output path wrote to the
closed pipe (rich tables, plain lines, JSON, Typer's own help)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize(
    "case",
    ["train", "evaluate --plots", "evaluate --json", "store ls", "list", "train --help"],
)
def test_closed_stdout_exits_0_quietly(trained_run, case):
    w = trained_run
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


def test_closed_pipe_keeps_other_exit_codes(trained_run):
    """Only a closed stdout is forgiven: bad usage into a closed pipe still exits 2."""
    for code, stderr in run_into_closed_pipe(["evaluate", trained_run["run"]], trained_run["env"]):
        assert code == 2
        assert "it takes one or more run directories, then DATA" in stderr
