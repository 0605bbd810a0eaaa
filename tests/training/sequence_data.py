"""A tiny dataset whose label lives in a stored sequence: each item's ``text`` has a
``minilm:seq`` sequence of 2-9 steps (dim 6) whose dimension 0 averages +1 or -1 over
its valid steps (the label), under noise, beside pure-noise ``efficientnet-lite0``
image vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEQ_DIM, IMAGE_DIM = 6, 4
SEQ_FEATURES = ["minilm:seq", "efficientnet-lite0"]


def sequence_dataset(folder: Path, store, n: int = 120, seed: int = 0, *, blank_texts: int = 0):
    """Write and read the dataset, store its features; the first ``blank_texts`` items
    have an empty text (no sequence: an absent modality)."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset

    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows, labels = [], rng.integers(0, 2, n)
    for i in range(n):
        (folder / "img" / f"{i}.png").write_bytes(b"image %d" % i)
        text = "" if i < blank_texts else f"caption {i}"
        rows.append({"id": str(i), "img": f"img/{i}.png", "text": text, "label": int(labels[i])})
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = read_dataset(folder / "data.jsonl", optional=["text"])
    text = resolve_backbone("minilm", "text", sequence=True)
    store.register(text.fingerprint, {"backbone": text.spec, "modality": "text", "kind": "sequence", "dim": SEQ_DIM})
    keys, steps = [], []
    for i, record in enumerate(dataset.records):
        if not record.values["text"]:
            continue
        length = int(rng.integers(2, 10))
        seq = rng.normal(size=(length, SEQ_DIM)).astype(np.float32)
        seq[:, 0] += 2.0 * labels[i] - 1.0
        keys.append(content_keys([record.values["text"]], "text")[0])
        steps.append(seq)
    store.put(text.fingerprint, keys, steps)
    image = resolve_backbone("efficientnet-lite0", "image")
    store.register(image.fingerprint, {"backbone": image.spec, "modality": "image", "kind": "vector", "dim": IMAGE_DIM})
    store.put(image.fingerprint, content_keys(dataset.values("img"), "image"), list(rng.normal(size=(n, IMAGE_DIM)).astype(np.float32)))
    return dataset
