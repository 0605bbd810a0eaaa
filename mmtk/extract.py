"""Run a backbone over a dataset column and cache the features in the feature store.

Only items the store lacks are computed: every value gets a content key (the same image
under two ids is one key), ``store.missing`` says which keys still need features (or
companions, such as frame times), and results are committed every ~1 s, so a killed run
loses at most its last second of work and a rerun computes only what is missing. A fully
cached dataset costs hashing and a store query per feature set: the model is never built
and torch is never imported.

How the work runs (measurements behind these choices: ``mmtk/device.py``, issue 2):
- CPU: two stages of N threads each (N = usable cores; ``num_workers`` overrides)
  sharing one encoder: decoder threads run ahead of forward threads, which run small
  batches with ONE torch thread each (no intra-op barrier, so a busy neighbour slows us
  gracefully). Torch and PIL release the GIL in their kernels: two forward threads
  matched two processes' throughput and pay torch's import and the model load once; a
  model loading in the background overlaps the first decodes. Chunks come out in batch
  order. The caller's torch thread count is restored.
- CPU, backbones whose per-item work holds the GIL (``BackboneConfig.cpu_workers ==
  "processes"``, e.g. mfcc): forked worker processes that inherit the encoder built once
  by the parent, with one BLAS thread each; a single worker runs in the calling thread.
- CUDA: one process; a DataLoader's workers decode into pinned memory while the GPU runs
  fp16 autocast over large batches.

Determinism: an item's features do not depend on the other items of its batch (eval
mode, masked pooling), but different batch sizes may pick different kernels, so vectors
agree across batch compositions and worker counts to float32 round-off (observed
<= 1e-5 absolute; tests allow 1e-4), and exactly for the same batch composition.
"""

from __future__ import annotations

import heapq
import math
import sys
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from mmtk.backbones import BackboneConfig, BadInput, FeatureOptions, resolve_backbone
from mmtk.backbones.base import Encoded, close_resource
from mmtk.data import BadItem, Dataset, content_key
from mmtk.errors import DataError, MmtkError, UsageError, where
from mmtk.features import pick_column

ON_ERROR_CHOICES = ("fail", "skip")

# Seconds between commits: bounds the work a SIGKILL can lose, while keeping the store's
# per-commit cost (a shard fsync and one transaction) far below the compute time.
COMMIT_INTERVAL_S = 1.0
# ...or this many items, whichever comes first, so memory stays flat on fast backbones.
COMMIT_MAX_ITEMS = 512
# Batches queued per worker: enough that a worker never waits for the parent.
IN_FLIGHT_PER_WORKER = 2


@dataclass
class ExtractReport:
    """What one ``extract_features`` call did.

    ``total`` records read, ``unique`` distinct inputs among them (content keys),
    ``cached`` of those already stored, ``computed`` stored by this call, ``skipped``
    records that could not be used (``on_error="skip"``), ``seconds`` wall time.
    """

    backbone: str
    fingerprint: str
    total: int
    unique: int
    cached: int
    computed: int
    skipped: list[BadItem] = field(default_factory=list)
    seconds: float = 0.0
    column: str = ""
    modality: str = ""


class Chunk(NamedTuple):
    """One encoded batch: features for ``keys`` (rows in order) and the items that failed."""

    keys: list[str]
    features: np.ndarray | list[np.ndarray] | None  # (B, d), or B arrays (T_i, d) for sequences
    bad: list[tuple[str, str]]  # (content key, reason)


