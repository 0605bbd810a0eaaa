"""CPU executor for torch backbones: decoder and forward threads sharing one encoder."""

from __future__ import annotations

import heapq
import sys
import threading
from typing import Iterator

from mmtk.backbones.base import close_resource
from mmtk.extract import encoding
from mmtk.extract.encoding import Chunk, InOrder, Loaded, batches
from mmtk.extract.executors import cpu_workers

# Batches queued per worker: enough that a worker never waits for the parent.
IN_FLIGHT_PER_WORKER = 2


def run_threads(config, items, *, device: str = "cpu", batch_size: int, workers: int | None = None) -> Iterator[Chunk]:
    """Two stages of ``workers`` threads each, sharing one encoder: decoders turn batches
    of values into model inputs, encoders run the forward with ONE torch thread each
    (``cpu_threads_per_process``). Torch and PIL release the GIL in their kernels, so
    two forward threads ran efficientnet-lite0 as fast as two processes while paying
    torch's import and the model load once instead of once per process.

    Decoding runs ahead of the forward by ``IN_FLIGHT_PER_WORKER`` batches per worker,
    or by ``encoder.decode_ahead_items`` where an encoder sets it (encoders whose decoded
    items are small and of fixed size): those that load their weights in the background
    (``BackgroundModel``; efficientnet-lite0 on CPU) decode the first few hundred items
    while torch imports and the weights load, about 2 s that would otherwise leave a
    core idle. Memory stays flat: the window bounds the decoded items alive at once."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from mmtk.device import cpu_threads_per_process

    workers = cpu_workers(workers, len(items), batch_size)
    encoder = config.build("cpu")
    decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmtk-decode")
    forwards = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmtk-forward")
    restore = _TorchThreads(cpu_threads_per_process())
    decode_ahead = max(workers * IN_FLIGHT_PER_WORKER, getattr(encoder, "decode_ahead_items", 0) // batch_size)
    numbered = enumerate(batches(items, batch_size))
    decoding: dict = {}  # future -> batch index
    encoding_futures: dict = {}
    decoded: list = []  # heap of (batch index, Loaded): forwarded in batch order
    in_order = InOrder()

    def forward(batch: Loaded) -> Chunk:
        restore.use_in_this_thread()
        return encoding.encode_loaded(encoder, batch)

    try:
        while True:
            while len(decoding) + len(decoded) < decode_ahead and (batch := next(numbered, None)) is not None:
                decoding[decoders.submit(encoding.load_items, encoder, batch[1])] = batch[0]
            while decoded and len(encoding_futures) < workers * IN_FLIGHT_PER_WORKER:
                index, loaded = heapq.heappop(decoded)
                encoding_futures[forwards.submit(forward, loaded)] = index
            if not decoding and not encoding_futures:
                return
            finished, _ = wait([*decoding, *encoding_futures], return_when=FIRST_COMPLETED)
            for future in finished:
                if future in decoding:
                    heapq.heappush(decoded, (decoding.pop(future), future.result()))
                else:
                    yield from in_order.add(encoding_futures.pop(future), future.result())
    finally:
        # After an early exit (bad item, Ctrl-C) queued batches are dropped; running
        # ones finish within a batch's time.
        decoders.shutdown(wait=True, cancel_futures=True)
        forwards.shutdown(wait=True, cancel_futures=True)
        restore.restore()
        close_resource(encoder)


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
