"""Feature references (``BACKBONE[:seq][@COLUMN]``) and loading cached features as
arrays aligned with a dataset's records.

``train``, ``evaluate`` and ``predict`` all go through here: a reference resolves to a
backbone config (its fingerprint keys the store) and a column of the dataset (whose
values' content keys are the other half of the store key); the store then gathers one
array per reference in record order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmtk.backbones.base import FeatureOptions
from mmtk.backbones.registry import absolute_spec
from mmtk.errors import StoreError, UsageError

SEQUENCE_MARK = ":seq"
FEATURE_FORMS = (
    "BACKBONE, BACKBONE:seq (a stored sequence), BACKBONE@COLUMN (e.g. minilm@title) or tabular "
    "(categorical and numerical columns, fitted at train time)"
)
#: The feature built from tabular columns by preprocessors fitted at train time (see
#: ``mmtk.tabular``); not a backbone and never in the store.
TABULAR = "tabular"


@dataclass(frozen=True)
class FeatureRef:
    """One model input: a backbone spec, whether its stored sequences are wanted, the
    dataset column it encodes (None: the column of the backbone's modality), and the
    extraction options its fingerprint depends on (``--max-length``, ``--fps``, ...)."""

    backbone: str
    sequence: bool = False
    column: str | None = None
    options: FeatureOptions = field(default_factory=FeatureOptions)

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
    def name(self) -> str:
        """Canonical text form; the key of this input in models, runs and ``--explain``."""
        return self.backbone + (SEQUENCE_MARK if self.sequence else "") + (f"@{self.column}" if self.column else "")

    def to_json(self) -> dict:
        data = {"ref": self.name, "backbone": self.backbone, "sequence": self.sequence, "column": self.column}
        if self.options.to_json():
            data["options"] = self.options.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> FeatureRef:
        return cls(
            backbone=str(data["backbone"]),
            sequence=bool(data["sequence"]),
            column=data.get("column"),
            options=FeatureOptions.from_json(data.get("options")),
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
    from mmtk.backbones import resolve_backbone

    needed: list[str] = []
    for ref in parse_feature_refs(texts):
        if ref.is_tabular:
            continue
        column = ref.column or resolve_backbone(ref.backbone).modality
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
    def name(self) -> str:
        return self.ref.name


def resolve_features(dataset, refs: Sequence[str | FeatureRef]) -> list[ResolvedFeature]:
    """Bind references to ``dataset``: find each column and resolve each backbone for the
    modality that column holds (clip's text tower for a text column), exactly as
    ``extract_features`` does, so the fingerprints match what extraction stored. No
    weights are loaded. The tabular feature is skipped: it comes from fitted
    preprocessors (``mmtk.tabular``), not from the store."""
    from mmtk.backbones import resolve_backbone
    from mmtk.extract import pick_column

    resolved = []
    for ref in parse_feature_refs(refs):
        if ref.is_tabular:
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
    """One float32 array ``(N, dim)`` per feature, row ``i`` for ``dataset.records[i]``.

    Sequences (``:seq``, and every feature of a backbone that only makes sequences, such
    as ``mfcc`` or video frames) are pooled by a masked mean over their valid steps, since
    the fusion models take one vector per modality. Missing store entries are computed first
    when ``extract_missing`` (evaluation and prediction on new data); otherwise a
    ``StoreError`` names the extract-features command that fills them.
    """
    from mmtk.data import content_keys

    arrays: dict[str, np.ndarray] = {}
    for feature in resolved:
        config = feature.backbone
        keys = content_keys(dataset.values(feature.column), config.modality)
        missing = store.missing(config.fingerprint, keys)
        if missing and extract_missing:
            from mmtk.extract import extract_features

            extract_features(
                dataset,
                feature.ref.backbone,
                store=store,
                column=feature.column,
                sequence=feature.ref.sequence,
                options=feature.ref.options,
                device=device,
                progress=progress,
            )
        elif missing:
            raise _not_stored(dataset, feature, store, missing, keys, f"{config.spec} ({config.modality}) features")
        # Sequence forms (:seq) and backbones that only make sequences (mfcc, video frames).
        if config.kind == "sequence":
            steps, lengths = store.gather_sequences(config.fingerprint, keys)
            arrays[feature.name] = masked_mean(steps, lengths)
        else:
            arrays[feature.name] = np.ascontiguousarray(store.gather(config.fingerprint, keys), dtype=np.float32)
    return arrays


def items_with_features(
    dataset,
    resolved: Sequence[ResolvedFeature],
    store,
    *,
    extract_missing: bool = False,
    on_error: str = "fail",
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> tuple:
    """``(dataset, skipped)``: ``dataset`` narrowed to the records whose features are all
    stored, and a ``BadItem`` for each record left out, in dataset order.

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
        keys = content_keys(dataset.values(feature.column), config.modality)
        missing = set(store.missing(config.fingerprint, keys))
        reasons: dict[tuple[int, str], BadItem] = {}
        if missing and extract_missing:
            from mmtk.extract import extract_features

            report = extract_features(
                dataset, feature.ref.backbone, store=store, column=feature.column, sequence=feature.ref.sequence,
                options=feature.ref.options, device=device, on_error=on_error, progress=progress,
            )
            reasons = {(bad.line, bad.item): bad for bad in report.skipped}
            missing = set(store.missing(config.fingerprint, keys))
        if not missing:
            continue
        if on_error == "fail" or (not extract_missing and missing == set(keys)):
            raise _not_stored(dataset, feature, store, sorted(missing), keys, f"{config.spec} ({config.modality}) features")
        for row, (record, key) in enumerate(zip(dataset.records, keys)):
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
    command += "".join(f" --{name.replace('_', '-')} {value}" for name, value in feature.ref.options.to_json().items())
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
