"""Several datasets in one run (``mmtk train A.jsonl B.jsonl``): naming them, binding
tasks to them, and gathering their items into the arrays one batch source holds.

Decisions (docs/ARCHITECTURE.md, "Several datasets"):
- Names are the files' stems (a folder's name), made unique with ``-2``, ``-3``...,
  unless given as ``--dataset NAME=PATH``.
- A ``--task`` applies to every dataset that has all its label columns, and makes one
  head per dataset, named ``DATASET/TASK``: two datasets that both call a column
  ``label`` (Hateful Memes' hate, MAMI's misogyny) mean different things by it, so
  they share the trunk, not the head. A task no dataset has is a ``UsageError``.
- Every item carries a target for every head; ``target_masks`` are False for the heads
  of other datasets, so an item never enters another dataset's task loss.
- Validation is a seeded split of each dataset (``--val-split``, stratified on that
  dataset's first classification task), so every head is validated on its own data.
- The feature inputs, tabular preprocessor and standardisation are shared: fitted on
  the union of the training parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mmtk.errors import UsageError

SEPARATOR = "/"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


def name_datasets(paths: Sequence[str], named: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``(name, path)`` for every positional dataset ``path`` (named by its stem, made
    unique) and every ``NAME=PATH`` of ``named``; a bad or repeated name is a usage error."""
    pairs = []
    for text in named:
        name, equals, path = text.partition("=")
        if not equals or not name.strip() or not path.strip():
            raise UsageError(f"--dataset {text!r} is not NAME=PATH", "write e.g. --dataset hateful=data/hateful.jsonl")
        pairs.append((name.strip(), path.strip()))
    taken = {name for name, _ in pairs}
    for name, _ in pairs:
        check_name(name)
    repeated = sorted({name for name, _ in pairs if [n for n, _ in pairs].count(name) > 1})
    if repeated:
        raise UsageError(f"dataset name {repeated[0]!r} is given twice", "give each --dataset its own NAME")
    unnamed = []
    for path in paths:
        stem = "stdin" if path == "-" else (Path(path).stem or Path(path).name or "data")
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        unnamed.append((name, path))
    return unnamed + pairs


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f"dataset name {name!r} may hold only letters, digits, '_', '.' and '-'",
            "it prefixes the dataset's task names (NAME/TASK); choose e.g. hateful or mami",
        )


@dataclass(frozen=True)
class Binding:
    """One head: task ``spec`` (renamed ``DATASET/TASK``) of dataset ``dataset``;
    ``task`` is the name it was given by ``--task``."""

    spec: Any  # mmtk.data.TaskSpec
    dataset: str
    task: str

    @property
    def name(self) -> str:
        return self.spec.name


def bind_tasks(datasets: Mapping[str, Any], specs: Sequence[Any]) -> list[Binding]:
    """Every (dataset, task) pair whose label columns the dataset has, in dataset order;
    a task no dataset has, or a dataset with none of the tasks, is a ``UsageError``
    naming the datasets' columns."""
    bindings = []
    for spec in specs:
        owners = [name for name, dataset in datasets.items() if all(c in dataset.column_names for c in spec.columns)]
        if not owners:
            listing = "; ".join(f"{name}: {', '.join(ds.column_names)}" for name, ds in datasets.items())
            raise UsageError(
                f"task {spec.name!r} (column {', '.join(spec.columns)}) is in none of the datasets ({listing})",
                "name a label column one of the datasets has, or add the dataset that has it",
            )
    for name in datasets:
        own = [spec for spec in specs if all(c in datasets[name].column_names for c in spec.columns)]
        if not own:
            # Its items would enter no loss: most likely a mistyped task or a wrong file.
            raise UsageError(
                f"dataset {name!r} has none of the tasks' label columns ({', '.join(c for s in specs for c in s.columns)}; "
                f"its columns: {', '.join(datasets[name].column_names)})",
                "add a --task for a label column it has, or leave the dataset out",
            )
        bindings += [Binding(replace(spec, name=f"{name}{SEPARATOR}{spec.name}"), name, spec.name) for spec in own]
    return bindings


def task_weights_for(bindings: Sequence[Binding], weights: Mapping[str, float] | None) -> dict[str, float]:
    """``--task-weight`` per head: ``TASK=W`` weighs every dataset's head of that task,
    ``DATASET/TASK=W`` one head (and wins over the former)."""
    weights = dict(weights or {})
    known = {b.task for b in bindings} | {b.name for b in bindings}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise UsageError(
            f"--task-weight names no task {unknown[0]!r}", f"the tasks are: {', '.join(b.name for b in bindings)} (or a bare task name for all its heads)"
        )
    return {b.name: weights.get(b.name, weights.get(b.task, 1.0)) for b in bindings if b.name in weights or b.task in weights}


