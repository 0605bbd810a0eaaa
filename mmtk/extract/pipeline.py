"""``extract_features``: plan on this process (the driver), run an executor over the
missing items, commit its chunks through one ``Committer``."""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mmtk.backbones import BackboneConfig, FeatureOptions
from mmtk.data import BadItem, Dataset
from mmtk.errors import DataError, UsageError, where
from mmtk.extract.commit import Committer
from mmtk.extract.executors import LOCAL, engines, get_executor, pick_local
from mmtk.extract.plan import missing, pick_batch_size, plan_keys, resolve_target

ON_ERROR_CHOICES = ("fail", "skip")


@dataclass
class ExtractReport:
    """What one ``extract_features`` call did.

    ``total`` records read, ``unique`` distinct inputs among them (content keys),
    ``cached`` of those already stored, ``computed`` stored by this call, ``skipped``
    records that could not be used (``on_error="skip"``), ``seconds`` wall time,
    ``engine`` the executor that ran (empty when nothing was computed).
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
    engine: str = ""


def extract_features(
    dataset: Dataset,
    backbone: str | BackboneConfig,
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
    engine: str = LOCAL,
    engine_options: Mapping[str, Any] | None = None,
) -> ExtractReport:
    """Compute ``backbone`` features for ``dataset[column]`` into ``store``.

    ``backbone`` is a spec, or a ``BackboneConfig`` resolved for its default modality
    (``resolve_backbone(spec)``), which spares parsing the spec again.
    ``column`` defaults to the dataset's column for the backbone's modality (its image or
    text column; an image backbone over a video column encodes sampled frames).
    ``sequence`` stores the backbone's sequence form (token states, spatial grid) instead
    of its pooled vector; ``options`` holds ``--max-length``/``--fps``/``--frames``.
    ``batch_size="auto"`` picks the backbone's measured best for the device.
    ``num_workers``: CPU worker threads (default: usable cores) or, on CUDA, DataLoader
    decode worker processes; with ``engine="ray"``, the number of actors.
    ``engine``: ``"local"`` (this machine; the executor is picked for the device and
    backbone) or an executor of ``mmtk.extract.executors.EXECUTORS`` (``"ray"``), with
    its ``engine_options`` (Ray: ``address``, ``gpus_per_worker``).
    ``on_error="fail"`` raises ``DataError`` naming file:line and item at the first
    unusable item, after committing everything computed so far; ``"skip"`` lists such
    items in the report. ``progress(done, total)`` is called as items complete
    (total = items to compute).
    """
    started = time.perf_counter()
    if on_error not in ON_ERROR_CHOICES:
        raise UsageError(f"unknown on_error {on_error!r}", f"choose one of: {', '.join(ON_ERROR_CHOICES)}")
    if num_workers is not None and num_workers < 1:
        raise UsageError(f"--num-workers {num_workers} must be at least 1", "omit it to use one per core")
    if engine not in engines():
        raise UsageError(f"unknown engine {engine!r}", f"choose one of: {', '.join(engines())}")
    if engine == LOCAL and engine_options:
        raise UsageError(f"the local engine takes no options (got {', '.join(engine_options)})", "pass them with --engine ray")
    target = resolve_target(dataset, backbone, column, sequence=sequence, options=options)
    config = target.config
    plan = plan_keys(dataset, target.column, target.modality, on_error)
    todo = missing(store, config, list(plan.records_by_key))
    report = ExtractReport(
        backbone=config.spec,
        fingerprint=config.fingerprint,
        total=len(dataset.records),
        unique=len(plan.records_by_key),
        cached=len(plan.records_by_key) - len(todo),
        computed=0,
        skipped=list(plan.bad),
        column=target.column,
        modality=target.modality,
    )
    if todo:
        items = [(key, plan.values[key]) for key in todo]
        committer = Committer(store, config)
        try:
            _compute(config, items, committer, plan, dataset, report, batch_size, device, num_workers, on_error, progress,
                     engine, dict(engine_options or {}))
        finally:
            committer.flush()
            report.computed = committer.committed
    report.seconds = time.perf_counter() - started
    return report


def _compute(config, items, committer, plan, dataset, report, batch_size, device, num_workers, on_error, progress,
             engine, engine_options):
    """Run the executor over ``items``, committing features and handling bad items."""
    from mmtk.device import resolve_device

    # A Ray cluster's devices are the actors' own: "auto" stays for them to resolve.
    resolved = device if engine == "ray" else resolve_device(device)
    size = pick_batch_size(batch_size, config, "cuda" if engine_options.get("gpus_per_worker") else resolved)
    name = pick_local(config, resolved) if engine == LOCAL else engine
    report.engine = name
    if progress:
        progress(0, len(items))
    run = get_executor(name)
    # Closed on every way out, so that a bad item stops the workers and ends the
    # encoder (its weights loading thread included) before the error leaves here.
    chunks = run(config, items, device=resolved, batch_size=size, workers=num_workers, **engine_options)
    with closing(chunks):
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
