"""Small generated listings (text + categorical + numerical columns) whose labels depend
on the tabular columns only, written as CSV so cells are strings as users' files are."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

KINDS = ("flat", "house", "loft")
TEXT_DIM = 8
COLUMNS = ["id", "text", "kind", "age", "fee", "price", "label"]


def listing_rows(n: int, seed: int, *, kinds=KINDS, missing_every: int = 0) -> list[dict]:
    """``price`` = 10 + 2 * age + 8 [kind == house] + noise; ``label`` = (age > 5) XOR
    (kind == house). ``fee`` is noise. Every ``missing_every``-th age is left empty."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        age = float(np.round(rng.uniform(0, 10), 2))
        price = 10 + 2 * age + 8 * (kind == "house") + rng.normal(0, 0.5)
        rows.append({
            "id": f"s{seed}-{i}", "text": f"listing {seed} {i}", "kind": kind,
            "age": "" if missing_every and i % missing_every == 0 else str(age),
            "fee": str(int(rng.integers(0, 100))), "price": f"{price:.3f}", "label": str(int((age > 5) != (kind == "house"))),
        })
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_column_info(path: Path, *, label: str = "label") -> Path:
    """A Multimodal-Toolkit style column_info.json for the listings."""
    path.write_text(json.dumps({
        "text_cols": ["text"], "cat_cols": ["kind"], "num_cols": ["age", "fee"], "label_col": label,
        "label_list": ["no", "yes"],
    }))
    return path


def store_noise_text_features(dataset, store, seed: int) -> None:
    """Random (uninformative) ``minilm`` vectors for every text, under the real fingerprint."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys

    config = resolve_backbone("minilm", "text")
    store.register(config.fingerprint, {"backbone": config.spec, "modality": "text", "kind": "vector", "dim": TEXT_DIM})
    arrays = np.random.default_rng(seed).normal(size=(len(dataset), TEXT_DIM)).astype(np.float32)
    store.put(config.fingerprint, content_keys(dataset.values("text"), "text"), list(arrays))
