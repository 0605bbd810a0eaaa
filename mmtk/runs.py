"""Run directories: everything needed to evaluate and predict without the training data.

```
RUN/config.json       resolved settings: model (name, params, inputs as InputSpecs,
                      heads, and "built_from" for a model that loaded pretrained
                      weights when built: its architecture, so that loading the run
                      rebuilds it without them), features (reference, backbone
                      spec, modality, fingerprint, column; a word-piece input's
                      tokenizer and its digest), tasks (label encoders, regression
                      target statistics), training settings, "preprocessing"
                      (pooling, missing-modality policy, per-feature
                      standardisation statistics), and with a
                      tabular feature the fitted preprocessor ("tabular": column roles,
                      scaler parameters, category lists; plain JSON)
RUN/model.safetensors weights (tensors only: loading runs no code); config.json
                      records their SHA-256, checked at every load
RUN/towers/N/         a fine-tuned run's tower N: tokenizer and transformers config, or
                      image preprocessing (and open_clip config), to rebuild it offline
                      (its weights are in model.safetensors; config.json "finetune")
RUN/metrics.json      validation metrics at the best epoch (evaluate's JSON shape)
RUN/train_log.jsonl   one JSON object per epoch
RUN/members/NAME/     a stack's member runs (``mmtk.stacking``), each a run as above
```

Nothing here unpickles anything: the config is JSON, weights are safetensors, and the
model is rebuilt from the registry by name. A run is written to a temporary sibling and
renamed into place, so a crash never leaves a half-written run, and re-training into an
existing run replaces it whole. The run's folder and files get the modes the umask gives
(a group can share runs), not the 0700/0600 of the temporary files they start as.

A damaged run (weights truncated, zeroed, or with a changed byte) is refused with a
``DataError`` naming the file, never loaded into a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from mmtk.errors import DataError, UsageError
from mmtk.paths import current_umask

RUN_FORMAT = "mmtk-run/1"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
LOG = "train_log.jsonl"
# config.json's key for the SHA-256 of model.safetensors (hex).
WEIGHTS_SHA256 = "weights_sha256"
RESTORE_HINT = "restore the run from a backup, or retrain it"


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a run written by mmtk (a config.json in the run format)."""
    config = Path(path) / CONFIG
    try:
        return json.loads(config.read_text()).get("format") == RUN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_run_target(out: str | Path) -> None:
    """Refuse to write a run over a non-empty directory that is not a run (it may hold
    anything); a previous run, an empty directory or a new path is fine."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory", "choose a new run directory")
    if out.is_dir() and any(out.iterdir()) and not is_run_dir(out):
        raise UsageError(
            f"--out {out} is a non-empty directory that is not an mmtk run",
            "choose a new or empty directory (an existing run is replaced)",
        )


def save_run(out: str | Path, *, config: dict, model, metrics: dict, log: Iterable[dict], folders: dict[str, Path] | None = None) -> Path:
    """Write a run directory atomically and return its path.

    The files are written into a temporary sibling directory which is then renamed to
    ``out``; a previous run at ``out`` is moved aside first and deleted afterwards.
    ``config.json`` records the SHA-256 of the weights file as written. ``folders``
    (``{name: directory}``, on the same file system) are moved into the run under their
    names before the rename: a stack's member runs (``members/``).
    """
    from safetensors.torch import save_file

    out = Path(out)
    check_run_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    built_from = getattr(model, "built_from", None)
    if built_from:
        config = {**config, "model": {**config["model"], "built_from": built_from}}
    try:
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format": RUN_FORMAT})
        digest = _sha256(staging / WEIGHTS)
        _write_json(staging / CONFIG, {"format": RUN_FORMAT, **config, WEIGHTS_SHA256: digest})
        write_files = getattr(model, "write_run_files", None)
        if write_files is not None:  # fine-tuned towers: tokenizer and architecture files (mmtk.finetune)
            write_files(staging)
        _write_json(staging / METRICS, metrics)
        with open(staging / LOG, "w", encoding="utf-8") as handle:
            for entry in log:
                handle.write(json.dumps(entry) + "\n")
        for name, folder in (folders or {}).items():
            os.rename(folder, staging / name)
        _finish_files(staging)
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _finish_files(staging: Path) -> None:
    """Give the staged run the modes the umask gives (mkdtemp makes 0700 and safetensors
    writes 0600), and flush its files to disk before the rename makes them visible, so a
    power loss cannot leave a visible run with empty files."""
    umask = current_umask()
    for entry in sorted(staging.rglob("*"), reverse=True):  # a folder's files before the folder
        if entry.is_dir():
            os.chmod(entry, 0o777 & ~umask)
            continue
        with open(entry, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(entry, 0o666 & ~umask)
    os.chmod(staging, 0o777 & ~umask)


def replace_dir(staging: Path, out: Path) -> None:
    """Rename the directory ``staging`` to ``out``, replacing what is there."""
    # A directory cannot be renamed over a non-empty one, so the old run goes aside first;
    # between the two renames `out` is briefly absent, never half-written, and a process
    # killed there leaves the old copy aside, which `recover_replaced` puts back.
    recover_replaced(out)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "run")
    os.rename(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_replaced(out: str | Path) -> None:
    """Undo a ``replace_dir`` killed between its two renames: when ``out`` is missing and
    its previous copy is still set aside, rename that copy back; copies set aside by a
    replacement that did finish are deleted."""
    out = Path(out)
    aside = sorted(out.parent.glob(f".{out.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not out.exists() and aside and (aside[-1] / "run").is_dir():
        os.rename(aside[-1] / "run", out)
    for folder in aside:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Run:
    """A loaded run: its config, the model in eval mode with its weights, the per-task
    label encoders and regression target statistics, and the fitted tabular
    preprocessor when the run has a tabular feature."""

    path: Path
    config: dict
    model: Any
    encoders: dict[str, Any]
    target_stats: dict[str, dict]
    tabular: Any = None  # mmtk.tabular.TabularPreprocessor

    @property
    def preprocessing(self) -> dict:
        """Pooling, missing-modality policy and standardisation statistics; runs written
        before these existed pooled by mean, refused absent modalities, standardised nothing."""
        return {"pool": "mean", "missing_modality": "fail", "standardize": None, **self.config.get("preprocessing", {})}

    @property
    def model_name(self) -> str:
        return self.config["model"]["name"]

    @property
    def tasks(self) -> list[str]:
        return [task["name"] for task in self.config["tasks"]]

    def kind(self, task: str) -> str:
        return self.encoders[task].task.kind

    @property
    def feature_refs(self) -> list:
        from dataclasses import replace

        from mmtk.features import FeatureRef

        # A stack's members are runs inside it, recorded relative to it (run:members/NAME).
        return [replace(FeatureRef.from_json(entry), base=str(self.path)) for entry in self.config["features"]]

    @property
    def label_columns(self) -> list[str]:
        """Every column holding labels of some trained task, in task order (a derived task's
        labels may come from its fine task's, ``mmtk.models.derived``)."""
        return [column for task in self.config["tasks"] if "derived" not in task for column in task["encoder"]["task"]["columns"]]

    def check_fingerprints(self, resolved) -> None:
        """Refuse features whose backbone fingerprint differs from training: different
        weights or preprocessing give features the model never saw. Word pieces are
        checked against the tokenizer the run recorded (``mmtk.tokens``)."""
        from mmtk.tokens import check_recorded

        recorded = {entry["ref"]: entry for entry in self.config["features"]}
        for entry in self.config["features"]:
            if entry.get("modality") == "tokens":
                check_recorded(entry, self.path)
        for feature in resolved:  # stored features only: tabular has no backbone
            entry = recorded[feature.name]
            if feature.backbone.fingerprint != entry["fingerprint"]:
                raise UsageError(
                    f"run {self.path} was trained on {feature.name} features with backbone fingerprint "
                    f"{entry['fingerprint'][:12]} ({entry['backbone_spec']}, {entry['modality']}), but here it resolves "
                    f"to {feature.backbone.fingerprint[:12]} ({feature.backbone.spec}, {feature.backbone.modality}): "
                    "other weights, preprocessing or column role, so the features would not match",
                    "use the backbone and mmtk version the run was trained with, or retrain the run",
                )


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Load a run directory: config, model with its weights (on ``device``), encoders.

    A directory that is not a run raises ``UsageError`` saying how to create one.
    """
    import torch

    from mmtk.data import LabelEncoder
    from mmtk.models import MODELS
    from mmtk.tabular import TabularPreprocessor
    from mmtk.training.inputs import specs_from_json

    path = Path(path)
    recover_replaced(path)
    config_path = path / CONFIG
    if not config_path.is_file():
        raise UsageError(
            f"{path} is not an mmtk run directory (no {CONFIG})",
            f"create one with: mmtk train DATA --features ... --model gmu --task label --out {path}",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{config_path} cannot be read as JSON ({exc})", "the run is damaged; retrain it") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise UsageError(f"{config_path} is not an mmtk run config (format {found!r}, expected {RUN_FORMAT!r})", "retrain the run")
    weights = path / WEIGHTS
    if not weights.is_file():
        raise UsageError(f"{path} has no {WEIGHTS}", "the run is incomplete; retrain it")
    state = _read_weights(weights, config.get(WEIGHTS_SHA256))
    try:
        model_cfg = config["model"]
        encoders = {task["name"]: LabelEncoder.from_json(task["encoder"]) for task in config["tasks"]}
        target_stats = {task["name"]: task["target_stats"] for task in config["tasks"] if task.get("target_stats")}
        tabular = TabularPreprocessor.from_json(config["tabular"]) if "tabular" in config else None
        params = model_cfg["params"] if "params" in model_cfg else model_cfg["hyperparameters"]
        # A model built on pretrained weights is rebuilt from its recorded architecture
        # (the run's weights replace them; the checkpoint may be gone or on a hub).
        rebuilt = {"built_from": model_cfg["built_from"]} if model_cfg.get("built_from") else {}
        model = MODELS.get(model_cfg["name"])(specs_from_json(model_cfg), model_cfg["heads"], **params, **rebuilt)
        if config.get("finetune"):  # fine-tuned towers in front of the fusion model
            from mmtk.finetune.model import rebuild

            model = rebuild(path, config, model)
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as exc:
        # load_state_dict lists its mismatches on several lines; the CLI prints one.
        detail = " ".join(str(exc).split())
        raise UsageError(f"{config_path} does not match the run's model ({type(exc).__name__}: {detail})", "retrain the run") from None
    model.to(torch.device(device)).eval()
    return Run(path=path, config=config, model=model, encoders=encoders, target_stats=target_stats, tabular=tabular)


def _read_weights(weights: Path, recorded_sha256: str | None) -> dict:
    """The tensors of ``weights``, refused with a ``DataError`` when the file is damaged:
    its SHA-256 differs from the one config.json recorded, or it does not parse as
    safetensors (zero bytes, truncated, a changed header)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = weights.read_bytes()
    # Runs written before mmtk recorded the checksum have none; they still load, and only
    # the safetensors parse below can catch damage to them.
    if recorded_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != recorded_sha256:
            raise DataError(
                f"{weights} is damaged: its SHA-256 is {actual[:12]}..., config.json recorded {str(recorded_sha256)[:12]}...",
                RESTORE_HINT,
            )
    try:
        return load(data)
    except SafetensorError as exc:
        raise DataError(f"{weights} is damaged: not a readable safetensors file ({' '.join(str(exc).split())})", RESTORE_HINT) from None
