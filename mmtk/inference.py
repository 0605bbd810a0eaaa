"""Running a trained run over a dataset: what ``evaluate`` and ``predict`` share.

``open_run`` loads a run (or passes a loaded one through), ``read_for_run`` reads a
dataset with the columns the run's inputs need, and ``run_model`` gathers those inputs
through the feature sources exactly as training did (pooling, missing-modality policy,
standardisation: the run's ``preprocessing``) and returns the logits per task.
"""

from __future__ import annotations

from typing import Mapping


def open_run(run_dir, device: str = "auto"):
    """``load_run`` on the resolved device; a ``Run`` already loaded is used as it is, so
    a caller that read the data with it (``read_for_run``) does not load the weights twice."""
    from mmtk.device import resolve_device
    from mmtk.runs import Run, load_run

    if isinstance(run_dir, Run):
        return run_dir
    return load_run(run_dir, device=resolve_device(device))


def read_for_run(
    run, data, columns: Mapping[str, str | None] | None = None, *, require_labels: bool = False, on_error: str = "fail",
    dataset_name: str | None = None,
):
    """``data`` as a Dataset: a path is read requiring the columns the run's features
    encode (``require_labels`` adds the label columns); a Dataset is used as it is.
    ``on_error="skip"`` leaves out the items that lack them (``dataset.skipped``). A run
    trained with ``--missing-modality zero|mask|skip`` accepts blank cells in those
    columns; with ``skip`` such items are left out (and listed in ``dataset.skipped``).
    A run trained on several datasets requires the labels of ``dataset_name``'s heads;
    without it, which heads are scored depends on the columns read, so none is required
    here (a blank label is refused when it is encoded)."""
    from mmtk.data import Dataset, read_dataset
    from mmtk.features import drop_incomplete, required_columns

    policy = run.preprocessing["missing_modality"]
    if not isinstance(data, Dataset):
        needed = required_columns(run.feature_refs)
        labels = _label_columns(run, dataset_name) if require_labels else []
        overrides = {k: v for k, v in (columns or {}).items() if v}
        if policy == "fail":
            data = read_dataset(data, require=list(dict.fromkeys(needed + labels)), on_error=on_error, **overrides)
        else:
            data = read_dataset(data, require=labels, optional=needed, on_error=on_error, **overrides)
    return drop_incomplete(data, run.feature_refs) if policy == "skip" else data


def _label_columns(run, dataset_name: str | None) -> list[str]:
    datasets = run.config.get("datasets")
    if not datasets:
        return run.label_columns
    if dataset_name is None:
        return []
    from mmtk.multidata import pick_tasks

    tasks = pick_tasks(run, None, dataset_name)
    return list(dict.fromkeys(column for task in tasks for column in run.encoders[task].task.columns))


def usable_items(run, dataset, store, *, on_error: str = "fail", device: str = "auto", progress=None) -> tuple:
    """``(dataset, skipped)``: the records of ``dataset`` that have every feature the run
    needs, after extracting the missing ones with ``on_error`` (``"skip"`` leaves out,
    and lists as ``BadItem``s, the items that cannot be encoded); see
    ``mmtk.features.items_with_features``. The backbones are checked against the run's
    fingerprints before anything is extracted."""
    from mmtk.features import items_with_features, resolve_features

    resolved = resolve_features(dataset, run.feature_refs)
    run.check_fingerprints(resolved)
    return items_with_features(
        dataset, resolved, store, extract_missing=True, on_error=on_error, device=device, progress=progress,
        absent_ok=run.preprocessing["missing_modality"] != "fail",
    )


def run_model(run, dataset, store, *, explain: bool = False, device: str = "auto", extract_missing: bool = True, progress=None):
    """Logits per task for every record of ``dataset`` (and gate weights with
    ``explain``), after checking the backbones still match the run's fingerprints."""
    source = run_source(run, dataset, store, device=device, extract_missing=extract_missing, progress=progress)
    return forward_source(run, source, device=device, explain=explain)


def forward_source(run, source, *, device: str = "auto", explain: bool = False):
    """``run_model`` over a source already gathered (``run_source``), for a caller that
    runs it more than once (evaluate's distillation report)."""
    out = forward_run(run, source, device=device, explain=explain)
    return out.logits, out.weights


def forward_run(run, source, *, device: str = "auto", explain: bool = False, queries: bool = False):
    """``mmtk.models.inference.forward_outputs`` of ``run``'s model over ``source`` with
    mmtk's CPU thread count: logits, and gate weights (``explain``) and class-query
    decoder outputs (``queries``) from the same pass."""
    from mmtk.device import resolve_device
    from mmtk.models.inference import cpu_threads, forward_outputs

    with cpu_threads(resolve_device(device)):
        return forward_outputs(run.model, source, explain=explain, queries=queries)


def run_source(run, dataset, store, *, device: str = "auto", extract_missing: bool = True, progress=None):
    """The in-memory batch source of ``dataset``'s inputs for ``run``, gathered as
    training gathered them (what ``run_model`` runs the model over; distillation runs
    a teacher over it with modalities removed)."""
    from mmtk.device import resolve_device
    from mmtk.features import GatherContext, gather_inputs, resolve_features
    from mmtk.training.data import hide_presence, memory_source
    from mmtk.training.normalize import Standardizer

    resolved = resolve_features(dataset, run.feature_refs)
    run.check_fingerprints(resolved)
    prep = run.preprocessing
    context = GatherContext(
        store=store, pool=prep["pool"], missing="fail" if prep["missing_modality"] in ("fail", "skip") else prep["missing_modality"],
        extract_missing=extract_missing, device=device, progress=progress, tabular=run.tabular,
        resolved={feature.name: feature for feature in resolved},
    )
    context.towers = getattr(run.model, "tower_map", {})  # fine-tuned inputs are read raw, through the run's towers
    gathered = gather_inputs(dataset, run.feature_refs, context)
    torch_device = resolve_device(device)
    if context.towers:
        from mmtk.finetune.inputs import item_labels
        from mmtk.finetune.media import DEFAULT_WORKERS, media_source

        workers = run.config["finetune"]["settings"].get("workers")
        source = media_source(
            gathered, {}, None, torch_device, Standardizer.from_json(prep["standardize"]), context.towers, item_labels(dataset),
            train=False, workers=DEFAULT_WORKERS if workers is None else workers,
        )
    else:
        source = memory_source(gathered, {}, None, torch_device, Standardizer.from_json(prep["standardize"]))
    if prep["missing_modality"] == "zero":
        hide_presence(source)
    return source
