"""CPU executors for backbones whose per-item work holds the GIL
(``BackboneConfig.cpu_workers == "processes"``, e.g. mfcc): worker processes, or the
calling thread alone when one worker is enough.

Threads gave these backbones no speed-up at all, two processes 1.57-1.73x on 2 cores
(mfcc over FSDD; 1.83-1.91x for two forked processes that exchange nothing: the rest is
the parent's hashing up front and its commits; workers that commit their own results
did no better, BENCHMARKS.md)."""

from __future__ import annotations

from contextlib import contextmanager
from itertools import islice
from typing import Iterator

from mmtk.backbones.base import close_resource
from mmtk.extract import encoding
from mmtk.extract.encoding import Chunk, InOrder, batches, built
from mmtk.extract.executors import cpu_workers
from mmtk.extract.executors.threads import IN_FLIGHT_PER_WORKER


def run_processes(config, items, *, device: str = "cpu", batch_size: int, workers: int | None = None) -> Iterator[Chunk]:
    """Each worker process decodes and encodes whole batches; a few batches are queued
    per worker so none waits for the parent, and memory stays flat. One worker (asked
    for, or all the items fit one batch) runs ``run_serial`` instead."""
    from concurrent.futures import FIRST_COMPLETED, wait

    workers = cpu_workers(workers, len(items), batch_size)
    if workers == 1:
        yield from run_serial(config, items, device=device, batch_size=batch_size)
        return
    with _one_native_thread_while_running():
        try:
            pool = _process_pool(config, workers)
        except BaseException:
            _release_worker_encoder()
            raise
        try:
            numbered = enumerate(batches(items, batch_size))
            pending = {
                pool.submit(_encode_in_worker, batch): index for index, batch in islice(numbered, workers * IN_FLIGHT_PER_WORKER)
            }
            in_order = InOrder()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield from in_order.add(pending.pop(future), future.result())
                    if (batch := next(numbered, None)) is not None:
                        pending[pool.submit(_encode_in_worker, batch[1])] = batch[0]
        finally:
            # After an early exit (bad item, Ctrl-C) queued batches are dropped; running
            # ones finish within a batch's time.
            pool.shutdown(wait=True, cancel_futures=True)
            _release_worker_encoder()


def run_serial(config, items, *, device: str = "cpu", batch_size: int, workers: int | None = None) -> Iterator[Chunk]:
    """One worker for a backbone whose per-item work holds the GIL: decode and encode in
    the calling thread. A decoder thread beside it only fought for the GIL: mfcc over
    FSDD took 1.66-2.0 s that way against 1.56 s here, using 1.3 cores instead of one."""
    with _one_native_thread_while_running(), built(config, "cpu") as encoder:
        for batch in batches(items, batch_size):
            yield encoding.encode_items(encoder, batch)


@contextmanager
def _one_native_thread_while_running():
    """One BLAS/OpenMP thread per worker while the executor runs (forked workers inherit
    the limit): there is one worker per core already, and OpenBLAS's own threads
    oversubscribed the cores (two mfcc workers ran 1.5x instead of 1.75x). A single
    worker is held to one core too, so --num-workers means cores."""
    limits = one_native_thread()
    try:
        yield
    finally:
        if limits is not None:
            limits.restore_original_limits()


def one_native_thread():
    """Limit BLAS/OpenMP pools to one thread; returns the limiter (to restore) or None
    without threadpoolctl (it comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1)


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
    one_native_thread()
    _WORKER_ENCODER = config.build("cpu")


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool and keeps what it
    committed: a terminal sends SIGINT to the whole process group, and each worker
    printed its own KeyboardInterrupt traceback under the one-line message."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _release_worker_encoder() -> None:
    global _WORKER_ENCODER
    encoder, _WORKER_ENCODER = _WORKER_ENCODER, None
    close_resource(encoder)


def _encode_in_worker(batch):
    return encoding.encode_items(_WORKER_ENCODER, batch)
