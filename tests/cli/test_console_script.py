"""The installed ``mmtk`` script, run as users and shell pipelines run it, on failures
in the middle of a run: the exit code is the contract (0 ok, 1 a check failed, 2 bad
input, 3 a bug, 130 Ctrl-C) and stderr holds one line. Aborts at interpreter exit
(exit 134, "terminate called without an active exception", from a thread still loading
weights) only show in a real process, so each case runs a few times to catch a race.

Faults and pauses are injected from outside the product: a ``sitecustomize`` module on
``PYTHONPATH`` (imported by Python at start-up, in the script's process and in the
workers it forks) wraps ``mmtk.extract.encoding.load_items`` so that an item named ``fault*``
raises a ``RuntimeError`` (a bug, exit 3) and one named ``slow*`` signals that it is
being decoded and holds its decoder until the test lets it go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmtk.backbones import resolve_backbone
from mmtk.data import content_key
from mmtk.store import FeatureStore
from tiny_models import write_image

MMTK = Path(sys.executable).with_name("mmtk")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MMTK.is_file(), reason=f"the console script is not installed next to {sys.executable}"),
]

SITECUSTOMIZE = '''
import os
import time

import mmtk.extract.encoding

_load_items = mmtk.extract.encoding.load_items


def load_items(encoder, items):
    for _, value in items:
        name = os.path.basename(str(value))
        if name.startswith("fault"):
            raise RuntimeError("injected fault at " + name)
        if name.startswith("slow"):
            open(str(value) + ".started", "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(str(value) + ".release") and time.monotonic() < deadline:
                time.sleep(0.02)
    return _load_items(encoder, items)


mmtk.extract.encoding.load_items = load_items
'''


@pytest.fixture(scope="module")
def injected(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inject")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def start(args, store: Path, injected: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key not in ("MMTK_DEBUG", "PYTHONPATH")}
    env["MMTK_STORE"] = str(store)
    if injected is not None:
        env["PYTHONPATH"] = str(injected)
    # A session of its own: Ctrl-C in a terminal signals the whole process group.
    return subprocess.Popen(
        [str(MMTK), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        start_new_session=True,
    )


def mmtk(*args, store: Path, injected: Path | None = None) -> subprocess.CompletedProcess:
    process = start(args, store, injected)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_one_error_line(result, code: int, *fragments: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == code, f"exit {result.returncode} instead of {code}; stderr:\n{result.stderr}"
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def image_folder(folder: Path, names: list[str]) -> Path:
    """A folder dataset (items in name order): a name with ``bad`` in it holds text,
    every other name a picture."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        if "bad" in name:
            (folder / name).write_text("not an image")
        else:
            write_image(folder / name, seed=seed, size=(40, 32))
    return folder


def stored(store: Path, backbone: str, paths: list[Path], modality: str = "image") -> int:
    """How many of ``paths`` have features of ``backbone`` in ``store``."""
    if not (store / "index.sqlite").exists():
        return 0
    keys = [content_key(str(path), modality) for path in paths]
    return len(keys) - len(FeatureStore(store).missing(resolve_backbone(backbone).fingerprint, keys))