def extract_features(
    dataset: Dataset,
    backbone: str,
    *,
    store,
    column: str | None = None,
    sequence: bool = False,
    options: FeatureOptions | None = None,
    batch_size: int | str = "auto",
    device: str = "auto",
    num_workers: int | None = None,
    on_error: str = "fail",
    progress: Callable[[int, int], None] | None = None,
) -> ExtractReport:
    """Compute ``backbone`` features for ``dataset[column]`` into ``store``.

    ``column`` defaults to the dataset's column for the backbone's modality (its image or
    text column; an image backbone over a video column encodes sampled frames).
    ``sequence`` stores the backbone's sequence form (token states, spatial grid) instead
    of its pooled vector; ``options`` holds ``--max-length``/``--fps``/``--frames``.
    ``batch_size="auto"`` picks the backbone's measured best for the device.
    ``num_workers``: CPU worker threads (default: usable cores) or, on CUDA, DataLoader
    decode worker processes. ``on_error="fail"`` raises
    ``DataError`` naming file:line and item at the first unusable item, after committing
    everything computed so far; ``"skip"`` lists such items in the report.
    ``progress(done, total)`` is called as items complete (total = items to compute).
    """
    started = time.perf_counter()
    if on_error not in ON_ERROR_CHOICES:
        raise UsageError(f"unknown on_error {on_error!r}", f"choose one of: {', '.join(ON_ERROR_CHOICES)}")
    if num_workers is not None and num_workers < 1:
        raise UsageError(f"--num-workers {num_workers} must be at least 1", "omit it to use one per core")
    column_name, modality = pick_column(dataset, backbone, column)
    config = resolve_backbone(backbone, modality, sequence=sequence, options=options)
    plan = _plan_keys(dataset, column_name, modality, on_error)
    todo = _missing(store, config, list(plan.records_by_key))
    report = ExtractReport(
        backbone=config.spec,
        fingerprint=config.fingerprint,
        total=len(dataset.records),
        unique=len(plan.records_by_key),
        cached=len(plan.records_by_key) - len(todo),
        computed=0,
        skipped=list(plan.bad),
        column=column_name,
        modality=modality,
    )
    if todo:
        items = [(key, plan.values[key]) for key in todo]
        committer = _Committer(store, config)
        try:
            _compute(config, items, committer, plan, dataset, report, batch_size, device, num_workers, on_error, progress)
        finally:
            committer.flush()
            report.computed = committer.committed
    report.seconds = time.perf_counter() - started
    return report


def _compute(config, items, committer, plan, dataset, report, batch_size, device, num_workers, on_error, progress):
    """Run the encoder over ``items``, committing features and handling bad items."""
    from mmtk.device import resolve_device

    resolved = resolve_device(device)
    size = _batch_size(batch_size, config, resolved)
    if progress:
        progress(0, len(items))
    # Closed on every way out, so that a bad item stops the workers and ends the
    # encoder (its weights loading thread included) before the error leaves here.
    with closing(_run(config, items, resolved, size, num_workers)) as chunks:
        _consume(chunks, committer, plan, dataset, report, on_error, progress, len(items))


def _consume(chunks, committer, plan, dataset, report, on_error, progress, total) -> None:
    """Commit each chunk's features; a bad item raises (``fail``) or is listed (``skip``)."""
    done = 0
    for chunk in chunks:
        if chunk.features is not None:
            committer.add(chunk.keys, chunk.features)
        for key, reason in chunk.bad:
            bad_items = [
                BadItem(str(dataset.source), record.line, record.id, reason) for record in plan.records_by_key[key]
            ]
            if on_error == "fail":
                first = bad_items[0]
                raise DataError(
                    f"{where(first.source, first.line, first.item)}: {reason}",
                    "fix or remove the item, or pass --on-error skip to skip it",
                )
            report.skipped.extend(bad_items)
        done += len(chunk.keys) + len(chunk.bad)
        if progress:
            progress(done, total)


# --------------------------------------------------------------------------- planning


class _Plan(NamedTuple):
    records_by_key: dict[str, list]  # content key -> records with that input, in order
    values: dict[str, Any]  # content key -> the value to load (first record's)
    bad: list[BadItem]


