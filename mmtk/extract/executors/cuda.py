"""GPU executor: one process; a DataLoader's workers decode into pinned memory while the
GPU runs fp16 autocast over large batches."""

from __future__ import annotations

from typing import Iterator

from mmtk.extract import encoding
from mmtk.extract.encoding import Chunk, built


def run_cuda(config, items, *, device: str = "cuda", batch_size: int, workers: int | None = None) -> Iterator[Chunk]:
    """Encode ``items`` on ``device``; ``workers`` DataLoader processes decode and collate
    (default: one per usable core, at most 8)."""
    import torch

    from mmtk.device import usable_cores

    loader_workers = workers or min(usable_cores(), 8)
    torch.backends.cudnn.benchmark = False  # same kernels every run: reproducible features
    with built(config, device) as encoder:

        def decode(samples):
            # Runs in the DataLoader's worker processes: decoding and collation both.
            loaded = encoding.load_items(encoder, samples)
            return loaded.keys, encoder.collate(loaded.items) if loaded.items else None, loaded.bad

        # A list of (key, value) pairs is a map-style dataset as it is.
        loader = torch.utils.data.DataLoader(
            items, batch_size=batch_size, num_workers=loader_workers, collate_fn=decode, pin_memory=True,
        )
        for keys, batch, bad in loader:
            yield Chunk(keys, encoder.encode(batch) if batch is not None else None, bad)