def png_header(path: Path, side: int) -> Path:
    """A PNG that declares side x side pixels in a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- bad input: exit 2


@pytest.mark.parametrize(
    ("case", "runs"),
    [("text-named-jpg", 3), ("huge-png", 2), ("not-a-video", 2)],
)
def test_a_bad_only_item_stops_while_weights_load_with_exit_2(tmp_path, case, runs):
    """efficientnet-lite0 loads torch and its weights in a background thread; a bad
    first item stops the run at once, which aborted with exit 134 in 10 of 10 runs."""
    args = ["extract-features"]
    if case == "text-named-jpg":
        args += [image_folder(tmp_path / "data", ["bad.jpg"])]
        fragment = "cannot decode image"
    elif case == "huge-png":
        (tmp_path / "data").mkdir()
        png_header(tmp_path / "data" / "huge.png", 12000)
        args += [tmp_path / "data"]
        fragment = "12000x12000 (144,000,000 pixels), over the 89,478,485-pixel limit"
    else:
        (tmp_path / "clip.mp4").write_text("not a video")
        (tmp_path / "data.csv").write_text("id,video\nc,clip.mp4\n")
        args += [tmp_path / "data.csv", "--column", "video"]
        fragment = "cannot open video"
    for run in range(runs):
        result = mmtk(*args, "--backbone", "efficientnet-lite0", store=tmp_path / f"store{run}")
        assert_one_error_line(result, 2, fragment, "--on-error skip")
        assert "DecompressionBombWarning" not in result.stderr


def test_a_bad_item_after_good_ones_with_thread_workers_keeps_the_good_ones(tmp_path):
    data = image_folder(tmp_path / "data", ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e_bad.jpg"])
    good = [data / name for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")]
    for run in range(2):
        store = tmp_path / f"store{run}"
        result = mmtk("extract-features", data, "--backbone", "efficientnet-lite0", "--num-workers", "2", "--batch-size", "1", store=store)
        assert_one_error_line(result, 2, "item 'e_bad.jpg'", "cannot decode image")
        assert stored(store, "efficientnet-lite0", good) == len(good)  # every item before the bad one
    skipped = mmtk("extract-features", data, "--backbone", "efficientnet-lite0", "--on-error", "skip", "--json",
                   store=tmp_path / "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["backbones"][0]["computed"] == len(good)
    assert len(skipped.stderr.splitlines()) == 1 and skipped.stderr.startswith("warning: skipped")
    assert "e_bad.jpg" in skipped.stderr


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Twelve short tones and one file that is not audio, tenth of thirteen."""
    from generated_media import tone, write_wav

    folder = tmp_path_factory.mktemp("clips")
    rows = []
    for index in range(12):
        write_wav(folder / f"t{index:02d}.wav", tone(0.3, 16000, hz=200.0 + 40 * index, seed=index), 16000)
        rows.append({"id": f"t{index:02d}", "audio": f"t{index:02d}.wav"})
    (folder / "bad.wav").write_text("not audio")
    rows.insert(9, {"id": "bad", "audio": "bad.wav"})
    (folder / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_a_bad_item_after_good_ones_with_process_workers_keeps_the_good_ones(tmp_path, clips):
    before = [clips / f"t{index:02d}.wav" for index in range(8)]  # the batches (of 2) before the bad one's
    for run in range(3):
        store = tmp_path / f"store{run}"
        result = mmtk("extract-features", clips / "data.jsonl", "--backbone", "mfcc", "--num-workers", "2", "--batch-size", "2",
                      store=store)
        assert_one_error_line(result, 2, "data.jsonl:10 (item 'bad')", "cannot decode audio")
        assert stored(store, "mfcc", before, "audio") == len(before)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run on efficientnet-lite0 features, trained in this process: (run, store)."""
    from mmtk.data import read_dataset
    from mmtk.extract import extract_features
    from mmtk.train import train

    folder = tmp_path_factory.mktemp("run")
    rows = []
    for index in range(6):
        write_image(folder / f"p{index}.png", seed=index, size=(40, 32))
        rows.append(json.dumps({"id": f"p{index}", "image": f"p{index}.png", "label": index % 2}))
    (folder / "train.jsonl").write_text("\n".join(rows) + "\n")
    dataset = read_dataset(folder / "train.jsonl")
    store = FeatureStore(folder / "store")
    extract_features(dataset, "efficientnet-lite0", store=store, device="cpu")
    train(dataset, features=["efficientnet-lite0"], model="concat", tasks=["label:binary"], out=folder / "run", store=store,
          val_dataset=dataset, epochs=1, hidden=8, device="cpu")
    return folder / "run", folder / "store"


def test_evaluate_and_predict_extracting_missing_features_exit_2_or_skip(tmp_path, trained_run):
    run, _ = trained_run
    write_image(tmp_path / "new.png", seed=40, size=(40, 32))
    (tmp_path / "bad.png").write_text("not an image")
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"id": "new", "image": "new.png", "label": 1}) + "\n" + json.dumps({"id": "bad", "image": "bad.png", "label": 0}) + "\n"
    )
    for command in ("evaluate", "predict"):
        result = mmtk(command, run, tmp_path / "test.jsonl", store=tmp_path / f"fresh-{command}")
        assert_one_error_line(result, 2, "test.jsonl:2 (item 'bad')", "--on-error skip")
    evaluated = mmtk("evaluate", run, tmp_path / "test.jsonl", "--on-error", "skip", "--json", store=tmp_path / "skip")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n"] == 1
    assert len(evaluated.stderr.splitlines()) == 1 and "warning: skipped" in evaluated.stderr and "(item 'bad')" in evaluated.stderr
    predicted = mmtk("predict", run, tmp_path / "test.jsonl", "--on-error", "skip", store=tmp_path / "skip")
    assert predicted.returncode == 0, predicted.stderr
    assert [json.loads(line)["id"] for line in predicted.stdout.splitlines()] == ["new"]


# --------------------------------------------------------------------------- Ctrl-C: exit 130


def interrupt_when_started(process: subprocess.Popen, slow: Path, committed=None, wait_commit_s: float = 15.0):
    """Wait until ``slow`` is being decoded (and, given ``committed``, up to
    ``wait_commit_s`` until it counts a stored item), then Ctrl-C the process group and
    release the item. Returns ``(stdout, stderr, items committed when interrupted)``."""
    marker = Path(str(slow) + ".started")
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None, f"exited {process.returncode} before the slow item: {process.stderr.read()}"
        assert time.monotonic() < deadline, "the slow item was never decoded"
        time.sleep(0.02)
    seen, deadline = committed() if committed else 0, time.monotonic() + wait_commit_s
    while committed and seen == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = committed()
    os.killpg(process.pid, signal.SIGINT)
    Path(str(slow) + ".release").touch()
    stdout, stderr = process.communicate(timeout=300)
    marker.unlink()
    Path(str(slow) + ".release").unlink()
    return stdout, stderr, seen


@pytest.mark.parametrize("slow_first", [True, False], ids=["while-weights-load", "mid-run"])
def test_ctrl_c_with_thread_workers_exits_130_keeping_committed_work(tmp_path, injected, slow_first):
    names = [f"g{index:02d}.jpg" for index in range(10)]
    names.insert(0 if slow_first else 6, "slow.jpg")
    data = image_folder(tmp_path / "data", names)
    images = sorted(data.glob("*.jpg"))
    for run in range(2):
        store = tmp_path / f"store{run}"
        process = start(["extract-features", data, "--backbone", "efficientnet-lite0", "--batch-size", "1"], store, injected)
        committed = None if slow_first else (lambda: stored(store, "efficientnet-lite0", images))
        _, stderr, seen = interrupt_when_started(process, data / "slow.jpg", committed)
        assert process.returncode == 130, stderr
        assert stderr.splitlines() == ["error: interrupted; committed work is kept, run the command again to finish"]
        kept = stored(store, "efficientnet-lite0", images)
        assert kept >= seen
        if (store / "index.sqlite").exists():
            assert FeatureStore(store).verify()["ok"]
    rerun = mmtk("extract-features", data, "--backbone", "efficientnet-lite0", "--json", store=store)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)["backbones"][0]
    assert (report["cached"], report["computed"]) == (kept, len(images) - kept)


def test_ctrl_c_with_process_workers_exits_130_without_worker_tracebacks(tmp_path, injected):
    """A terminal's Ctrl-C reaches the workers too; they leave it to the parent (each
    printed a KeyboardInterrupt traceback under the one-line message)."""
    from generated_media import tone, write_wav

    rows = []
    for index in range(12):
        name = "slow.wav" if index == 7 else f"t{index:02d}.wav"
        write_wav(tmp_path / name, tone(0.3, 16000, hz=300.0 + 25 * index, seed=index), 16000)
        rows.append({"id": name, "audio": name})
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    clips = [tmp_path / row["audio"] for row in rows]
    for run in range(2):
        store = tmp_path / f"store{run}"
        process = start(
            ["extract-features", tmp_path / "data.jsonl", "--backbone", "mfcc", "--num-workers", "2", "--batch-size", "1"],
            store, injected,
        )
        _, stderr, seen = interrupt_when_started(process, tmp_path / "slow.wav", lambda: stored(store, "mfcc", clips, "audio"))
        assert process.returncode == 130, stderr
        assert stderr.splitlines() == ["error: interrupted; committed work is kept, run the command again to finish"]
        assert stored(store, "mfcc", clips, "audio") >= seen
        if (store / "index.sqlite").exists():
            assert FeatureStore(store).verify()["ok"]


# --------------------------------------------------------------------------- a bug: exit 3


@pytest.mark.parametrize(("backbone", "workers"), [("efficientnet-lite0", "2"), ("mfcc", "2")])
def test_an_internal_error_mid_run_exits_3_in_one_line(tmp_path, injected, backbone, workers):
    from generated_media import tone, write_wav

    if backbone == "mfcc":
        rows = []
        for index in range(6):
            name = "fault.wav" if index == 4 else f"t{index}.wav"
            write_wav(tmp_path / name, tone(0.3, 16000, hz=300.0 + 50 * index, seed=index), 16000)
            rows.append(json.dumps({"id": name, "audio": name}))
        (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
        data = tmp_path / "data.jsonl"
    else:
        data = image_folder(tmp_path / "data", ["a.jpg", "b.jpg", "c.jpg", "fault.jpg", "e.jpg"])
    for run in range(2):
        result = mmtk("extract-features", data, "--backbone", backbone, "--num-workers", workers, "--batch-size", "1",
                      store=tmp_path / f"store{run}", injected=injected)
        assert_one_error_line(result, 3, "internal error: RuntimeError: injected fault at fault.", "this is a bug in mmtk")


# --------------------------------------------------------------------------- a failed check: exit 1


def test_store_verify_exits_1_on_a_damaged_store(tmp_path):
    store_dir = tmp_path / "store"
    store = FeatureStore(store_dir)
    store.register("f" * 64, {"backbone": "test", "modality": "image", "kind": "vector", "dim": 4})
    store.put("f" * 64, [f"k{i}" for i in range(8)], [np.full(4, i, np.float32) for i in range(8)])
    assert mmtk("store", "verify", store=store_dir).returncode == 0
    shard = next(path for path in store_dir.rglob("*.npy"))
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last item's numbers
    shard.write_bytes(bytes(data))
    for _ in range(3):
        result = mmtk("store", "verify", store=store_dir)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "store has problems" in result.stdout and "Traceback" not in result.stderr
