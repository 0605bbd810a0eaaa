"""Tiny labelled datasets whose features are generated straight into a real feature
store, so train/evaluate/predict tests need no backbone weights.

Each item carries a hidden bit ``p`` in its image features (dimension 0) and ``q`` in
its text features (dimension 3), under Gaussian noise; ``label = p XOR q``, so a model
needs both modalities, and either alone is at chance. Features are stored under the real
``efficientnet-lite0`` and ``minilm`` fingerprints with small dimensions.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path

import numpy as np

IMAGE_DIM, TEXT_DIM = 16, 8
FEATURES = ["efficientnet-lite0", "minilm"]


def write_xor_dataset(
    folder: Path, name: str, n: int, seed: int, *, labels: bool = True, label_column: str = "label", rule=operator.xor
) -> Path:
    """Write ``folder/name.jsonl`` with ``n`` items (``img`` files, ``text``, hidden
    ``p``/``q`` bits and, with ``labels``, a ``label_column`` = ``rule(p, q)``, p XOR q by
    default: a second dataset with another label column or rule makes a second task);
    return its path."""
    rng = np.random.default_rng(seed)
    images = folder / f"{name}_img"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        p, q = (int(b) for b in rng.integers(0, 2, 2))
        image = images / f"{i}.png"
        image.write_bytes(f"{name} image {i}".encode())
        row = {"id": f"{name}-{i}", "img": str(image.relative_to(folder)), "text": f"{name} caption {i}", "p": p, "q": q}
        if labels:
            row[label_column] = int(rule(p, q))
        lines.append(json.dumps(row))
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def store_xor_features(dataset, store, seed: int, *, noise: float = 0.3) -> None:
    """Put image and text features of every record of ``dataset`` into ``store``."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys

    rng = np.random.default_rng(seed)
    n = len(dataset)
    p = np.array([r.values["p"] for r in dataset.records])
    q = np.array([r.values["q"] for r in dataset.records])
    image = rng.normal(size=(n, IMAGE_DIM)).astype(np.float32)
    text = rng.normal(size=(n, TEXT_DIM)).astype(np.float32)
    image[:, 0] = (2 * p - 1) + noise * rng.normal(size=n)
    text[:, 3] = (2 * q - 1) + noise * rng.normal(size=n)
    for backbone, modality, column, arrays in (
        ("efficientnet-lite0", "image", "img", image),
        ("minilm", "text", "text", text),
    ):
        config = resolve_backbone(backbone, modality)
        store.register(config.fingerprint, {"backbone": config.spec, "modality": modality, "kind": "vector", "dim": arrays.shape[1]})
        keys = content_keys(dataset.values(column), modality)
        store.put(config.fingerprint, keys, list(arrays))


def xor_split(tmp_path: Path, store, *, n_train: int = 400, n_test: int = 200):
    """Train and test datasets (read with mmtk's reader) with their features stored."""
    from mmtk.data import read_dataset

    train = read_dataset(write_xor_dataset(tmp_path, "train", n_train, seed=1))
    test = read_dataset(write_xor_dataset(tmp_path, "test", n_test, seed=2))
    store_xor_features(train, store, seed=3)
    store_xor_features(test, store, seed=4)
    return train, test
