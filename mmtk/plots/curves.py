"""``learning_curves.png``: a run's loss terms and validation metrics per epoch, read from
its ``train_log.jsonl`` (one entry per epoch, written by ``mmtk.training.loop.fit``)."""

from __future__ import annotations

import json
from pathlib import Path

from mmtk.errors import DataError
from mmtk.plots.common import pyplot, save

LEARNING_CURVES = "learning_curves.png"
# The summed loss, drawn apart from its terms: mmtk.training.objectives.TOTAL (not
# imported: that module loads torch, which drawing a log does not need).
TOTAL = "total"


def read_log(path: Path) -> list[dict]:
    """The epochs of a ``train_log.jsonl``; a line that is not JSON is refused by number."""
    entries = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise DataError(f"{path}:{number}: not a JSON object", "the training log is damaged; train the run again") from None
    return entries


def validation_series(entries: list[dict]) -> dict[str, list[float]]:
    """Every validation metric per epoch, named ``metric`` (one task) or ``task.metric``."""
    series: dict[str, list[float]] = {}
    for epoch, entry in enumerate(entries):
        result = entry.get("val_metrics") or {}
        tasks = result.get("tasks") or ({result["task"]: result} if "metrics" in result else {})
        for task, task_entry in tasks.items():
            for metric, value in task_entry.get("metrics", {}).items():
                name = metric if len(tasks) == 1 else f"{task}.{metric}"
                series.setdefault(name, [float("nan")] * epoch).append(float(value))
        for values in series.values():  # a metric missing this epoch (roc_auc on one class)
            values.extend([float("nan")] * (epoch + 1 - len(values)))
    return series


def loss_series(entries: list[dict]) -> dict[tuple[str, str], list[float]]:
    """Every loss term per epoch: ``{(term, "train" | "val"): values}``, terms in the
    order the log first names them (NaN where an epoch lacks one)."""
    terms = list(dict.fromkeys(name for entry in entries for part in ("train_terms", "val_terms") for name in entry.get(part, {})))
    series = {}
    for term in terms:
        for part, what in (("train_terms", "train"), ("val_terms", "val")):
            values = [float(entry.get(part, {}).get(term, float("nan"))) for entry in entries]
            if any(v == v for v in values):
                series[(term, what)] = values
    return series


def plot_learning_curves(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw ``run_dir``'s ``train_log.jsonl``: every loss term per epoch (training solid,
    validation dashed, one colour per term), and every validation metric. Written to
    ``path``, by default ``RUN/learning_curves.png`` beside the log; returns it."""
    from mmtk.runs import LOG

    run_dir = Path(run_dir)
    log = run_dir / LOG
    if not log.is_file():
        raise DataError(f"{run_dir} has no {LOG}", "point at a run directory written by `mmtk train`")
    entries = read_log(log)
    if not entries:
        raise DataError(f"{log} holds no epoch", "train the run again")
    epochs = [entry.get("epoch", i + 1) for i, entry in enumerate(entries)]
    plt = pyplot()
    fig, (losses, metrics) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.get_cmap("tab10")
    marker = "." if len(epochs) < 30 else None
    series = loss_series(entries)
    terms = [term for term in dict.fromkeys(term for term, _ in series) if term != TOTAL]
    for (term, what), values in series.items():
        style = "-" if what == "train" else "--"
        if term == TOTAL:  # wide and grey underneath: with one task it equals that task's term
            losses.plot(epochs, values, linestyle=style, color="black", alpha=0.3, linewidth=3, label=f"{what} {term}", zorder=1)
        else:
            losses.plot(epochs, values, linestyle=style, color=colours(terms.index(term) % colours.N), marker=marker, label=f"{what} {term}", zorder=2)
    finite = [v for values in series.values() for v in values if v == v]
    # Losses that fall by orders of magnitude flatten on a linear axis after a few epochs.
    if finite and min(finite) > 0 and max(finite) / min(finite) > 50:
        losses.set_yscale("log")
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.set_title("loss terms (solid: training, dashed: validation)")
    losses.legend(fontsize=7)
    for name, values in validation_series(entries).items():
        metrics.plot(epochs, values, marker=marker, label=name)
    metrics.set_xlabel("epoch")
    metrics.set_ylabel("validation metric")
    metrics.set_title("validation metrics")
    if metrics.lines:
        metrics.legend(fontsize=7)
    for ax in (losses, metrics):
        ax.xaxis.get_major_locator().set_params(integer=True)
    return save(fig, Path(path) if path is not None else run_dir / LEARNING_CURVES)
