"""What ``mmtk tune`` writes beside its study: the table of trials (``trials.csv``,
``trials.json``) and the best configuration (``best.json``). Each file is rewritten
whole after every trial (a temporary file renamed into place), so a killed study leaves
tables that match its study file up to the last finished trial."""

from __future__ import annotations

import json
from pathlib import Path

TRIALS_CSV, TRIALS_JSON, BEST_JSON = "trials.csv", "trials.json", "best.json"


def trial_row(trial) -> dict:
    """One ``optuna.trial.FrozenTrial`` as a table row: number, state (complete, pruned,
    fail, running, waiting), value (complete trials only: a pruned trial's last epoch is
    not comparable with a finished one's best), params, epochs trained, duration and, for
    a failed trial, why."""
    state = trial.state.name.lower()
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    error = trial.user_attrs.get("error")
    if state == "fail" and error is None:
        error = "interrupted (run again when the study resumes)"
    return {
        "number": trial.number, "state": state, "value": trial.value if state == "complete" else None,
        "params": dict(trial.params), "epochs": trial.user_attrs.get("epochs"), "duration_s": duration,
        "fold_values": trial.user_attrs.get("fold_values"), "error": error,
    }


def write_tables(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """``trials.json`` (the rows) and ``trials.csv`` (one column per parameter, in the
    order the space gives them, after number, state, value, epochs, duration_s)."""
    from mmtk.compare import write_csv

    write_json(out / TRIALS_JSON, rows)
    flat = []
    for row in rows:
        fixed = {key: row[key] for key in ("number", "state", "value", "epochs", "duration_s")}
        folds = {} if row.get("fold_values") is None else {"fold_values": " ".join(f"{v:.6g}" for v in row["fold_values"])}
        flat.append({**fixed, **row["params"], **folds, "error": row["error"]})
    write_csv(flat, out / TRIALS_CSV)
    return out / TRIALS_CSV, out / TRIALS_JSON


def write_json(path: Path, document) -> None:
    from mmtk.ocr.outputs import atomic_text

    with atomic_text(path) as stream:
        stream.write(json.dumps(document, indent=2, default=str) + "\n")
