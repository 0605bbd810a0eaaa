"""Run a backbone over a dataset column and cache the features in the feature store.

Only items the store lacks are computed: every value gets a content key (the same image
under two ids is one key), ``store.missing`` says which keys still need features (or
companions, such as frame times), and results are committed every ~1 s, so a killed run
loses at most its last second of work and a rerun computes only what is missing. A fully
cached dataset costs hashing and a store query per feature set: the model is never built
and torch is never imported.

The package, one job per module:
- ``plan``: the column and config to run, content keys (deduplicated), what is missing.
- ``commit``: ``Committer``, small crash-safe transactions into the store.
- ``encoding``: decode and encode one batch into a ``Chunk`` (shared by executors).
- ``executors``: a registry of ways to run the backbone over the missing items, each
  ``run(config, items, *, device, batch_size, workers) -> Iterator[Chunk]``:
  ``threads``, ``processes``/``serial`` and ``cuda`` on this machine, ``ray`` on a
  Ray cluster. Planning and committing stay on the calling process for all of them.
- ``pipeline``: ``extract_features``, which ties them together.

How the local work runs (measurements behind these choices: ``mmtk/device.py``, issue 2):
- CPU: two stages of N threads each (N = usable cores; ``num_workers`` overrides)
  sharing one encoder (``executors.threads``).
- CPU, backbones whose per-item work holds the GIL (``BackboneConfig.cpu_workers ==
  "processes"``, e.g. mfcc): forked worker processes that inherit the encoder built once
  by the parent, with one BLAS thread each; a single worker runs in the calling thread
  (``executors.processes``).
- CUDA: one process; a DataLoader's workers decode into pinned memory while the GPU runs
  fp16 autocast over large batches (``executors.cuda``).

Determinism: an item's features do not depend on the other items of its batch (eval
mode, masked pooling), but different batch sizes may pick different kernels, so vectors
agree across batch compositions and worker counts to float32 round-off (observed
<= 1e-5 absolute; tests allow 1e-4), and exactly for the same batch composition.
"""

from mmtk.extract.encoding import Chunk, Loaded, encode_items, encode_loaded, load_items
from mmtk.extract.pipeline import ON_ERROR_CHOICES, ExtractReport, extract_features

__all__ = [
    "ON_ERROR_CHOICES", "Chunk", "ExtractReport", "Loaded", "encode_items", "encode_loaded", "extract_features", "load_items",
]