def _plan_keys(dataset: Dataset, column: str, modality: str, on_error: str) -> _Plan:
    """Content keys of every record, deduplicated; records with no usable value become
    bad items (or raise, with ``on_error="fail"``). Hashing runs on one thread: for
    3,000 short recordings it took 0.09 s, and two threads took 0.13 s (the per-file
    work is Python under the GIL; hashlib only releases it on the bytes)."""
    records_by_key: dict[str, list] = {}
    values: dict[str, Any] = {}
    bad: list[BadItem] = []
    for record in dataset.records:
        value = record.values.get(column)
        try:
            if value is None or (modality == "text" and not str(value).strip()):
                raise BadInput(f"empty {modality} in column {column!r}")
            key = content_key(value, modality)
        except (BadInput, DataError) as exc:
            reason = exc.message if isinstance(exc, MmtkError) else str(exc)
            if on_error == "fail":
                raise DataError(
                    f"{where(dataset.source, record.line, record.id)}: {reason}",
                    "fix or remove the item, or pass --on-error skip to skip it",
                ) from None
            bad.append(BadItem(str(dataset.source), record.line, record.id, reason))
            continue
        if key not in records_by_key:
            records_by_key[key] = []
            values[key] = value
        records_by_key[key].append(record)
    return _Plan(records_by_key, values, bad)


def _missing(store, config: BackboneConfig, keys: list[str]) -> list[str]:
    """Keys whose features, or any of whose companions (frame times), are not stored,
    in ``keys`` order: a companion set removed on its own is computed again (its
    features' put then ignores what is stored) instead of staying absent for good."""
    missing = set(store.missing(config.fingerprint, keys))
    for fingerprint in config.companions:
        missing.update(store.missing(fingerprint, keys))
    return [key for key in keys if key in missing]


def _batch_size(batch_size: int | str, config: BackboneConfig, device: str) -> int:
    if batch_size == "auto":
        return config.cuda_batch_size if device.startswith("cuda") else config.cpu_batch_size
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0:
        return batch_size
    raise UsageError(f"batch size {batch_size!r} is not a positive integer", "pass a number such as 16, or auto")


# --------------------------------------------------------------------------- committing


class _Committer:
    """Buffers computed features and commits them to the store every ~1 s."""

    def __init__(self, store, config: BackboneConfig):
        self.store = store
        self.config = config
        self.keys: list[str] = []
        self.rows: list[np.ndarray] = []
        self.companion_rows: dict[str, list[np.ndarray]] = {fingerprint: [] for fingerprint in config.companions}
        self.committed = 0
        self.registered = False
        self.last_commit = time.monotonic()

    def add(self, keys: Sequence[str], features: np.ndarray | Sequence[np.ndarray] | Encoded) -> None:
        """Queue ``features`` for ``keys``: a (B, d) array for vector backbones, B arrays
        of shape (T_i, d) for sequence backbones, or ``Encoded`` with companions."""
        if isinstance(features, Encoded):
            for fingerprint, arrays in features.companions.items():
                self.companion_rows[fingerprint].extend(np.asarray(a, dtype=np.float32) for a in arrays)
            features = features.features
        rows = [np.asarray(row, dtype=np.float32) for row in features]
        if not self.registered:
            for fingerprint, meta in self.config.companions.items():
                # A companion's width may be known only from its rows (a test-time view
                # of a hub model whose config does not state it).
                dim = meta["dim"] or int(self.companion_rows[fingerprint][0].shape[-1])
                self.store.register(fingerprint, {**meta, "dim": dim})
            self.store.register(
                self.config.fingerprint,
                {
                    "backbone": self.config.spec,
                    "modality": self.config.modality,
                    "kind": self.config.kind,
                    "dim": int(rows[0].shape[-1]),
                    **({"variant": self.config.variant} if self.config.variant else {}),
                },
            )
            self.registered = True
        self.keys.extend(keys)
        self.rows.extend(rows)
        if len(self.keys) >= COMMIT_MAX_ITEMS or time.monotonic() - self.last_commit >= COMMIT_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self.keys:
            # Companions first: a kill in between leaves them without features, which the
            # rerun computes again (their put then ignores what is stored); never features
            # without companions, which no rerun would add.
            for fingerprint, rows in self.companion_rows.items():
                self.store.put(fingerprint, self.keys, rows)
                rows.clear()
            self.store.put(self.config.fingerprint, self.keys, self.rows)
            self.committed += len(self.keys)
            self.keys, self.rows = [], []
        self.last_commit = time.monotonic()


