"""``extract-features --engine ray`` against real local Ray clusters: one started in this
process with ``ray.init(num_cpus=2)``, and a head node started with ``ray start --head``
on loopback that the CLI joins with ``--address``. The store must end up as a local
run's (``FeatureStore.info`` digests, what ``mmtk store info --json`` prints), a killed
driver's rerun computes only what is missing, and the local engine never imports Ray.

The backbone is ``pixels:4`` (a resized grey image): Ray's start-up, not the model,
is what these tests pay for. The head-node tests (the CLI joining it, a killed driver's
rerun, a killed actor) are ``heavy``, left out of the default run
(``pytest -m heavy tests/test_extract_ray.py`` runs them): starting and stopping a head
node costs about a minute on two cores."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from mmtk.backbones import resolve_backbone
from mmtk.data import read_dataset
from mmtk.extract import extract_features
from mmtk.store import FeatureStore
from tiny_models import write_image

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "pixels:4"
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'mmtk[ray]'; scripts/setup.sh does)"
)


def child_env(**extra) -> dict:
    """The environment of a child mmtk: this checkout first on the path (Ray's worker
    processes inherit it, so actors import the same mmtk)."""
    env = {key: value for key, value in os.environ.items() if key != "MMTK_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # `ray start` turns token authentication on by default, and a driver that joins by
    # HOST:PORT sends the token (~/.ray/auth_token) only when told to: as a user would.
    env["RAY_AUTH_MODE"] = "token"
    return {**env, **extra}


def mmtk(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmtk", *map(str, args)], capture_output=True, text=True, env=child_env(**env), timeout=300
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """24 images, one of them listed twice and one that is not an image."""
    root = tmp_path_factory.mktemp("ray_images")
    rows = []
    for index in range(24):
        write_image(root / f"i{index}.png", seed=index, size=(40 + index, 30))
        rows.append({"id": f"i{index}", "image": f"i{index}.png"})
    rows.append({"id": "again", "image": "i3.png"})
    (root / "broken.png").write_bytes(b"not a png")
    rows.append({"id": "broken", "image": "broken.png"})
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def local_digest(images, tmp_path_factory) -> str:
    store = FeatureStore(tmp_path_factory.mktemp("local_store"))
    report = extract_features(read_dataset(images), BACKBONE, store=store, device="cpu", on_error="skip")
    assert (report.computed, len(report.skipped)) == (24, 1)
    return store.info(BACKBONE)["digest"]


def test_local_engine_never_imports_ray(images, tmp_path):
    """The default engine, from the CLI, leaves Ray unimported (its import alone takes
    seconds and it is an optional extra)."""
    script = (
        "import sys\n"
        "from mmtk.cli.app import main\n"
        f"sys.argv = ['mmtk', 'extract-features', {str(images)!r}, '--backbone', {BACKBONE!r}, '--on-error', 'skip',"
        f" '--store', {str(tmp_path / 'store')!r}, '--quiet', '--json']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        "print('ray' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backbones"][0]["computed"] == 24
    assert result.stderr.strip().splitlines()[-1] == "False"


def test_ray_engine_without_ray_exits_2_naming_the_extra(images, tmp_path):
    """Ray missing (hidden from the import system here) is a usage error with the fix."""
    script = (
        "import sys\nsys.modules['ray'] = None\n"
        "from mmtk.cli.app import main\n"
        f"sys.argv = ['mmtk', 'extract-features', {str(images)!r}, '--backbone', {BACKBONE!r}, '--engine', 'ray',"
        f" '--store', {str(tmp_path / 'store')!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --engine ray needs Ray (with Ray Data), which is not installed; install it with: pip install 'mmtk[ray]'"
    ]


def test_ray_options_need_the_ray_engine(images, tmp_path):
    result = mmtk("extract-features", images, "--backbone", BACKBONE, "--address", "auto", "--store", tmp_path / "store")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --address applies to the Ray engine only; add --engine ray, or drop --address"


@needs_ray
def test_unreachable_address_exits_2_at_once(images, tmp_path):
    port = free_port()  # closed again: nothing listens there
    started = time.monotonic()
    result = mmtk("extract-features", images, "--backbone", BACKBONE, "--engine", "ray", "--address", f"127.0.0.1:{port}",
                  "--store", tmp_path / "store")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: nothing answers at --address 127.0.0.1:{port}"), lines
    assert time.monotonic() - started < 60  # not Ray's own minute of retries
    assert FeatureStore(tmp_path / "store").feature_sets() == []


@needs_ray
@pytest.mark.slow  # Ray's start-up: about 30 s on 2 busy cores
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_in_process_cluster_gives_the_local_store(images, local_digest, tmp_path):
    """``ray.init(num_cpus=2)`` in the calling process: extract_features uses that
    cluster (and leaves it running); features, skipped items and digest match a
    local run's."""
    import ray

    # "local": a fresh Ray even where `ray start` ran before (its address file stays).
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": child_env()["PYTHONPATH"]}})
    try:
        store = FeatureStore(tmp_path / "store")
        report = extract_features(
            read_dataset(images), BACKBONE, store=store, on_error="skip", engine="ray", num_workers=2, batch_size=5
        )
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert (report.engine, report.unique, report.cached, report.computed) == ("ray", 25, 0, 24)
    assert [item.item for item in report.skipped] == ["broken"]
    assert store.info(BACKBONE)["digest"] == local_digest
    assert store.verify()["ok"]


class Head(NamedTuple):
    address: str
    pid: int  # of `ray start --block`; the node's processes descend from it


