"""Tiny generated files for the dataset tests."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def write_image(path: Path, color=(200, 30, 30), size=(4, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    """Each element is a dict (dumped as JSON) or a raw string written as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def hateful_memes(root: Path, n: int = 4) -> Path:
    """Hateful Memes' layout: ``{"id": 42, "img": "img/42.png", "text": ..., "label": 0}``."""
    rows = []
    for i in range(n):
        item = 40 + i
        write_image(root / "img" / f"{item}.png", color=(i * 50, 0, 0))
        rows.append({"id": item, "img": f"img/{item}.png", "text": f"meme number {i}", "label": i % 2})
    return write_jsonl(root / "train.jsonl", rows)
