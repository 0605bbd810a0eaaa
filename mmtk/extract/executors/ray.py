"""Ray executor: the backbone runs in actors of a Ray cluster, the driver commits.

``extract_features`` plans on the driver as for a local run (content keys, the store's
``missing``); only the missing ``(key, value)`` pairs go into a Ray Dataset. A class-based
``map_batches`` UDF (``_EncodeBatches``) builds the encoder once per actor and decodes and
encodes each batch there; ``--workers`` actors run at once, each holding one CPU or
``--gpus-per-worker`` GPUs. Chunks come back to the driver in batch order
(``preserve_order``), where the same ``Committer`` as a local run stores them.

Why the driver commits, not the workers: the store does take concurrent writers (SQLite
WAL index, shards renamed into place), but workers writing it would need a filesystem
every node mounts with working POSIX locks and atomic renames (NFS gives neither
reliably), and would meet on the index's write lock: in BENCHMARKS.md ("Audio", stop 8)
two local workers that committed their own results ran 1.54x and 1.81x over one worker
in two runs, against 1.67x and 1.73x for workers that hand rows to the parent: no clear
gain, and their slow rounds were spent waiting on that lock.
A feature row is small next to its input (1280 float32 = 5 KiB per image for
efficientnet-lite0, against a 30-100 KiB JPEG each actor reads), so sending rows back
costs the network little, and the driver's commit is the one a local run makes: the
same crash-safety (a killed driver loses at most its last second and the rerun computes
only what is missing; a killed actor is replaced by Ray and its batch retried; both in
tests/test_extract_ray.py) and no new failure mode on a shared store. The parent's whole share in that benchmark, hashing 3,000 recordings and
committing their features, was 0.23 CPU-s, so one driver keeps up with many actors
before it becomes the bottleneck.

Why decoding runs in the same actors rather than in separate CPU tasks: an encoder's
``load`` (its preprocessing) is a method of the built encoder, so a decode task would
build the model too, and a decoded 224 px image (600 KiB of float32) is several times
the file it came from, all of which would pass through Ray's object store on its way to
the model. Decoding still runs on every actor's CPU; an actor does not decode its next
batch while its model runs (what the local threads executor overlaps), which is the
first thing to change for GPU actors whose decoding cannot keep up.

Nothing here is imported by a local run: ``mmtk.extract.executors`` imports this module
only when the Ray engine is asked for.
"""

from __future__ import annotations

import math
import socket
import sys
from contextlib import contextmanager, redirect_stdout
from typing import Iterator

import numpy as np

from mmtk.backbones.base import Encoded, close_resource
from mmtk.errors import UsageError
from mmtk.extract import encoding
from mmtk.extract.encoding import Chunk

INSTALL_HINT = "install it with: pip install 'mmtk[ray]'"
# Seconds to wait for a TCP answer from --address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


def run_ray(
    config,
    items,
    *,
    device: str = "auto",
    batch_size: int,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
) -> Iterator[Chunk]:
    """Encode ``items`` on a Ray cluster; yields chunks in batch order.

    ``address``: ``None`` starts a Ray instance on this machine for the run (or uses the
    one this process already joined with ``ray.init``); ``"auto"`` joins
    ``$RAY_ADDRESS`` or the cluster ``ray start`` last ran on this machine;
    ``HOST:PORT`` a head node's GCS port; ``ray://HOST:PORT`` a Ray Client server. ``workers``: actors (default: one per CPU
    of the cluster, or per GPU share with ``gpus_per_worker``), never more than there
    are batches. ``device``: ``"cuda"`` needs ``gpus_per_worker``; actors without
    GPUs run on their CPU."""
    ray = import_ray()
    if device.startswith("cuda") and not gpus_per_worker:
        raise UsageError(f"--device {device} with --engine ray needs GPUs for the actors", "add --gpus-per-worker 1")
    actor_device = "cuda" if gpus_per_worker else "cpu"
    # Ray prints its raylet's notices (a worker died, a task is retried) to the driver's
    # stdout, where `--json` promises one JSON document and nothing else.
    with _quiet_ray_logs(), redirect_stdout(sys.stderr), _connected(ray, address):
        actors = _actor_count(ray, workers, gpus_per_worker, math.ceil(len(items) / batch_size))
        context = ray.data.DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        # In batch order, as local executors yield: a bad item stops extraction only
        # after every earlier batch was committed. mmtk draws its own progress bar.
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        try:
            dataset = ray.data.from_items([{"key": key, "value": value} for key, value in items])
            encoded = dataset.map_batches(
                _EncodeBatches,
                fn_constructor_kwargs={"config": config, "device": actor_device},
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1,
                num_gpus=gpus_per_worker or 0,
            )
            companions = list(config.companions)
            for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
                yield _chunk(batch, companions)
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved


