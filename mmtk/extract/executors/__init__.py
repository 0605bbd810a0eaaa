"""Executors: each runs a backbone over ``(content key, value)`` items and yields
``Chunk``s as batches complete, with one signature::

    run(config, items, *, device, batch_size, workers, **options) -> Iterator[Chunk]

``workers`` None means the executor's own default. ``options`` are an executor's own
settings (the Ray executor's ``address`` and ``gpus_per_worker``); local executors take
none. Chunks come out in batch order, so that ``on_error="fail"`` stops after every
earlier batch was committed.

``local`` is not an executor but the choice ``extract_features`` makes by default
(``pick_local``): ``cuda`` on a GPU, else ``threads``, or ``processes`` for backbones
whose per-item work holds the GIL (``serial`` when one worker is enough). Modules are imported when an executor is
used, so the local engine never imports Ray."""

from __future__ import annotations

from importlib import import_module
from typing import Callable, Iterator

from mmtk.registry import Registry

EXECUTORS: Registry[str] = Registry("engine")
EXECUTORS.add("threads", "mmtk.extract.executors.threads:run_threads", "CPU: decoder and forward threads sharing one encoder")
EXECUTORS.add("processes", "mmtk.extract.executors.processes:run_processes", "CPU: forked worker processes (backbones that hold the GIL)")
EXECUTORS.add("serial", "mmtk.extract.executors.processes:run_serial", "CPU: decode and encode in the calling thread")
EXECUTORS.add("cuda", "mmtk.extract.executors.cuda:run_cuda", "one process on the GPU; DataLoader workers decode")
EXECUTORS.add("ray", "mmtk.extract.executors.ray:run_ray", "a Ray cluster: a Dataset over the items, the backbone in actors")

LOCAL = "local"


def engines() -> list[str]:
    """What ``--engine`` accepts: ``local`` (the automatic choice) and every executor."""
    return [LOCAL, *EXECUTORS.names()]


def get_executor(name: str) -> Callable[..., Iterator]:
    """The ``run`` function of executor ``name``, importing its module now."""
    module, _, function = EXECUTORS.get(name).partition(":")
    return getattr(import_module(module), function)


def pick_local(config, device: str) -> str:
    """The executor a local run uses for ``config`` on ``device``."""
    if device.startswith("cuda"):
        return "cuda"
    return "processes" if config.cpu_workers == "processes" else "threads"


def cpu_workers(workers: int | None, items: int, batch_size: int) -> int:
    """CPU workers for ``items``: ``workers`` or one per usable core, and no more than
    there are batches."""
    import math

    from mmtk.device import usable_cores

    return min(workers or usable_cores(), math.ceil(items / batch_size))