def concat_gathered(parts: Sequence[dict]) -> dict:
    """The ``Gathered`` inputs of several datasets (same inputs, same order) as one set of
    inputs over all their items, in order: vectors stacked; sequences padded to the
    longest; sequences left in the store as one reader over all items."""
    from mmtk.features import Gathered

    joined = {}
    for name in parts[0]:
        items = [part[name] for part in parts]
        present = None
        if any(item.present is not None for item in items):
            present = np.concatenate([np.ones(_count(item), dtype=bool) if item.present is None else item.present for item in items])
        if any(item.values is None for item in items):
            joined[name] = Gathered(values=None, lengths=None, present=present, reader=_join_readers([_reader_of(item) for item in items]))
        elif items[0].lengths is None:
            joined[name] = Gathered(values=np.concatenate([item.values for item in items]), present=present)
        else:
            steps = max(item.values.shape[1] for item in items)
            padded = [np.pad(item.values, ((0, 0), (0, steps - item.values.shape[1]), (0, 0))) for item in items]
            joined[name] = Gathered(values=np.concatenate(padded), lengths=np.concatenate([item.lengths for item in items]), present=present)
    return joined


def _count(item) -> int:
    return len(item.reader) if item.values is None else len(item.values)


def _reader_of(item):
    if item.values is None:
        return item.reader
    raise TypeError("cannot join a sequence left in the store with one gathered into memory")


def _join_readers(readers):
    from mmtk.store.gather import SequenceReader

    return SequenceReader.joined(readers)


def joined_dataset(parts: Sequence[Any]):
    """One ``Dataset`` holding the records of ``parts`` (for fitting what is shared: the
    tabular preprocessor); its source names every file."""
    from mmtk.data import Dataset

    return Dataset(
        source=Path("+".join(dict.fromkeys(str(part.source) for part in parts))), root=parts[0].root,
        records=[record for part in parts for record in part.records], columns=parts[0].columns,
    )


@dataclass
class Prepared:
    """What the recipe trains on: inputs and targets over every dataset's items
    (training part, then validation part, each in dataset order), the target masks,
    the positions of each dataset in them, the encoders of every head, and a record of
    each dataset for config.json."""

    train_x: dict
    val_x: dict
    train_y: dict
    val_y: dict
    train_masks: dict
    val_masks: dict
    train_groups: list
    val_groups: list
    encoders: dict
    resolved: list
    preprocessor: Any
    datasets: list[dict] = field(default_factory=list)
    dropped: list = field(default_factory=list)

    @property
    def val_rows(self) -> dict[str, np.ndarray]:
        """Per head, the validation rows of its dataset."""
        return {name: np.flatnonzero(mask) for name, mask in self.val_masks.items()}