# --------------------------------------------------------------------------- running


@contextmanager
def _built(config, device: str) -> Iterator:
    """``config.build(device)``, closed on the way out (``close_resource``)."""
    encoder = config.build(device)
    try:
        yield encoder
    finally:
        close_resource(encoder)


def _batches(items: Sequence[tuple[str, Any]], size: int) -> Iterator[list[tuple[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class Loaded(NamedTuple):
    """One batch after decoding: the loadable items and the ones that failed."""

    keys: list[str]
    items: list[Any]
    bad: list[tuple[str, str]]


def load_items(encoder, items: Sequence[tuple[str, Any]]) -> Loaded:
    """Load (decode) each ``(key, value)``; items the encoder cannot use become ``bad``."""
    keys, loaded, bad = [], [], []
    for key, value in items:
        try:
            loaded.append(encoder.load(value))
            keys.append(key)
        except BadInput as exc:
            bad.append((key, str(exc)))
    return Loaded(keys, loaded, bad)


def encode_loaded(encoder, batch: Loaded) -> Chunk:
    """Encode a decoded batch's loadable items as one forward pass."""
    features = encoder.encode(encoder.collate(batch.items)) if batch.items else None
    return Chunk(batch.keys, features, batch.bad)


def encode_items(encoder, items: Sequence[tuple[str, Any]]) -> Chunk:
    """Load (decode) each ``(key, value)`` and encode the loadable ones as one batch."""
    return encode_loaded(encoder, load_items(encoder, items))


def _run(config, items, device: str, batch_size: int, num_workers: int | None) -> Iterator[Chunk]:
    """Encode ``items`` on ``device``, yielding chunks as they complete."""
    from mmtk.device import cpu_threads_per_process, usable_cores

    if device.startswith("cuda"):
        yield from _run_cuda(config, items, device, batch_size, num_workers or min(usable_cores(), 8))
        return
    workers = min(num_workers or usable_cores(), math.ceil(len(items) / batch_size))
    yield from _run_cpu(config, items, batch_size, workers, cpu_threads_per_process())


def _run_cpu(config, items, batch_size: int, workers: int, threads: int) -> Iterator[Chunk]:
    """Torch backbones: ``_run_threads``. Backbones whose per-item work holds the GIL
    (``cpu_workers="processes"``: numpy on clip-sized arrays, as in mfcc) run in worker
    processes instead (``_process_pool``): threads gave them no speed-up at all, two
    processes 1.57-1.73x on 2 cores (mfcc over FSDD; 1.83-1.91x for two forked
    processes that exchange nothing: the rest is the parent's hashing up front and its
    commits; workers that commit their own results did no better, BENCHMARKS.md).
    One worker runs in the calling thread."""
    # Backbones run in processes get one BLAS/OpenMP thread per worker while the pool
    # lives (forked workers inherit the limit): there is one worker per core already, and
    # OpenBLAS's own threads oversubscribed the cores (two mfcc workers ran 1.5x instead
    # of 1.75x). A single worker is held to one core too, so --num-workers means cores.
    native_limits = _one_native_thread() if config.cpu_workers == "processes" else None
    try:
        if config.cpu_workers == "processes" and workers > 1:
            yield from _run_processes(config, items, batch_size, workers)
        elif config.cpu_workers == "processes":
            yield from _run_serial(config, items, batch_size)
        else:
            yield from _run_threads(config, items, batch_size, workers, threads)
    finally:
        if native_limits is not None:
            native_limits.restore_original_limits()


def _run_serial(config, items, batch_size: int) -> Iterator[Chunk]:
    """One worker for a backbone whose per-item work holds the GIL: decode and encode in
    the calling thread. A decoder thread beside it only fought for the GIL: mfcc over
    FSDD took 1.66-2.0 s that way against 1.56 s here, using 1.3 cores instead of one."""
    with _built(config, "cpu") as encoder:
        for batch in _batches(items, batch_size):
            yield encode_items(encoder, batch)


def _run_processes(config, items, batch_size: int, workers: int) -> Iterator[Chunk]:
    """Each worker process decodes and encodes whole batches; a few batches are queued
    per worker so none waits for the parent, and memory stays flat."""
    from concurrent.futures import FIRST_COMPLETED, wait

    try:
        pool = _process_pool(config, workers)
    except BaseException:
        _release_worker_encoder()
        raise
    try:
        batches = enumerate(_batches(items, batch_size))
        pending = {pool.submit(_encode_in_worker, batch): index for index, batch in islice(batches, workers * IN_FLIGHT_PER_WORKER)}
        in_order = _InOrder()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield from in_order.add(pending.pop(future), future.result())
                if (batch := next(batches, None)) is not None:
                    pending[pool.submit(_encode_in_worker, batch[1])] = batch[0]
    finally:
        # After an early exit (bad item, Ctrl-C) queued batches are dropped; running
        # ones finish within a batch's time.
        pool.shutdown(wait=True, cancel_futures=True)
        _release_worker_encoder()


def _run_threads(config, items, batch_size: int, workers: int, threads: int) -> Iterator[Chunk]:
    """Two stages of ``workers`` threads each, sharing one encoder: decoders turn batches
    of values into model inputs, encoders run the forward with ONE torch thread each.
    Torch and PIL release the GIL in their kernels, so two forward threads ran
    efficientnet-lite0 as fast as two processes while paying torch's import and the
    model load once instead of once per process.

    Decoding runs ahead of the forward by ``IN_FLIGHT_PER_WORKER`` batches per worker,
    or by ``encoder.decode_ahead_items`` where an encoder sets it (encoders whose decoded
    items are small and of fixed size): those that load their weights in the background
    (``BackgroundModel``; efficientnet-lite0 on CPU) decode the first few hundred items
    while torch imports and the weights load, about 2 s that would otherwise leave a
    core idle. Memory stays flat: the window bounds the decoded items alive at once."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    encoder = config.build("cpu")
    decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmtk-decode")
    forwards = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmtk-forward")
    restore = _TorchThreads(threads)
    decode_ahead = max(workers * IN_FLIGHT_PER_WORKER, getattr(encoder, "decode_ahead_items", 0) // batch_size)
    batches = enumerate(_batches(items, batch_size))
    decoding: dict = {}  # future -> batch index
    encoding: dict = {}
    decoded: list = []  # heap of (batch index, Loaded): forwarded in batch order
    in_order = _InOrder()

    def forward(batch: Loaded) -> Chunk:
        restore.use_in_this_thread()
        return encode_loaded(encoder, batch)

    try:
        while True:
            while len(decoding) + len(decoded) < decode_ahead and (batch := next(batches, None)) is not None:
                decoding[decoders.submit(load_items, encoder, batch[1])] = batch[0]
            while decoded and len(encoding) < workers * IN_FLIGHT_PER_WORKER:
                index, loaded = heapq.heappop(decoded)
                encoding[forwards.submit(forward, loaded)] = index
            if not decoding and not encoding:
                return
            finished, _ = wait([*decoding, *encoding], return_when=FIRST_COMPLETED)
            for future in finished:
                if future in decoding:
                    heapq.heappush(decoded, (decoding.pop(future), future.result()))
                else:
                    yield from in_order.add(encoding.pop(future), future.result())
    finally:
        # After an early exit (bad item, Ctrl-C) queued batches are dropped; running
        # ones finish within a batch's time.
        decoders.shutdown(wait=True, cancel_futures=True)
        forwards.shutdown(wait=True, cancel_futures=True)
        restore.restore()
        close_resource(encoder)


class _InOrder:
    """Releases chunks in batch order: a batch that fails (a bad item with
    ``on_error="fail"``) then stops extraction only after every batch before it was
    handed on and committed, whatever order the workers finished in."""

    def __init__(self):
        self.next = 0
        self.waiting: dict[int, Chunk] = {}

    def add(self, index: int, chunk: Chunk) -> Iterator[Chunk]:
        self.waiting[index] = chunk
        while self.next in self.waiting:
            yield self.waiting.pop(self.next)
            self.next += 1


class _TorchThreads:
    """Gives each forward thread ``threads`` torch threads, once torch is imported (a
    backbone may import it in the background). OpenMP keeps the count per thread: a new
    thread starts at one per core whatever the caller set, so without this two forward
    threads ran two OpenMP threads each on 2 cores. ``restore`` puts back the calling
    thread's count if this changed it."""

    def __init__(self, threads: int):
        self.threads = threads
        self.local = threading.local()
        self.previous = None
        if "torch" in sys.modules:
            from mmtk.device import configure_cpu_threads

            self.previous = configure_cpu_threads(threads)

    def use_in_this_thread(self) -> None:
        if not getattr(self.local, "done", False) and "torch" in sys.modules:
            from mmtk.device import configure_cpu_threads

            configure_cpu_threads(self.threads)
            self.local.done = True

    def restore(self) -> None:
        if self.previous is not None:
            from mmtk.device import configure_cpu_threads

            configure_cpu_threads(self.previous)


# The encoder of a worker process: built by the parent before forking (and inherited),
# or by ``_start_worker`` in a spawned worker.
_WORKER_ENCODER = None


def _process_pool(config, workers: int):
    """A pool of ``workers`` processes, each holding an encoder built from ``config``.
    Where the platform forks, the encoder is built once here and the forked workers
    inherit it with every import it made (start-up in milliseconds instead of about a
    second of imports per worker); elsewhere each spawned worker builds its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _WORKER_ENCODER
    if "fork" in multiprocessing.get_all_start_methods():
        _WORKER_ENCODER = config.build("cpu")
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_interrupts
        )
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(config,)
    )


def _start_worker(config) -> None:
    """Spawned worker set-up: one BLAS/OpenMP thread (forked workers inherit the
    parent's limit) and the worker's own encoder."""
    global _WORKER_ENCODER
    _ignore_interrupts()
    _one_native_thread()
    _WORKER_ENCODER = config.build("cpu")


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool and keeps what it
    committed: a terminal sends SIGINT to the whole process group, and each worker
    printed its own KeyboardInterrupt traceback under the one-line message."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _one_native_thread():
    """Limit BLAS/OpenMP pools to one thread; returns the limiter (to restore) or None
    without threadpoolctl (it comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1)


def _release_worker_encoder() -> None:
    global _WORKER_ENCODER
    encoder, _WORKER_ENCODER = _WORKER_ENCODER, None
    close_resource(encoder)


def _encode_in_worker(batch):
    return encode_items(_WORKER_ENCODER, batch)


def _run_cuda(config, items, device: str, batch_size: int, loader_workers: int) -> Iterator[Chunk]:
    """One process on the GPU; DataLoader workers decode and collate into pinned memory."""
    import torch

    torch.backends.cudnn.benchmark = False  # same kernels every run: reproducible features
    with _built(config, device) as encoder:

        def decode(samples):
            # Runs in the DataLoader's worker processes: decoding and collation both.
            loaded = load_items(encoder, samples)
            return loaded.keys, encoder.collate(loaded.items) if loaded.items else None, loaded.bad

        # A list of (key, value) pairs is a map-style dataset as it is.
        loader = torch.utils.data.DataLoader(
            items, batch_size=batch_size, num_workers=loader_workers, collate_fn=decode, pin_memory=True,
        )
        for keys, batch, bad in loader:
            yield Chunk(keys, encoder.encode(batch) if batch is not None else None, bad)
