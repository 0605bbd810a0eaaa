"""Feature references (``BACKBONE[:seq][@COLUMN]``, ``tabular``, ``run:PATH``,
``tokens@COLUMN``) and the feature sources that turn them into model inputs aligned with
a dataset's records.

``FEATURE_SOURCES`` is a registry: ``stored`` (backbone features cached in the store,
keyed by the backbone's fingerprint and each value's content key), ``tabular`` (columns
encoded by preprocessors fitted on the training part) and ``run`` (the output
probabilities of an existing run directory over the same items: stacking, cached teacher
predictions), and ``tokens`` (a text column's word-piece ids, for models that run
their own BERT encoder: ``mmtk.tokens``). A reference goes to the first source that
claims it; ``gather_inputs`` returns one ``Gathered`` per reference: vectors, or sequences with lengths (in memory,
or as a ``SequenceReader`` left in the store) when the model takes them unpooled, and
which items have the modality at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from mmtk.backbones.base import FeatureOptions
from mmtk.backbones.registry import absolute_spec
from mmtk.errors import DataError, StoreError, UsageError, where
from mmtk.registry import Registry
from mmtk.finetune.inputs import RawFeatures
from mmtk.tokens import TokenFeatures, is_tokens_ref, parse_tokens_ref

SEQUENCE_MARK = ":seq"
FEATURE_FORMS = (
    "BACKBONE, BACKBONE:seq (a stored sequence), BACKBONE@COLUMN (e.g. minilm@title) or tabular "
    "(categorical and numerical columns, fitted at train time) or run:PATH (a trained run's output probabilities) "
    "or tokens@COLUMN (word pieces, for visualbert and tinybert)"
)
#: The feature built from tabular columns by preprocessors fitted at train time (see
#: ``mmtk.tabular``); not a backbone and never in the store.
TABULAR = "tabular"
#: Prefix of a reference to a run directory's outputs (``run:runs/text``).
RUN_PREFIX = "run:"
#: How sequences become one vector per item for models that take vectors.
POOLS = ("mean", "mean-std", "max")
#: What to do with an item that lacks a modality (no image, empty text).
MISSING_MODALITY = ("fail", "skip", "zero", "mask")


@dataclass(frozen=True)
class FeatureRef:
    """One model input: a backbone spec, whether its stored sequences are wanted, the
    dataset column it encodes (None: the column of the backbone's modality), and the
    extraction options its fingerprint depends on (``--max-length``, ``--fps``, ...)."""

    backbone: str
    sequence: bool = False
    column: str | None = None
    options: FeatureOptions = field(default_factory=FeatureOptions)
    # The folder a relative ``run:`` path is inside (a stack run's ``run:members/NAME``,
    # set by ``Run.feature_refs``): not part of the reference's name or record, so the
    # stack's inputs keep their names wherever the run directory is moved.
    base: str | None = field(default=None, compare=False)
    finetune: bool = False  # the backbone runs inside the model on raw data (mmtk.finetune)

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        """Parse ``BACKBONE[:seq][@COLUMN]``.

        Backbone specs may contain ``@`` themselves (open_clip's ``clip:MODEL@PRETRAINED``),
        so an ``@`` starts the column only when the text before it is a complete backbone
        spec: ``clip@text`` and ``clip:ViT-B-32@laion2b_s34b_b79k@text`` name the column
        ``text``, while ``clip:ViT-B-32@laion2b_s34b_b79k`` is a backbone alone (because
        ``clip:ViT-B-32`` names no weights).
        """
        body = text.strip()
        if not body:
            raise UsageError("empty feature reference", f"write {FEATURE_FORMS}")
        if body.startswith(RUN_PREFIX):
            if not body[len(RUN_PREFIX):].strip():
                raise UsageError(f"feature reference {text!r} names no run directory", "write run:PATH, e.g. run:runs/text")
            # Absolute, like backbone paths: the run that records it may be used from elsewhere.
            return cls(backbone=RUN_PREFIX + str(Path(body[len(RUN_PREFIX):].strip()).absolute()))
        if is_tokens_ref(body):
            tokenizer, column = parse_tokens_ref(body)
            return cls(backbone=tokenizer, column=column)
        column = None
        head, at, tail = body.rpartition("@")
        if at and tail and _is_backbone_spec(head.removesuffix(SEQUENCE_MARK)):
            body, column = head, tail.strip()
        elif at and not tail:
            raise UsageError(f"feature reference {text!r} ends with '@'", f"write {FEATURE_FORMS}")
        if body != TABULAR and body.startswith(TABULAR) and body[len(TABULAR)] in ":@":
            raise UsageError(
                f"feature reference {text!r}: tabular takes no ':seq' or '@COLUMN'",
                "write tabular and name its columns with --cat-cols/--num-cols or --columns FILE",
            )
        sequence = body.endswith(SEQUENCE_MARK)
        backbone = body.removesuffix(SEQUENCE_MARK).strip()
        if not backbone:
            raise UsageError(f"feature reference {text!r} names no backbone", f"write {FEATURE_FORMS}")
        # Runs record the reference: a relative model path would not be found from elsewhere.
        return cls(backbone=absolute_spec(backbone), sequence=sequence, column=column)

    @property
    def is_tabular(self) -> bool:
        """Whether this is the ``tabular`` feature (fitted at train time, not stored)."""
        return self.backbone == TABULAR and not self.sequence and self.column is None

    @property
    def source(self) -> str:
        """The name of the feature source that provides this input (``FEATURE_SOURCES``)."""
        return source_for(self).name

    @property
    def run_dir(self) -> Path:
        """The run directory of a ``run:PATH`` reference (a relative PATH inside ``base``)."""
        path = Path(self.backbone[len(RUN_PREFIX):])
        return path if path.is_absolute() or self.base is None else Path(self.base) / path

    @property
    def name(self) -> str:
        """Canonical text form; the key of this input in models, runs and ``--explain``."""
        return self.backbone + (SEQUENCE_MARK if self.sequence else "") + (f"@{self.column}" if self.column else "")

    def to_json(self) -> dict:
        data = {"ref": self.name, "backbone": self.backbone, "sequence": self.sequence, "column": self.column}
        if self.options.to_json():
            data["options"] = self.options.to_json()
        if self.finetune:
            data["finetune"] = True
        return data

    @classmethod
    def from_json(cls, data: dict) -> FeatureRef:
        return cls(
            backbone=str(data["backbone"]),
            sequence=bool(data["sequence"]),
            column=data.get("column"),
            options=FeatureOptions.from_json(data.get("options")),
            finetune=bool(data.get("finetune", False)),
        )


def _is_backbone_spec(text: str) -> bool:
    from mmtk.backbones import resolve_backbone

    try:
        resolve_backbone(text)
    except UsageError:
        return False
    return True


def parse_feature_refs(texts: Sequence[str | FeatureRef], options: FeatureOptions | None = None) -> list[FeatureRef]:
    """Parse a list of references; the same input named twice is refused. ``options``
    (the command's ``--max-length``/``--fps``/``--frames``) is set on every parsed text;
    references given as ``FeatureRef`` keep their own."""
    refs = [
        t if isinstance(t, FeatureRef) else replace(FeatureRef.parse(t), options=options or FeatureOptions())
        for t in texts
    ]
    if not refs:
        raise UsageError("no features given", "name at least one, e.g. --features efficientnet-lite0,minilm")
    names = [ref.name for ref in refs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"feature {repeated[0]!r} is listed twice", "name each feature once")
    return refs


def required_columns(texts: Sequence[str | FeatureRef]) -> list[str]:
    """The roles or column names a dataset must fill for these features (the ``require``
    argument of ``read_dataset``): the explicit ``@COLUMN``, else the backbone's modality
    (``audio`` is met by a video column when there is no audio column: its audio track).
    The tabular feature requires nothing here: its cells may be empty (imputed)."""
    needed: list[str] = []
    for ref in parse_feature_refs(texts):
        for column in source_for(ref).required_columns(ref):
            if column not in needed:
                needed.append(column)
    return needed


@dataclass(frozen=True)
class ResolvedFeature:
    """A reference bound to a dataset: the backbone config (fingerprint, modality) and
    the dataset column whose values it encodes."""

    ref: FeatureRef
    backbone: object  # mmtk.backbones.BackboneConfig (kept untyped: no import at start-up)
    column: str

    @property
    def source(self) -> str:
        """The name of the feature source that provides this input (``FEATURE_SOURCES``)."""
        return source_for(self).name

    @property
    def name(self) -> str:
        return self.ref.name


def resolve_features(dataset, refs: Sequence[str | FeatureRef]) -> list[ResolvedFeature]:
    """Bind references to ``dataset``: find each column and resolve each backbone for the
    modality that column holds (clip's text tower for a text column), exactly as
    ``extract_features`` does, so the fingerprints match what extraction stored. No
    weights are loaded. Only stored features resolve: the other sources (tabular, run
    outputs) are not in the store."""
    from mmtk.backbones import resolve_backbone

    resolved = []
    for ref in parse_feature_refs(refs):
        if source_for(ref).name != "stored":
            continue
        column, modality = pick_column(dataset, ref.backbone, ref.column)
        config = resolve_backbone(ref.backbone, modality, sequence=ref.sequence, options=ref.options)
        resolved.append(ResolvedFeature(ref=ref, backbone=config, column=column))
    return resolved


def gather_features(
    dataset,
    resolved: Sequence[ResolvedFeature],
    store,
    *,
    extract_missing: bool = False,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """One float32 array ``(N, dim)`` per stored feature, row ``i`` for ``dataset.records[i]``.

    Sequences (``:seq``, and every feature of a backbone that only makes sequences, such
    as ``mfcc`` or video frames) are pooled by a masked mean over their valid steps.
    Missing store entries are computed first when ``extract_missing`` (evaluation and
    prediction on new data); otherwise a ``StoreError`` names the extract-features
    command that fills them.
    """
    context = GatherContext(store=store, extract_missing=extract_missing, device=device, progress=progress)
    return {feature.name: STORED.gather(dataset, feature, context).values for feature in resolved}


@dataclass
class Gathered:
    """One input for every record: ``values`` ``(N, d)`` vectors or ``(N, T, d)`` zero-padded
    sequences with ``lengths`` ``(N,)``; or, for sequences left in the store, a
    ``reader`` (``mmtk.store.gather.SequenceReader``) and ``values`` None; or word pieces:
    int64 ids ``(N, T)`` padded with 0, ``lengths`` and ``vocab`` (the vocabulary size,
    the input's width). ``present`` (bool ``(N,)``, None: all) says which items have the
    modality; absent items are zeros."""

    values: np.ndarray | None
    lengths: np.ndarray | None = None
    present: np.ndarray | None = None
    reader: Any = None
    vocab: int | None = None

    @property
    def kind(self) -> str:
        if self.vocab is not None:
            return "tokens"
        return "sequence" if self.lengths is not None or self.reader is not None else "vector"

    @property
    def dim(self) -> int:
        if self.vocab is not None:
            return int(self.vocab)
        return int(self.reader.dim if self.values is None else self.values.shape[-1])

    def subset(self, positions) -> Gathered:
        """The items at ``positions`` (a training or validation split)."""
        positions = np.asarray(positions, dtype=np.int64)
        return Gathered(
            values=None if self.values is None else self.values[positions],
            lengths=None if self.lengths is None else self.lengths[positions],
            present=None if self.present is None else self.present[positions],
            reader=None if self.reader is None else self.reader.subset(positions),
            vocab=self.vocab,
        )

    def nbytes(self) -> int:
        """Bytes this input takes in memory when gathered whole."""
        return self.reader.padded_nbytes() if self.values is None else int(self.values.nbytes)


@dataclass
class GatherContext:
    """How to gather: ``pool`` (one of ``POOLS``; None keeps sequences as sequences),
    ``lazy`` (sequences left in the store as readers, for the store-backed batch source),
    ``missing`` (``MISSING_MODALITY``: "fail" refuses an item without the modality, any
    other policy marks it absent), store extraction settings, and the fitted tabular
    preprocessor."""

    store: Any = None
    pool: str | None = "mean"
    lazy: bool = False
    missing: str = "fail"
    extract_missing: bool = False
    device: str = "auto"
    progress: Callable[[int, int], None] | None = None
    tabular: Any = None  # mmtk.tabular.TabularPreprocessor
    resolved: dict[str, ResolvedFeature] = field(default_factory=dict)
    towers: dict[str, Any] = field(default_factory=dict)  # fine-tuned inputs' towers (mmtk.finetune)


class FeatureSource(Protocol):
    """A kind of model input. ``claims(ref)``: whether the reference is this source's;
    ``required_columns(ref)``: the roles or columns a dataset must fill for it;
    ``gather(dataset, ref, context) -> Gathered``."""

    name: str

    def claims(self, ref: FeatureRef) -> bool: ...

    def required_columns(self, ref: FeatureRef) -> list[str]: ...

    def gather(self, dataset, ref, context: GatherContext) -> Gathered: ...


FEATURE_SOURCES: Registry = Registry("feature source")


def source_for(ref: FeatureRef) -> FeatureSource:
    """The source of ``ref``: the first registered (tabular, run, then stored) that claims it."""
    for name in ("tabular", "run", *[n for n in FEATURE_SOURCES.names() if n not in ("tabular", "run", "stored")], "stored"):
        source = FEATURE_SOURCES.get(name)
        if source.claims(ref):
            return source
    raise UsageError(f"no feature source provides {ref.name!r}", f"write {FEATURE_FORMS}")


def gather_inputs(dataset, refs: Sequence[FeatureRef], context: GatherContext) -> dict[str, Gathered]:
    """Every reference's input over ``dataset``, in reference order."""
    return {ref.name: source_for(ref).gather(dataset, ref, context) for ref in refs}


class StoredFeatures:
    """Backbone features from the feature store."""

    name = "stored"

    def claims(self, ref: FeatureRef) -> bool:
        return True

    def required_columns(self, ref: FeatureRef) -> list[str]:
        from mmtk.backbones import resolve_backbone

        return [ref.column or resolve_backbone(ref.backbone).modality]

    def gather(self, dataset, ref, context: GatherContext) -> Gathered:
        """``ref``: a ``FeatureRef`` or an already ``ResolvedFeature``."""
        from mmtk.data import content_keys

        feature = ref if isinstance(ref, ResolvedFeature) else context.resolved.get(ref.name) or resolve_features(dataset, [ref])[0]
        config, store = feature.backbone, context.store
        values = dataset.values(feature.column)
        present = presence(dataset, values, config.modality, column=feature.column, feature=feature.name, missing=context.missing)
        if context.missing == "fail":
            present = None
        else:
            values = [v for v, there in zip(values, present) if there]
        keys = content_keys(values, config.modality)
        missing = store.missing(config.fingerprint, keys)
        if missing and context.extract_missing:
            from mmtk.extract import extract_features

            extract_features(
                dataset if present is None else dataset.subset(np.flatnonzero(present)),
                feature.ref.backbone, store=store, column=feature.column, sequence=feature.ref.sequence,
                options=feature.ref.options, device=context.device, progress=context.progress,
            )
        elif missing:
            raise _not_stored(dataset, feature, store, missing, keys, f"{config.spec} ({config.modality}) features")
        gathered = self._read(store, config, keys, context)
        if present is None or present.all():
            return gathered
        return _scatter(gathered, present)

    @staticmethod
    def _read(store, config, keys: list[str], context: GatherContext) -> Gathered:
        # Sequence forms (:seq) and backbones that only make sequences (mfcc, video frames).
        if config.kind != "sequence":
            return Gathered(np.ascontiguousarray(store.gather(config.fingerprint, keys), dtype=np.float32))
        if context.pool is None and context.lazy:
            return Gathered(None, reader=store.sequence_reader(config.fingerprint, keys))
        steps, lengths = store.gather_sequences(config.fingerprint, keys)
        if context.pool is None:
            return Gathered(steps, lengths=lengths)
        return Gathered(pool_steps(steps, lengths, context.pool))


def _scatter(gathered: Gathered, present: np.ndarray) -> Gathered:
    """``gathered`` (rows of the present items only) spread over every item, absent ones
    zero (empty sequences)."""
    rows = np.flatnonzero(present)
    if gathered.reader is not None:
        reader = gathered.reader
        full = [np.full(len(present), -1, dtype=np.int64), np.zeros(len(present), dtype=np.int64), np.zeros(len(present), dtype=np.int64)]
        for array, values in zip(full, (reader.shard_ids, reader.offsets, reader.lengths)):
            array[rows] = values
        return Gathered(None, present=present, reader=type(reader)(reader.root, reader.shards, *full, reader.dim, reader.max_len))
    values = np.zeros((len(present), *gathered.values.shape[1:]), dtype=np.float32)
    values[rows] = gathered.values
    lengths = None
    if gathered.lengths is not None:
        lengths = np.zeros(len(present), dtype=np.int64)
        lengths[rows] = gathered.lengths
    return Gathered(values, lengths=lengths, present=present)


def presence(dataset, values: Sequence[Any], modality: str, *, column: str, feature: str, missing: str) -> np.ndarray:
    """Which items have a ``modality`` value (bool ``(N,)``); with ``missing="fail"`` an
    item without one is a ``DataError`` naming its file and line (every feature source
    that reads a column itself: stored features, word pieces, fine-tuned raw media)."""
    present = np.array([has_value(v, modality) for v in values], dtype=bool)
    if missing == "fail" and not present.all():
        record = dataset.records[int(np.flatnonzero(~present)[0])]
        raise DataError(
            f"{where(dataset.source, record.line, record.id)}: no {column} value for feature {feature} ({int((~present).sum())} such items)",
            "fill it in, or train with --missing-modality skip|zero|mask",
        )
    return present


def has_value(value, modality: str) -> bool:
    """Whether an item has this modality at all: a non-blank value (as ``read_dataset``
    judges blank). A file that is named but cannot be read is bad data, not an absent
    modality."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def drop_incomplete(dataset, refs):
    """``dataset`` without the items that lack any stored feature's modality
    (``--missing-modality skip``); they are listed in ``dataset.skipped``."""
    from mmtk.data import BadItem

    keep, dropped = [], []
    columns = [(f.name, f.column, f.backbone.modality) for f in resolve_features(dataset, refs)]
    columns += [(ref.name, dataset.column_for(ref.column or "text"), "text") for ref in parse_feature_refs(refs) if ref.source == "tokens"]
    columns += [(ref.name, *pick_column(dataset, ref.backbone, ref.column)) for ref in parse_feature_refs(refs) if ref.finetune]
    for i, record in enumerate(dataset.records):
        lacking = [name for name, column, modality in columns if not has_value(record.values.get(column), modality)]
        if lacking:
            dropped.append(BadItem(str(dataset.source), record.line, record.id, f"no {', '.join(lacking)} input (--missing-modality skip)"))
        else:
            keep.append(i)
    if not dropped:
        return dataset
    return replace(dataset.subset(keep), skipped=list(dataset.skipped) + dropped)


class TabularFeatures:
    """The ``tabular`` input: the dataset's categorical and numerical columns through the
    preprocessor fitted on the training part (``context.tabular``)."""

    name = "tabular"

    def claims(self, ref: FeatureRef) -> bool:
        return ref.is_tabular

    def required_columns(self, ref: FeatureRef) -> list[str]:
        return []  # cells may be empty: they are imputed

    def gather(self, dataset, ref, context: GatherContext) -> Gathered:
        if context.tabular is None:
            raise UsageError("feature tabular needs its fitted preprocessor", "give its columns with --cat-cols/--num-cols or --columns")
        return Gathered(np.ascontiguousarray(context.tabular.transform(dataset), dtype=np.float32))


class RunOutputs:
    """``run:PATH``: the output probabilities of a trained run over the same items (binary
    tasks give p(positive), regression its value), tasks in the run's order: a stacking
    member's scores, or a teacher's cached predictions."""

    name = "run"

    def claims(self, ref: FeatureRef) -> bool:
        return ref.backbone.startswith(RUN_PREFIX)

    def required_columns(self, ref: FeatureRef) -> list[str]:
        import json

        from mmtk.runs import CONFIG

        path = ref.run_dir / CONFIG
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UsageError(f"feature {ref.name}: {path} cannot be read", "name a run directory written by mmtk train") from None
        roles = {"tokens": "text"}  # word pieces read the text column by default
        return [
            entry["column"] or roles.get(entry["modality"], entry["modality"])
            for entry in config["features"] if entry["modality"] not in ("tabular", "run")
        ]

    def gather(self, dataset, ref, context: GatherContext) -> Gathered:
        from mmtk.models.objectives import to_outputs
        from mmtk.inference import open_run, run_model

        run = open_run(ref.run_dir, "cpu")
        logits, _ = run_model(run, dataset, context.store, device="cpu", extract_missing=context.extract_missing)
        columns = []
        for task in run.tasks:
            outputs = to_outputs(run.kind(task), logits[task], run.target_stats.get(task))
            columns.append(outputs[:, 1:] if run.kind(task) == "binary" else outputs.reshape(len(outputs), -1))
        return Gathered(np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.float32))


STORED = StoredFeatures()
FEATURE_SOURCES.add("stored", STORED, "backbone features cached in the feature store (BACKBONE[:seq][@COLUMN])")
FEATURE_SOURCES.add("tabular", TabularFeatures(), "categorical and numerical columns, preprocessors fitted on the training part")
FEATURE_SOURCES.add("run", RunOutputs(), "a trained run's output probabilities over the same items (run:PATH)")
FEATURE_SOURCES.add("tokens", TokenFeatures(), "a text column's word-piece ids, computed at gather time (tokens@COLUMN)")
FEATURE_SOURCES.add("finetune", RawFeatures(), "a fine-tuned backbone's raw inputs: token ids or image paths (train --finetune)")


def pick_column(dataset, backbone, column: str | None) -> tuple[str, str]:
    """The column to read and the modality to encode it as. A column that plays the
    image or text role is encoded as that; any other column holds text (readers only
    resolve media paths for media roles). An audio backbone reads the audio column, or
    the audio track of the video column when there is no audio column; an image
    backbone reads a video column as sampled frames (modality "video"). ``backbone``
    is a spec, or a ``BackboneConfig`` already resolved for its default modality."""
    from mmtk.backbones import resolve_backbone
    from mmtk.backbones.base import MODALITIES, VIDEO

    def backbone_modality() -> str:
        return backbone.modality if hasattr(backbone, "modality") else resolve_backbone(backbone).modality

    if column is None:
        modality = backbone_modality()
        if modality == "audio" and dataset.columns.audio is None and dataset.columns.video is not None:
            return dataset.columns.video, "audio"
        return dataset.column_for(modality), modality
    name = dataset.column_for(column)
    role = dataset.role_of(name)
    if role == VIDEO:
        modality = backbone_modality()
        if modality == "audio":
            return name, "audio"  # the video's audio track
        if modality == "image":
            return name, VIDEO  # frames sampled from the video
        spec = getattr(backbone, "spec", backbone)
        raise UsageError(
            f"column {name!r} holds video, which {spec!r} ({modality}) cannot encode",
            "use an image backbone (frames) or an audio backbone (its audio track) on a video column",
        )
    if role is not None and role not in MODALITIES:
        raise UsageError(
            f"column {name!r} holds {role}, which no backbone here encodes", f"choose a column with {' or '.join(MODALITIES)}"
        )
    return name, role or "text"


def items_with_features(
    dataset,
    resolved: Sequence[ResolvedFeature],
    store,
    *,
    extract_missing: bool = False,
    on_error: str = "fail",
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    absent_ok: bool = False,
) -> tuple:
    """``(dataset, skipped)``: ``dataset`` narrowed to the records whose features are all
    stored, and a ``BadItem`` for each record left out, in dataset order. With
    ``absent_ok`` (a run with a ``--missing-modality`` policy) a record without a value
    for a feature's column needs no feature there.

    With ``extract_missing`` the missing features are extracted first, with ``on_error``
    passed on, so an item that cannot be encoded is named with the reason. Without it
    (training), a record whose features are missing while others' are stored was most
    likely skipped at extraction. ``on_error="fail"`` raises instead of leaving records
    out, as does a feature missing for every record (extraction never ran: the error
    names the command) or a dataset left with no records at all.
    """
    from mmtk.data import BadItem, content_keys
    from mmtk.errors import DataError

    left_out: dict[int, BadItem] = {}
    first_feature = None  # the feature that left out record 0
    for feature in resolved:
        config = feature.backbone
        values = dataset.values(feature.column)
        rows = [i for i, value in enumerate(values) if not absent_ok or has_value(value, config.modality)]
        part = dataset if len(rows) == len(values) else dataset.subset(rows)
        keys = content_keys([values[i] for i in rows], config.modality)
        missing = set(store.missing(config.fingerprint, keys))
        reasons: dict[tuple[int, str], BadItem] = {}
        if missing and extract_missing:
            from mmtk.extract import extract_features

            report = extract_features(
                part, feature.ref.backbone, store=store, column=feature.column, sequence=feature.ref.sequence,
                options=feature.ref.options, device=device, on_error=on_error, progress=progress,
            )
            reasons = {(bad.line, bad.item): bad for bad in report.skipped}
            missing = set(store.missing(config.fingerprint, keys))
        if not missing:
            continue
        if on_error == "fail" or (not extract_missing and missing == set(keys)):
            raise _not_stored(dataset, feature, store, sorted(missing), keys, f"{config.spec} ({config.modality}) features")
        for row, key in zip(rows, keys):
            record = dataset.records[row]
            if key in missing and row not in left_out:
                first_feature = feature if row == 0 else first_feature
                left_out[row] = reasons.get((record.line, record.id)) or BadItem(
                    str(dataset.source), record.line, record.id,
                    f"no {config.spec} ({config.modality}) features in store {store.root} (skipped at extraction?)",
                )
    if not left_out:
        return dataset, []
    if len(left_out) == len(dataset.records):
        raise DataError(
            f"every item of {dataset.source} was left out, the first: {left_out[0].one_line()}",
            f"fix them; this lists each one: {_extract_command(dataset, first_feature, store)} --on-error skip",
        )
    kept = dataset.subset(row for row in range(len(dataset.records)) if row not in left_out)
    return kept, [left_out[row] for row in sorted(left_out)]


def gather_timestamps(
    dataset, ref: str | FeatureRef, store, options: FeatureOptions | None = None
) -> list[np.ndarray]:
    """The times of the frames a video feature holds (``pixels@video``, with the
    ``--fps``/``--frames`` it was extracted with: ``options`` for a text ``ref``): for each
    record, in order, a float32 array (T_i,) of seconds from the video's first frame, one
    per stored frame. Missing items raise ``StoreError`` naming the extract-features
    command that fills them."""
    from mmtk.data import content_keys

    resolved = resolve_features(dataset, parse_feature_refs([ref], options))
    if not resolved or resolved[0].backbone.modality != "video":
        raise UsageError(
            f"feature {resolved[0].name if resolved else ref!r} does not encode video frames, so it has no frame times",
            "name an image backbone on a video column, e.g. pixels@video",
        )
    feature = resolved[0]
    fingerprint = feature.backbone.settings["timestamps"]  # the frames' companion feature set
    keys = content_keys(dataset.values(feature.column), "video")
    missing = store.missing(fingerprint, keys)
    if missing:
        raise _not_stored(dataset, feature, store, missing, keys, f"frame times for {feature.name}", "videos")
    steps, lengths = store.gather_sequences(fingerprint, keys)
    return [steps[i, : lengths[i], 0].copy() for i in range(len(keys))]


def _not_stored(dataset, feature: ResolvedFeature, store, missing, keys, what: str, items: str = "items") -> StoreError:
    """The error for ``items`` of ``feature`` that have no ``what`` in ``store``, naming
    the extract-features command that fills them."""
    return StoreError(
        f"{len(missing)} of {len(set(keys))} {feature.column!r} {items} of {dataset.source} have no {what} "
        f"in store {store.root}",
        f"run: {_extract_command(dataset, feature, store)}",
    )


def _extract_command(dataset, feature: ResolvedFeature, store) -> str:
    """The extract-features command line that fills a feature's missing items."""
    from mmtk.paths import default_store_dir

    command = f"mmtk extract-features {dataset.source} --backbone {feature.ref.backbone} --column {feature.column}"
    if feature.ref.sequence and feature.backbone.modality != "video":
        command += " --sequence"
    # A test-time view (``view``) has no flag: extract-features computes the plain
    # features, which fail on the same bad items; evaluate/predict --tta store the views.
    options = {name: value for name, value in feature.ref.options.to_json().items() if name != "view"}
    command += "".join(f" --{name.replace('_', '-')} {value}" for name, value in options.items())
    if Path(store.root).resolve() != default_store_dir().resolve():
        command += f" --store {store.root}"
    return command


def load_features(
    dataset,
    refs: Sequence[str | FeatureRef],
    store,
    *,
    extract_missing: bool = False,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """``gather_features`` for references not yet bound to ``dataset``."""
    return gather_features(
        dataset, resolve_features(dataset, refs), store, extract_missing=extract_missing, device=device, progress=progress
    )


def masked_mean(steps: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean over the first ``lengths[i]`` steps of ``steps[i]`` (``(N, T, d)`` -> ``(N, d)``);
    an empty sequence pools to zeros rather than NaN."""
    steps = np.asarray(steps, dtype=np.float32)
    lengths = np.asarray(lengths).astype(np.int64)
    mask = (np.arange(steps.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
    totals = np.einsum("ntd,nt->nd", steps, mask)
    return (totals / np.maximum(lengths, 1)[:, None]).astype(np.float32)


def pool_steps(steps: np.ndarray, lengths: np.ndarray, pool: str) -> np.ndarray:
    """Sequences ``(N, T, d)`` to vectors over their valid steps: ``mean`` ``(N, d)``,
    ``mean-std`` (statistics pooling: mean and standard deviation, ``(N, 2d)``) or
    ``max`` ``(N, d)``. Empty sequences pool to zeros."""
    if pool == "mean":
        return masked_mean(steps, lengths)
    steps = np.asarray(steps, dtype=np.float32)
    lengths = np.asarray(lengths).astype(np.int64)
    valid = np.arange(steps.shape[1])[None, :] < lengths[:, None]
    if pool == "max":
        if steps.shape[1] == 0:
            return np.zeros((len(steps), steps.shape[2]), dtype=np.float32)
        peak = np.where(valid[:, :, None], steps, -np.inf).max(axis=1)
        return np.where(np.isfinite(peak), peak, 0.0).astype(np.float32)
    if pool == "mean-std":
        mean = masked_mean(steps, lengths)
        centred = (steps - mean[:, None, :]) * valid[:, :, None]
        var = np.einsum("ntd,ntd->nd", centred, centred) / np.maximum(lengths, 1)[:, None]
        return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)
    raise UsageError(f"unknown --pool {pool!r}", f"choose one of: {', '.join(POOLS)}")