@pytest.fixture(scope="module")
def head_node(tmp_path_factory):
    """A Ray head on loopback with 2 CPUs, run by ``ray start --head --block`` so that
    stopping that one process (SIGTERM) stops the node it started, whatever the tests
    did; ``ray stop`` would also stop any other Ray on this machine."""
    port = free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env(), start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, f"ray start exited {head.returncode}: {head.stderr.read()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not listen within 120 s"
                time.sleep(0.5)
        yield Head(f"127.0.0.1:{port}", head.pid)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


@needs_ray
@pytest.mark.heavy  # a head node's start and stop add a minute on 2 cores
def test_cli_joins_a_head_node_and_matches_a_local_run(images, local_digest, head_node, tmp_path):
    store = tmp_path / "store"
    result = mmtk("extract-features", images, "--backbone", BACKBONE, "--engine", "ray", "--address", head_node.address,
                  "--workers", "2", "--on-error", "skip", "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["backbones"][0]
    assert (report["engine"], report["computed"], report["skipped"]) == ("ray", 24, 1)
    info = mmtk("store", "info", BACKBONE, "--store", store, "--json")
    assert json.loads(info.stdout)["digest"] == local_digest


SLOW_DRIVER = """
import dataclasses, json, sys, time
from mmtk.backbones import resolve_backbone
from mmtk.data import read_dataset
from mmtk.extract import extract_features
from mmtk.store import FeatureStore

data, store, address = sys.argv[1:4]

def build_slow(config, device):
    # Defined in __main__, so Ray ships it to the actors by value.
    encoder = resolve_backbone("pixels:4").build(device)
    encode = encoder.encode
    def slow_encode(batch):
        time.sleep(0.3)  # a heavy model: several commits happen before the kill
        return encode(batch)
    encoder.encode = slow_encode
    return encoder

config = dataclasses.replace(resolve_backbone("pixels:4"), builder=build_slow)
report = extract_features(read_dataset(data), config, store=FeatureStore(store), on_error="skip", batch_size=1,
                          num_workers=2, engine="ray", engine_options={"address": address})
print(json.dumps({"cached": report.cached, "computed": report.computed}))
"""


@needs_ray
@pytest.mark.heavy
def test_killed_driver_resumes_computing_only_what_is_missing(images, local_digest, head_node, tmp_path):
    dataset = read_dataset(images)
    config = resolve_backbone(BACKBONE, "image")
    store_dir = tmp_path / "store"
    observer = FeatureStore(store_dir)
    # The index exists before the driver starts, so polling never reads a half-made schema.
    observer.register(config.fingerprint, {"backbone": BACKBONE, "modality": "image", "kind": "vector", "dim": 16})
    keys = sorted({key for key in _keys(dataset)})
    args = [sys.executable, "-c", SLOW_DRIVER, str(images), str(store_dir), head_node.address]
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    deadline = time.monotonic() + 180
    stored = 0
    while stored < 2 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        stored = len(keys) - len(observer.missing(config.fingerprint, keys))
    driver.send_signal(signal.SIGKILL)
    _, stderr = driver.communicate()
    assert 2 <= stored < len(keys), f"the driver should be killed part-way through ({stored} stored): {stderr[-2000:]}"

    left = len(observer.missing(config.fingerprint, keys))
    rerun = subprocess.run(args, capture_output=True, text=True, env=child_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout) == {"cached": len(keys) - left, "computed": left}
    assert observer.info(BACKBONE)["digest"] == local_digest
    assert observer.verify()["ok"]


@needs_ray
@pytest.mark.heavy
def test_a_killed_actor_is_replaced_and_the_run_completes(images, local_digest, head_node, tmp_path):
    """SIGKILL one of the head node's encoding actors mid-run: Ray starts another and
    retries its batch, the store still ends up as a local run's, and Ray's notices about
    it go to stderr, not into the driver's stdout."""
    if not Path("/proc").is_dir():
        pytest.skip("finds the actor's process through /proc (Linux)")
    store_dir = tmp_path / "store"
    observer = FeatureStore(store_dir)
    config = resolve_backbone(BACKBONE, "image")
    observer.register(config.fingerprint, {"backbone": BACKBONE, "modality": "image", "kind": "vector", "dim": 16})
    keys = _keys(read_dataset(images))
    driver = subprocess.Popen([sys.executable, "-c", SLOW_DRIVER, str(images), str(store_dir), head_node.address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    deadline = time.monotonic() + 180
    while len(observer.missing(config.fingerprint, keys)) == len(set(keys)) and driver.poll() is None:
        assert time.monotonic() < deadline, "nothing was committed within 180 s"
        time.sleep(0.1)
    actors = _actor_pids(head_node.pid)
    assert actors, "no encoding actor found while the run was going"
    os.kill(actors[0], signal.SIGKILL)
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-2000:]
    assert "(raylet)" in stderr  # Ray's notice of the dead worker, kept off stdout
    assert json.loads(stdout)["computed"] > 0
    assert observer.info(BACKBONE)["digest"] == local_digest


def _actor_pids(ancestor: int) -> list[int]:
    """Processes below ``ancestor`` running the encoding UDF (Ray names them after it)."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])

    def below(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == ancestor:
                return True
        return False

    return [pid for pid, command in commands.items() if "_EncodeBatches" in command and below(pid)]


def _keys(dataset):
    from mmtk.data import content_key

    return [content_key(record.values["image"], "image") for record in dataset.records if record.id != "broken"]