@contextmanager
def _quiet_ray_logs():
    """Ray's Python loggers keep to errors while mmtk runs it: its INFO lines (execution
    plans, "Started a local Ray instance") and its note about the progress bars mmtk
    turned off would fill the terminal under mmtk's own bar. Ray's C++ core logs to
    stderr on its own and is left as it is."""
    import logging

    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def import_ray():
    """``ray`` with Ray Data, or ``UsageError`` (exit 2) saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (needs pyarrow, which a bare `pip install ray` lacks)
    except ImportError:
        raise UsageError("--engine ray needs Ray (with Ray Data), which is not installed", INSTALL_HINT) from None
    return ray


@contextmanager
def _connected(ray, address: str | None):
    """Join (or start) the cluster for the run; leave it as found afterwards: a Ray this
    process had already joined stays joined, one joined or started here is left."""
    if ray.is_initialized():
        yield
        return
    if address == "auto":
        _check_listening(_auto_address(address), address)
    elif address is not None:
        _check_listening(address, address)
    try:
        # "local": a Ray of its own for the run. Left to itself (address None) Ray would
        # first look for the last cluster `ray start` ran here and, when that one is
        # gone, retry it for minutes.
        ray.init(address=address or "local", logging_level="warning", log_to_driver=False, include_dashboard=False)
    except ConnectionError as exc:
        reason = str(exc).split(". ")[0].strip() or "connection refused"
        raise UsageError(
            f"no Ray cluster for --address {address}: {reason}",
            "check the address; a cluster with token authentication (`ray start`'s default) needs "
            "RAY_AUTH_MODE=token on this machine too",
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _auto_address(address: str) -> str:
    """Where ``--address auto`` leads: ``$RAY_ADDRESS``, else the cluster ``ray start``
    last ran on this machine (Ray's own lookup, which has no public name)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # another Ray layout: let ray.init look it up and report
        return address
    found = canonicalize_bootstrap_address(address)
    if found is None:
        raise UsageError(
            "--address auto found no Ray cluster on this machine",
            "start one with `ray start --head`, pass its HOST:PORT, or drop --address to start Ray for this run",
        )
    return found


def _check_listening(target: str, address: str) -> None:
    """Refuse an ``--address`` where nothing answers, at once: Ray itself retries for
    minutes before giving up."""
    if target == "auto":
        return
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--address {address!r} is not HOST:PORT", "pass auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        at = address if target == address else f"{address} ({target})"
        raise UsageError(
            f"nothing answers at --address {at}: {exc.strerror or exc}",
            "check the head node's address and port (`ray status` on it), or drop --address to start Ray here",
        ) from None


def _actor_count(ray, workers: int | None, gpus_per_worker: float | None, batches: int) -> int:
    """``workers``, else what the cluster's CPUs (or GPU shares) hold; at most ``batches``."""
    if workers is None:
        resources = ray.cluster_resources()
        if gpus_per_worker:
            gpus = resources.get("GPU", 0)
            if gpus < gpus_per_worker:
                raise UsageError(
                    f"the Ray cluster has {gpus:g} GPUs, fewer than --gpus-per-worker {gpus_per_worker:g}",
                    "add GPU nodes to the cluster, or drop --gpus-per-worker to run on CPUs",
                )
            workers = int(gpus // gpus_per_worker)
        else:
            workers = int(resources.get("CPU", 1))
    return max(1, min(workers, batches))


def _chunk(batch: dict, companions: list[str]) -> Chunk:
    """A ``Chunk`` from one output batch of ``_EncodeBatches`` (one row per item)."""
    keys, bad, rows = [], [], []
    companion_rows: dict[str, list] = {fingerprint: [] for fingerprint in companions}
    for index, (key, reason) in enumerate(zip(batch["key"], batch["reason"])):
        if reason:
            bad.append((str(key), str(reason)))
            continue
        keys.append(str(key))
        rows.append(batch["features"][index])
        for number, fingerprint in enumerate(companions):
            companion_rows[fingerprint].append(batch[f"companion_{number}"][index])
    if not keys:
        return Chunk([], None, bad)
    features = Encoded(rows, companion_rows) if companions else rows
    return Chunk(keys, features, bad)


class _EncodeBatches:
    """The ``map_batches`` UDF: one encoder per actor, built when the actor starts.

    Takes a batch of ``key``/``value`` rows and returns one row per item: ``key``,
    ``reason`` (empty, or why the item could not be used), ``features`` (its float32
    array, None for a bad item) and ``companion_N`` for each companion feature set."""

    def __init__(self, config, device: str):
        self.config = config
        self.encoder = config.build(device)

    def __call__(self, batch: dict) -> dict:
        items = list(zip((str(key) for key in batch["key"]), batch["value"]))
        chunk = encoding.encode_items(self.encoder, items)
        features = chunk.features
        companions = {}
        if isinstance(features, Encoded):
            companions = features.companions
            features = features.features
        row_of = {key: index for index, key in enumerate(chunk.keys)}
        reason_of = dict(chunk.bad)
        out = {
            "key": np.array([key for key, _ in items]),
            "reason": np.array([reason_of.get(key, "") for key, _ in items]),
            "features": _objects(features, row_of, items),
        }
        for number, fingerprint in enumerate(self.config.companions):
            out[f"companion_{number}"] = _objects(companions.get(fingerprint), row_of, items)
        return out

    def __del__(self):
        close_resource(getattr(self, "encoder", None))


def _objects(rows, row_of: dict, items: list) -> np.ndarray:
    """One float32 array (or None, for a bad item) per item, as a numpy object column:
    rows of sequence backbones differ in length, which a tensor column cannot hold."""
    column = np.empty(len(items), dtype=object)
    for index, (key, _) in enumerate(items):
        if key in row_of:
            column[index] = np.asarray(rows[row_of[key]], dtype=np.float32)
    return column
