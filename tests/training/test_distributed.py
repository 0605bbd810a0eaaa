"""`mmtk train` across processes: two real CPU processes (gloo), launched by torchrun or
by hand with the environment torchrun sets, against one process on the same data.

Why the comparison can be tight: with ``--dropout 0`` nothing random differs between the
runs. Both draw the same shuffled order from the same seed; two ranks split each batch
of 32 into two strided halves of 16, and DDP's average of the two halves' mean gradients
is the whole batch's mean gradient (400 training items split evenly, so no item is
dropped). What differs is only the order of float32 additions, about 1e-7 relative per
step; the tolerance (1e-4 relative on every epoch's losses) leaves room for that to
grow over the epochs, and is a thousand times smaller than what one changed batch makes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from mmtk.errors import UsageError
from mmtk.store import FeatureStore
from mmtk.training.checkpoint import checkpoint_dir
from mmtk.training.world import SINGLE, World, rank_batch, shard, shard_length
from synthetic_features import xor_split

EPOCHS = 6
COMMON = ["--features", "efficientnet-lite0,minilm", "--model", "gmu", "--task", "label:binary", "--hidden", "16", "--dropout", "0",
          "--lr", "0.01", "--batch-size", "32", "--epochs", str(EPOCHS), "--patience", str(EPOCHS), "--device", "cpu", "--quiet", "--json"]


@pytest.fixture
def xor(tmp_path):
    xor_split(tmp_path, FeatureStore(tmp_path / "store"), n_train=400, n_test=100)
    return tmp_path


def _env(folder) -> dict:
    # One thread per process: two processes share this machine's two cores.
    env = {**os.environ, "MMTK_STORE": str(folder / "store"), "OMP_NUM_THREADS": "1", "MMTK_TORCH_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(args: list[str], cwds: list, env: dict, timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """``mmtk ARGS`` as ranks 0..n-1 of one world, rank r in ``cwds[r]``: the environment
    torchrun gives its workers, set by hand so each rank can have its own folder."""
    port = str(_free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mmtk", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(len(cwds)), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
        )
        for rank, cwd in enumerate(cwds)
    ]
    done = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _same_training(single, double) -> None:
    """Runs ``single`` (one process) and ``double`` (two) trained alike: every epoch's
    losses within the tolerance of the module docstring, same settings recorded."""
    for a, b in zip(_log(single), _log(double), strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)  # reduced over both ranks' items
        assert b["val_metrics"]["metrics"]["accuracy"] == pytest.approx(a["val_metrics"]["metrics"]["accuracy"], abs=0.02)
    config_one = json.loads((single / "config.json").read_text())
    config_two = json.loads((double / "config.json").read_text())
    assert config_two["training"].pop("processes") == 2
    for config in (config_one, config_two):
        config.pop("weights_sha256")
    assert config_one == config_two
    a, b = load_file(str(single / "model.safetensors")), load_file(str(double / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4) for k in a)


def test_two_processes_train_what_one_does_and_only_rank_0_writes(xor, tmp_path_factory):
    env = _env(xor)
    elsewhere = tmp_path_factory.mktemp("rank1")
    # --accumulate 2: DDP's no_sync path; --checkpoint-every 0: rank 0 checkpoints every epoch.
    args = ["train", str(xor / "train.jsonl"), "--val", str(xor / "test.jsonl"), *COMMON, "--accumulate", "2", "--checkpoint-every", "0"]
    one = subprocess.run([sys.executable, "-m", "mmtk", *args, "--out", "one"], cwd=xor, env=env, capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr
    before = set(os.listdir(xor))
    rank0, rank1 = _ranks([*args, "--out", "two"], [xor, elsewhere], env)
    assert rank0.returncode == 0, rank0.stderr
    assert rank1.returncode == 0, rank1.stderr
    assert set(os.listdir(xor)) - before == {"two"}  # the run, and no checkpoint or staging folder left
    assert os.listdir(elsewhere) == []  # rank 1 wrote no run and no checkpoint
    assert rank1.stdout == "" and rank1.stderr == ""
    report = json.loads(rank0.stdout)
    assert report["epochs_run"] == EPOCHS and report["train_items"] == 400
    assert report["best_epoch"] == json.loads(one.stdout)["best_epoch"]
    _same_training(xor / "one", xor / "two")


@pytest.mark.heavy
def test_two_processes_under_torchrun_train_what_one_process_does(xor):
    """The real launcher, with the module entry point: ``torchrun -m mmtk train``."""
    env = _env(xor)
    args = ["train", "train.jsonl", "--val", "test.jsonl", *COMMON]
    one = subprocess.run([sys.executable, "-m", "mmtk", *args, "--out", "one"], cwd=xor, env=env, capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mmtk", *args, "--out", "two"],
        cwd=xor, env=env, capture_output=True, text=True, timeout=240,
    )
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["epochs_run"] == EPOCHS  # one document: rank 1 printed nothing
    _same_training(xor / "one", xor / "two")


def test_bad_input_on_every_rank_is_one_error_line_and_exit_2(xor):
    # 33 items a batch cannot be split between two processes: every rank refuses it.
    args = ["train", str(xor / "train.jsonl"), *COMMON, "--batch-size", "33", "--out", str(xor / "run")]
    started = time.monotonic()
    ranks = _ranks(args, [xor, xor], _env(xor))
    assert [r.returncode for r in ranks] == [2, 2]
    lines = [line for r in ranks for line in r.stderr.splitlines()]
    assert lines == ["error: --batch-size 33 does not split evenly over 2 processes; give a multiple of 2 (the batch size is the total over all processes)"]
    assert time.monotonic() - started < 120
    assert not (xor / "run").exists()


def test_world_from_torchrun_environment():
    assert World.from_environment({}) == SINGLE
    assert World.from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(rank=3, size=4, local_rank=1)
    assert World(rank=3, size=4, local_rank=1).device("cuda") == "cuda:1"
    assert World(rank=3, size=4, local_rank=1).device("cpu") == "cpu"
    assert SINGLE.device("cuda") == "cuda"
    with pytest.raises(UsageError, match="RANK=4 does not fit WORLD_SIZE=4"):
        World.from_environment({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(UsageError, match="not numbers"):
        World.from_environment({"RANK": "x", "WORLD_SIZE": "2"})


@pytest.mark.parametrize("n", [10, 11, 13])
def test_every_rank_takes_as_many_distinct_items(n):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shares = [shard(order, World(rank=r, size=3)) for r in range(3)]
    assert [len(s) for s in shares] == [shard_length(n, World(rank=0, size=3))] * 3 == [n // 3] * 3
    taken = torch.cat(shares)
    assert len(set(taken.tolist())) == len(taken) == n - n % 3
    assert torch.equal(shard(order, SINGLE), order)


def test_batch_size_is_the_total_over_processes():
    assert rank_batch(64, World(rank=1, size=4)) == 16
    assert rank_batch(63, SINGLE) == 63
    with pytest.raises(UsageError, match="multiple of 4"):
        rank_batch(63, World(rank=0, size=4))


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
        return [int(child) for child in handle.read().split()]


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.heavy
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers in /proc")
def test_a_killed_two_process_run_resumes_under_torchrun(xor):
    """Resume after killing both ranks: rank 0's checkpoint brings both back, and the run
    ends with the losses of an uninterrupted two-process run."""
    env = _env(xor)
    epochs = 60
    args = ["train", "train.jsonl", *COMMON, "--epochs", str(epochs), "--patience", str(epochs), "--checkpoint-every", "0"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mmtk"]
    process = subprocess.Popen([*launch, *args, "--out", "killed"], cwd=xor, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    state = checkpoint_dir(xor / "killed") / "state.json"
    deadline = time.monotonic() + 180
    epoch = 0
    while time.monotonic() < deadline and process.poll() is None and epoch < 3:
        try:
            epoch = json.loads(state.read_text())["state"]["epoch"]
        except (OSError, ValueError):
            epoch = 0
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before it could be killed: {process.communicate()}"
    ranks = _children(process.pid)  # torchrun starts each rank in a session of its own
    assert len(ranks) == 2
    os.killpg(process.pid, signal.SIGKILL)
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    process.wait()
    while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline + 60:
        time.sleep(0.05)
    assert not (xor / "killed").exists()
    stopped_at = json.loads(state.read_text())["state"]["epoch"]
    assert 3 <= stopped_at < epochs

    resumed = subprocess.run([*launch, "train", "--resume", "killed", "--quiet", "--json"], cwd=xor, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_run"] == epochs
    assert not checkpoint_dir(xor / "killed").exists()
    whole = subprocess.run([*launch, *args, "--out", "whole"], cwd=xor, env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    log, whole_log = _log(xor / "killed"), _log(xor / "whole")
    assert [e["epoch"] for e in log] == list(range(1, epochs + 1))
    assert [e["val_loss"] for e in log] == pytest.approx([e["val_loss"] for e in whole_log], rel=1e-5)


def test_trainers_that_do_not_run_on_the_ddp_loop_alone_refuse_several_processes(tmp_path, monkeypatch):
    from mmtk.compare import compare_models
    from mmtk.distill.recipe import distill
    from mmtk.train import train
    from mmtk.tune import tune

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UsageError, match="distill runs in one process, not under torchrun with 2"):
        distill(None, teacher="gmu", student="gmu", features=["minilm"], tasks=["label"], out=tmp_path / "d", store=None)
    with pytest.raises(UsageError, match="tune runs in one process"):
        tune(None, features=["minilm"], model="gmu", tasks=["label"], space="space.yaml", trials=2, out=tmp_path / "t", store=None)
    with pytest.raises(UsageError, match="train --model stack runs in one process"):
        train(None, features=["minilm"], model="stack", tasks=["label"], out=tmp_path / "s", store=None)
    with pytest.raises(UsageError, match="train --model A,B runs in one process"):
        compare_models(None, models="concat,gmu", out=tmp_path / "c", features=["minilm"], tasks=["label"], store=None)