def prepare(datasets: Mapping[str, Any], refs, bindings: Sequence[Binding], context, *, val_split: float, seed: int, tabular=None,
            missing_modality: str = "fail") -> Prepared:
    """Split each dataset (seeded, stratified on its first classification task), fit
    the shared tabular preprocessor on the training parts, gather every dataset's
    inputs, and encode each head's labels on its dataset (zeros, masked, elsewhere)."""
    from mmtk.data import fit_label_encoder
    from mmtk.features import drop_incomplete, gather_inputs, resolve_features
    from mmtk.train import _check_some_modality, _same_backbones, _strata, split_indices

    dropped = []
    if missing_modality == "skip":
        kept = {}
        for name, dataset in datasets.items():
            known = len(dataset.skipped)
            kept[name] = drop_incomplete(dataset, refs)
            dropped += kept[name].skipped[known:]
        datasets = kept
    parts = {}
    for name, dataset in datasets.items():
        own = [b.spec for b in bindings if b.dataset == name]
        train_idx, val_idx = split_indices(_strata(dataset, own), val_split, seed, dataset.source)
        parts[name] = (dataset, train_idx, val_idx)
    preprocessor = None
    if tabular is not None:
        from mmtk.tabular import fit_tabular

        preprocessor = fit_tabular(tabular, joined_dataset([ds.subset(t) for ds, t, _ in parts.values()]))
    context.tabular = preprocessor
    first_resolved = None
    train_parts, val_parts = [], []
    for name, (dataset, train_idx, val_idx) in parts.items():
        resolved = resolve_features(dataset, refs)
        first_resolved = resolved if first_resolved is None else _same_backbones(resolved, first_resolved)
        context.resolved = {feature.name: feature for feature in resolved}
        every = gather_inputs(dataset, refs, context)
        _check_some_modality(every, dataset)
        train_parts.append({n: item.subset(train_idx) for n, item in every.items()})
        val_parts.append({n: item.subset(val_idx) for n, item in every.items()})

    sizes = {name: (len(t), len(v)) for name, (_, t, v) in parts.items()}
    train_offsets, val_offsets = _offsets([s[0] for s in sizes.values()]), _offsets([s[1] for s in sizes.values()])
    names = list(parts)
    encoders, train_y, val_y, train_masks, val_masks = {}, {}, {}, {}, {}
    for b in bindings:
        dataset, train_idx, val_idx = parts[b.dataset]
        d = names.index(b.dataset)
        train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)
        encoder = fit_label_encoder(b.spec, train_ds)
        encoders[b.name] = encoder
        train_y[b.name], train_masks[b.name] = _spread(encoder.encode(train_ds), train_offsets, d)
        val_y[b.name], val_masks[b.name] = _spread(encoder.encode(val_ds), val_offsets, d)
    records = [
        {
            "name": name, "source": str(dataset.source), "items": len(dataset), "train_items": len(t), "val_items": len(v),
            "tasks": {b.name: b.task for b in bindings if b.dataset == name},
        }
        for name, (dataset, t, v) in parts.items()
    ]
    return Prepared(
        train_x=concat_gathered(train_parts), val_x=concat_gathered(val_parts), train_y=train_y, val_y=val_y,
        train_masks=train_masks, val_masks=val_masks,
        train_groups=[np.arange(train_offsets[d], train_offsets[d + 1]) for d in range(len(names))],
        val_groups=[np.arange(val_offsets[d], val_offsets[d + 1]) for d in range(len(names))],
        encoders=encoders, resolved=first_resolved, preprocessor=preprocessor, datasets=records, dropped=dropped,
    )


def _offsets(sizes: Sequence[int]) -> list[int]:
    return [0, *np.cumsum(sizes).tolist()]


def _spread(y: np.ndarray, offsets: Sequence[int], d: int) -> tuple[np.ndarray, np.ndarray]:
    """One dataset's targets placed at its rows of all datasets' items, zeros elsewhere,
    and the mask of its rows."""
    full = np.zeros((offsets[-1], *y.shape[1:]), dtype=y.dtype)
    full[offsets[d]:offsets[d + 1]] = y
    mask = np.zeros(offsets[-1], dtype=bool)
    mask[offsets[d]:offsets[d + 1]] = True
    return full, mask


def pick_tasks(run, dataset=None, dataset_name: str | None = None, *, labelled: bool = True) -> list[str]:
    """The heads of a run that ``evaluate`` (``labelled``) or ``predict`` uses.

    A run trained on one dataset: all its tasks. Several: ``dataset_name``'s heads; else
    for evaluate the heads whose label columns ``dataset`` has (refusing two datasets'
    heads that read the same column: which one is meant is ambiguous), for predict every
    head."""
    datasets = run.config.get("datasets")
    if not datasets:
        if dataset_name is not None:
            raise UsageError(f"--dataset-name {dataset_name}: run {run.path} was trained on one dataset", "leave --dataset-name out")
        return run.tasks
    heads = {entry["name"]: list(entry["tasks"]) for entry in datasets}
    if dataset_name is not None:
        if dataset_name not in heads:
            raise UsageError(f"--dataset-name {dataset_name!r} is not a dataset of run {run.path}", f"choose one of: {', '.join(heads)}")
        return heads[dataset_name]
    if not labelled:
        return run.tasks
    columns = set(dataset.column_names)
    chosen = [task for task in run.tasks if all(c in columns for c in run.encoders[task].task.columns)]
    if not chosen:
        wanted = sorted({c for task in run.tasks for c in run.encoders[task].task.columns})
        raise UsageError(
            f"{dataset.source} has none of the label columns of run {run.path} ({', '.join(wanted)})",
            f"add the labels, or use `mmtk predict {run.path} {dataset.source}` for unlabelled data",
        )
    owner = {task: entry["name"] for entry in datasets for task in entry["tasks"]}
    by_column: dict[str, set] = {}
    for task in chosen:
        for column in run.encoders[task].task.columns:
            by_column.setdefault(column, set()).add(owner[task])
    shared = sorted(column for column, owners in by_column.items() if len(owners) > 1)
    if shared:
        owners = sorted(by_column[shared[0]])
        raise UsageError(
            f"{dataset.source}: column {shared[0]!r} is a label of datasets {', '.join(owners)} of run {run.path}, which mean different things by it",
            f"say which with --dataset-name ({' or '.join(owners)})",
        )
    return chosen
