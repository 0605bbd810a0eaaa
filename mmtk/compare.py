"""Train several models on the same data and compare them (``mmtk train --model a,b,c``).

``compare_models`` calls ``mmtk.train.train`` once per model with the same options, so
every model sees the same training/validation split (seeded by ``seed``), the same
initialisation seed and the same gathered features; each run goes to ``OUT/<model>``
and is an ordinary run (evaluate, predict, ``--resume`` work on it). A model that cannot
be trained on these inputs (a usage or data error: a sequence-only model given vectors,
a diverging run) is recorded with its one-line error and the others still train. The
result is one row per model: validation metrics of its best epoch, its parameter count,
training samples per second, and seconds, written to ``OUT/comparison.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from mmtk.errors import MmtkError, UsageError

CSV_NAME = "comparison.csv"
#: CSV columns before the metrics (one column per metric, ``TASK.METRIC`` with several tasks).
LEADING = ("model", "status", "parameters", "samples_per_second", "seconds", "best_epoch", "epochs_run", "train_items", "val_items")


def parse_models(text: str | Sequence[str]) -> list[str]:
    """Model names from ``"concat,gmu"`` (or a list), each checked against the registry;
    an unknown, empty or repeated name is a ``UsageError``."""
    from mmtk.models import MODELS

    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    if not all(names):
        raise UsageError(f"--model {text!r} has an empty name", "separate model names by single commas, e.g. --model concat,gmu")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"--model names {repeated[0]!r} twice", "name each model once")
    for name in names:
        MODELS.get(name)  # an unknown name fails here, listing the valid ones
    return names


@dataclass
class ModelResult:
    """One model of a comparison: its report, or the error that stopped it."""

    model: str
    run: Path
    report: Any = None  # mmtk.train.TrainReport
    parameters: int | None = None
    error: MmtkError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        if not self.ok:
            return {"model": self.model, "status": "failed", "run": None, "error": self.error.one_line(), "exit_code": self.error.exit_code}
        report = self.report
        return {
            "model": self.model, "status": "ok", "run": str(report.run), "parameters": self.parameters,
            "samples_per_second": report.samples_per_second, "seconds": report.seconds, "best_epoch": report.best_epoch,
            "epochs_run": report.epochs_run, "train_items": report.train_items, "val_items": report.val_items,
            "val_metrics": report.val_metrics,
        }


@dataclass
class Comparison:
    """The models of one comparison, in the order given, and the CSV written for them."""

    out: Path
    results: list[ModelResult]
    csv: Path

    @property
    def failed(self) -> list[ModelResult]:
        return [r for r in self.results if not r.ok]

    @property
    def exit_code(self) -> int:
        """0 when every model trained, else the highest exit code of the failures (2)."""
        return max((r.error.exit_code for r in self.failed), default=0)

    def to_json(self) -> dict:
        return {"out": str(self.out), "csv": str(self.csv), "models": [r.to_json() for r in self.results]}

    def rows(self) -> list[dict]:
        """One flat row per model: ``LEADING`` columns, then its metrics, then ``error``."""
        return [flat_row(r) for r in self.results]


def flat_metrics(result: dict) -> dict[str, float]:
    """An evaluate-shaped result as ``{metric: value}`` (one task) or ``{TASK.METRIC: value}``."""
    if "tasks" in result:
        return {f"{task}.{name}": value for task, entry in result["tasks"].items() for name, value in entry["metrics"].items()}
    return dict(result["metrics"])


def flat_row(result: ModelResult) -> dict:
    row = {key: None for key in LEADING}
    document = result.to_json()
    row.update({key: document.get(key) for key in LEADING})
    if result.ok:
        row.update(flat_metrics(result.report.val_metrics))
    row["error"] = document.get("error")
    return row


def count_parameters(run: Path) -> int:
    """Trainable parameters of the run's model, rebuilt from its registry entry; for a
    model fitted whole (``svm``, ``logreg``: arrays kept as buffers, nothing trainable),
    the values stored in its weights file."""
    from safetensors import safe_open

    from mmtk.runs import WEIGHTS, load_run

    model = load_run(run).model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if hasattr(model, "parameters") else 0
    if trainable:
        return trainable
    with safe_open(str(Path(run) / WEIGHTS), framework="numpy") as weights:
        return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())


def train_many(
    dataset,
    *,
    models: Sequence[str],
    out: str | Path,
    progress: Callable[[str], ContextManager] | None = None,
    record: dict | None = None,
    **options,
) -> list[ModelResult]:
    """Train each of ``models`` on ``dataset`` into ``out/<model>`` with the same
    ``options`` (``mmtk.train.train``'s keyword arguments: features, tasks, store,
    seed...). ``progress(description)`` is a context manager giving ``train``'s
    ``progress`` callback for one model (``mmtk.cli.output.progress_bar``); ``record`` is
    the CLI call, kept per model (with its own ``model`` and ``out``) so that
    ``mmtk train --resume OUT/<model>`` continues a killed model's run.

    Names and every ``out/<model>`` target are checked before anything trains. A model
    that fails with an ``MmtkError`` is recorded and the next one trains; when every
    model fails, the first error is raised (the inputs, not the models, are wrong).
    """
    from mmtk.runs import check_run_target
    from mmtk.train import train
    from mmtk.training.world import require_single_process

    names = parse_models(models)
    if len(names) > 1:
        # A model failing on one rank only would be skipped there while the others wait in
        # its all-reduce; and the comparison reads the runs that rank 0 alone writes.
        require_single_process("train --model A,B", "a comparison reads the runs that rank 0 alone writes")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory", "choose a new directory for the comparison's runs")
    for name in names:
        check_run_target(out / name)
    _load_libraries()
    results = []
    for i, name in enumerate(names, 1):
        target = out / name
        bar = progress(f"{name} ({i}/{len(names)})") if progress is not None else contextlib.nullcontext(None)
        call = None if record is None else {**record, "model": name, "out": str(target)}
        try:
            with bar as update:
                report = train(dataset, model=name, out=target, progress=update, record=call, **options)
        except MmtkError as exc:
            results.append(ModelResult(name, target, error=exc))
            continue
        results.append(ModelResult(name, report.run, report, count_parameters(report.run)))
    if all(not r.ok for r in results):
        raise results[0].error
    return results


def _load_libraries() -> None:
    """Import what the first ``train`` call would load lazily (scikit-learn's metrics;
    torch's compile machinery, which its optimizers import on first construction: 7 s of
    a 10 s tiny run on a busy 2-core machine), so that each model's ``seconds`` is its own."""
    import sklearn.metrics  # noqa: F401
    import torch

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def compare_models(dataset, *, models: Sequence[str], out: str | Path, **options) -> Comparison:
    """``train_many`` and ``out/comparison.csv`` (one row per model, see ``Comparison.rows``)."""
    out = Path(out)
    results = train_many(dataset, models=models, out=out, **options)
    comparison = Comparison(out=out, results=results, csv=out / CSV_NAME)
    write_csv(comparison.rows(), comparison.csv)
    return comparison


def write_csv(rows: list[dict], path: Path) -> None:
    """The rows with the union of their columns (metrics a failed model lacks stay empty),
    written to a temporary file and renamed into place."""
    import os

    columns = list(dict.fromkeys(key for row in rows for key in row if key != "error")) + ["error"]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
