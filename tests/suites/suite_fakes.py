"""Hand-made ``RunPredictions`` for suite tests: a real dataset file (so errors name real
lines) and a stand-in run with the heads a test describes, no model involved."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mmtk.evaluate import RunPredictions, TaskPredictions


def write_rows(folder: Path, rows: list[dict], name: str = "gold.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps({"id": f"i{i}", "text": "x", **row}) + "\n" for i, row in enumerate(rows)))
    return path


def predictions(path: Path, heads: dict[str, dict], run_path: str = "runs/fake") -> RunPredictions:
    """``heads``: task -> {"kind", "columns", "classes", "outputs" (N, C), "labels" (multilabel gold)}."""
    from mmtk.data import read_dataset

    dataset = read_dataset(path)
    entries = [{"name": name, "encoder": {"task": {"name": name, "kind": h["kind"], "columns": h["columns"]}, "classes": h["classes"]}} for name, h in heads.items()]
    run = SimpleNamespace(
        path=Path(run_path), config={"tasks": entries},
        encoders={name: SimpleNamespace(classes=h["classes"], task=SimpleNamespace(kind=h["kind"])) for name, h in heads.items()},
    )
    run.kind = lambda task: run.encoders[task].task.kind
    tasks = {
        name: TaskPredictions(
            task=name, kind=h["kind"], classes=[str(c) for c in h["classes"]],
            labels=np.asarray(h.get("labels", np.zeros(len(dataset), dtype=np.int64))), outputs=np.asarray(h["outputs"], dtype=np.float64),
        )
        for name, h in heads.items()
    }
    return RunPredictions(run=run, dataset=dataset, ids=list(dataset.ids), tasks=tasks)


def one_hot(indices, classes: int) -> np.ndarray:
    return np.eye(classes)[np.asarray(indices)]
