"""``FeatureStore``: content-addressed backbone features on disk.

An entry is keyed by (backbone fingerprint, content key of the item). Writes go shard
first (temp file, fsync, rename) and index second (one SQLite transaction), so a killed
writer never leaves a half-written entry visible and the next run computes only what
``missing`` reports. Reads memory-map each shard touched once, check every item read
against the digest ``put`` recorded for it, and refuse NaN or inf features: corrupt
data is refused with the repair command (``repair`` drops it so extraction recomputes
it), never used.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mmtk.errors import StoreError, UsageError
from mmtk.store import maintenance
from mmtk.store.gather import gather_rows, gather_steps
from mmtk.store.index import StoreIndex
from mmtk.store.shards import UnsafeShardPath, item_digest, repair_command, shard_path, write_shard

KINDS = ("vector", "sequence")
REQUIRED_META = ("backbone", "modality", "kind", "dim")


def _described(feature_set: dict) -> str:
    """A feature set as people tell it apart: fingerprint prefix (backbone variant)."""
    label = " ".join(filter(None, (feature_set["backbone"], feature_set["variant"])))
    return f"{feature_set['fingerprint'][:12]} ({label})"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FeatureStore:
    """A feature store rooted at ``root`` (default ``mmtk.paths.default_store_dir()``).

    The directory is created on the first write; reads never create it. Safe to share
    between threads and processes: SQLite serialises writers, and an item two writers
    both computed is stored once. A store this process cannot write (a shared,
    read-only cache) is opened read-only: listing, inspecting, verifying and gathering
    work, writes say that it is read-only.

    ``verify_reads=False`` skips the checks of the bytes a gather reads (each item's
    digest, or for items stored without one their shard's checksum once per process);
    it exists to measure that check's cost (see BENCHMARKS.md).
    """

    def __init__(self, root: str | Path | None = None, *, verify_reads: bool = True):
        if root is None:
            from mmtk.paths import default_store_dir

            root = default_store_dir()
        self.root = Path(root).expanduser().absolute()
        self.index = StoreIndex(self.root)
        self.verify_reads = verify_reads

    def exists(self) -> bool:
        """True when the store has an index (it was written to at least once)."""
        return self.index.exists()

    def require_exists(self) -> None:
        """``StoreError`` unless the store exists: for commands that inspect or maintain
        a store, where a mistyped path must not look like an empty, healthy store."""
        if not self.exists():
            what = "no such directory" if not self.root.is_dir() else f"no {self.index.path.name} in it"
            raise StoreError(
                f"no feature store at {self.root} ({what})",
                hint="check --store (or $MMTK_STORE); mmtk extract-features creates a store",
            )

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    def close(self) -> None:
        """Close this thread's index connection (reopened on next use)."""
        self.index.close()

    # ------------------------------------------------------------------ writing

    def register(self, fingerprint: str, meta: dict) -> None:
        """Declare a feature set. Idempotent; a second registration with a different
        kind or dim is a ``StoreError`` (the fingerprint must change with the output)."""
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"feature set meta lacks {', '.join(missing)}")
        if meta["kind"] not in KINDS:
            raise ValueError(f"feature kind must be one of {', '.join(KINDS)}, not {meta['kind']!r}")
        if not isinstance(meta["dim"], (int, np.integer)) or int(meta["dim"]) <= 0:
            raise ValueError(f"feature dim must be a positive integer, not {meta['dim']!r}")
        meta = {**meta, "dim": int(meta["dim"])}
        stored = self.index.register(fingerprint, meta)
        for field in ("kind", "dim"):
            if stored[field] != meta[field]:
                raise StoreError(
                    f"feature set {fingerprint[:12]} ({stored['backbone']}) is stored with {field} "
                    f"{stored[field]!r}, not {meta[field]!r}, in store {self.root}",
                    hint="a backbone whose output changes needs a new fingerprint (bump its feature format version)",
                )

    def missing(self, fingerprint: str, keys: Sequence[str]) -> list[str]:
        """Keys with no stored features, in first-seen order, without duplicates."""
        unique = list(dict.fromkeys(keys))
        present = self.index.present(fingerprint, unique)
        return [k for k in unique if k not in present]

    def put(self, fingerprint: str, keys: Sequence[str], arrays: Sequence[np.ndarray]) -> int:
        """Store features in one atomic commit and return how many items were new.

        Vectors are ``(dim,)`` arrays, sequences ``(T_i, dim)`` with ``T_i >= 0``. Keys
        already stored (or repeated within ``keys``) are ignored, first one wins.
        """
        if len(keys) != len(arrays):
            raise ValueError(f"put got {len(keys)} keys but {len(arrays)} arrays")
        meta = self._meta(fingerprint)
        first: dict[str, np.ndarray] = {}
        for key, array in zip(keys, arrays):
            if key not in first:
                first[key] = array
        todo = self.missing(fingerprint, list(first))
        if not todo:
            return 0
        blocks = [self._checked_shape(meta, key, first[key]) for key in todo]
        lengths = np.array([b.shape[0] for b in blocks], dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths
        rows = np.concatenate(blocks, axis=0)
        self._check_finite(meta, todo, rows, offsets, lengths)
        digests = [item_digest(block) if len(block) else None for block in blocks]
        shard = write_shard(self.root, fingerprint, rows) if len(rows) else None
        kept = False
        try:
            inserted, kept = self.index.commit_items(fingerprint, shard, todo, offsets.tolist(), lengths.tolist(), digests)
        finally:
            # A shard the index did not keep (an error, or another writer stored these
            # items first) is an orphan; remove it now rather than leave it for gc.
            if shard is not None and not kept:
                (self.root / shard.relpath).unlink(missing_ok=True)
        return inserted

    @staticmethod
    def _checked_shape(meta: dict, key: str, array) -> np.ndarray:
        """The item as a 2-D float32 block of rows, or ``StoreError`` naming the item."""
        array = np.asarray(array)
        dim = meta["dim"]
        if meta["kind"] == "vector":
            expected = f"({dim},)"
            ok = array.shape == (dim,)
        else:
            expected = f"(T, {dim})"
            ok = array.ndim == 2 and array.shape[1] == dim
        if not ok or array.dtype.kind not in "fiu":
            raise StoreError(
                f"item {key!r} has features of shape {array.shape} ({array.dtype}); "
                f"{meta['backbone']} {meta['kind']}s are {expected} numbers",
                hint="every item of one feature set must match the registered dim",
            )
        return array.astype(np.float32, copy=False).reshape(-1, dim)

    @staticmethod
    def _check_finite(meta: dict, keys: Sequence[str], rows: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
        """Refuse NaN/inf features: stored once, they would poison every later training."""
        bad_rows = np.flatnonzero(~np.isfinite(rows).all(axis=1))
        if len(bad_rows) == 0:
            return
        item = int(np.searchsorted(offsets + lengths, bad_rows[0], side="right"))
        raise StoreError(
            f"item {keys[item]!r} has non-finite {meta['backbone']} features (NaN or inf)",
            hint="check the input item and the backbone's precision (fp16 overflow?)",
        )

    def remove(self, name_or_fingerprint: str) -> dict:
        """Drop a feature set (its index rows, then its shard files; a row naming a file
        outside the store's shards folder loses its row, never the file). A backbone
        name that matches several feature sets is refused with the candidates."""
        fingerprint = self.resolve(name_or_fingerprint)
        backbone = self.index.feature_set_meta(fingerprint)["backbone"]
        n_items, paths = self.index.remove_feature_set(fingerprint)
        for path in paths:
            try:
                shard_path(self.root, path).unlink(missing_ok=True)
            except UnsafeShardPath:
                continue  # the row is gone; the file it named is not the store's
        return {"fingerprint": fingerprint, "backbone": backbone, "items": n_items, "shards": len(paths)}

    # ------------------------------------------------------------------ reading

    def gather(self, fingerprint: str, keys: Sequence[str]) -> np.ndarray:
        """Vectors for ``keys`` in their order: ``(N, dim)`` float32, memory-mapped reads."""
        meta = self._meta(fingerprint, keys)
        self._expect_kind(meta, "vector", "gather_sequences")
        return self._read(
            fingerprint,
            meta,
            keys,
            lambda shards, ids, offsets, _, digests: gather_rows(
                self.root, shards, ids, offsets, meta["dim"], self.verify_reads, digests, keys
            ),
        )

    def gather_sequences(self, fingerprint: str, keys: Sequence[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sequences for ``keys`` zero-padded to ``(N, T, dim)`` float32 with lengths ``(N,)``;
        ``T`` is the longest length, capped at ``max_len`` (longer ones are cut)."""
        if max_len is not None and max_len < 0:
            raise ValueError(f"max_len must be >= 0, not {max_len}")
        meta = self._meta(fingerprint, keys)
        self._expect_kind(meta, "sequence", "gather")
        return self._read(
            fingerprint,
            meta,
            keys,
            lambda shards, ids, offsets, lengths, digests: gather_steps(
                self.root, shards, ids, offsets, lengths, meta["dim"], max_len, self.verify_reads, digests, keys
            ),
        )

    def sequence_reader(self, fingerprint: str, keys: Sequence[str | None], max_len: int | None = None):
        """A ``SequenceReader`` over ``keys`` (None: an absent item, read as empty) that
        reads chosen items per call instead of gathering them all (the store-backed
        batch source). A later ``gc`` compaction may move the rows: readers are for one
        training run, not kept."""
        from mmtk.store.gather import SequenceReader

        meta = self._meta(fingerprint, [k for k in keys if k is not None])
        self._expect_kind(meta, "sequence", "gather")
        there = [k for k in keys if k is not None]
        with self.index.snapshot():
            shard_ids, offsets, lengths, digests = self._locations(fingerprint, meta, there)
            shards = self.index.shards(ids=sorted(set(np.unique(shard_ids[shard_ids >= 0]).tolist())))
        rows = np.flatnonzero(np.array([k is not None for k in keys], dtype=bool))
        full = [
            np.full(len(keys), -1, dtype=np.int64),
            np.zeros(len(keys), dtype=np.int64),
            np.zeros(len(keys), dtype=np.int64),
            np.full(len(keys), None, dtype=object),
        ]
        for array, values in zip(full, (shard_ids, offsets, lengths, digests)):
            array[rows] = values
        return SequenceReader(self.root, shards, *full[:3], meta["dim"], max_len, full[3], list(keys))

    def _read(self, fingerprint: str, meta: dict, keys: Sequence[str], fill):
        # A concurrent gc compaction may delete a shard between our lookup and its
        # open; the index already points at the new shard then, so look up once more.
        for _attempt in range(2):
            with self.index.snapshot():
                shard_ids, offsets, lengths, digests = self._locations(fingerprint, meta, keys)
                wanted = set(np.unique(shard_ids[shard_ids >= 0]).tolist())
                shards = self.index.shards(ids=sorted(wanted))
            if len(shards) == len(wanted):
                try:
                    result = fill(shards, shard_ids, offsets, lengths, digests)
                except FileNotFoundError as exc:
                    lost = f"shard {exc.filename}"
                else:
                    self._refuse_nonfinite(meta, keys, result[0] if isinstance(result, tuple) else result)
                    return result
            else:
                lost = f"shard id(s) {sorted(wanted - set(shards))}"
        raise StoreError(
            f"{lost} holding {meta['backbone']} features is missing from store {self.root}",
            hint=f"run: {repair_command(self.root)}, then extract-features again to recompute its items",
        )

    def _refuse_nonfinite(self, meta: dict, keys: Sequence[str], gathered: np.ndarray) -> None:
        """NaN or inf in gathered features (``put`` refuses them, so the shard was
        changed on disk) would reach a model and its output: name the first such item."""
        finite = np.isfinite(gathered.reshape(len(keys), -1)).all(axis=1) if len(keys) else np.ones(0, bool)
        if finite.all():
            return
        raise StoreError(
            f"item {keys[int(np.argmin(finite))]!r} has non-finite {meta['backbone']} features (NaN or inf) "
            f"in store {self.root}",
            hint=f"run: {repair_command(self.root)} (drops such items), then extract-features again to recompute them",
        )

    def _locations(self, fingerprint: str, meta: dict, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Shard ids (-1: none), offsets, lengths and digests (object: int or None) of
        ``keys``, or the missing-items error."""
        found = self.index.locate(fingerprint, list(dict.fromkeys(keys)))
        absent = sum(1 for k in keys if k not in found)
        if absent:
            raise self._missing_error(meta["backbone"], absent, len(keys))
        table = np.array([found[k] for k in keys], dtype=object).reshape(len(keys), 4)
        shard_ids = np.array([-1 if s is None else s for s in table[:, 0]], dtype=np.int64)
        return shard_ids, table[:, 1].astype(np.int64), table[:, 2].astype(np.int64), table[:, 3]

    def _missing_error(self, backbone: str, absent: int, total: int) -> StoreError:
        return StoreError(
            f"{absent} of {total} items have no {backbone} features in store {self.root}",
            hint=f"run: mmtk extract-features DATA --backbone {backbone}",
        )

    def _meta(self, fingerprint: str, keys: Sequence[str] | None = None) -> dict:
        meta = self.index.feature_set_meta(fingerprint)
        if meta is not None:
            return meta
        if keys is not None:
            # Reading a feature set nobody extracted: every requested item is missing.
            raise StoreError(
                f"{len(keys)} of {len(keys)} items have no features for backbone fingerprint "
                f"{fingerprint[:12]} in store {self.root}",
                hint="run: mmtk extract-features DATA --backbone BACKBONE",
            )
        raise StoreError(
            f"feature set {fingerprint[:12]} is not registered in store {self.root}",
            hint="call FeatureStore.register(fingerprint, meta) before put",
        )

    @staticmethod
    def _expect_kind(meta: dict, kind: str, other: str) -> None:
        if meta["kind"] != kind:
            raise UsageError(
                f"{meta['backbone']} features are stored as {meta['kind']}s, not {kind}s",
                hint=f"use {other}() (a feature ref with{'out' if kind == 'sequence' else ''} ':seq')",
            )

    # ------------------------------------------------------------------ inspection

    def feature_sets(self) -> list[dict]:
        """One dict per feature set: fingerprint, backbone, variant (how the features
        differ from the backbone's default form; "" for that form), modality, kind, dim,
        items, bytes (shard files on disk), shards, created (UTC ISO time)."""
        out = []
        for s in self.index.feature_sets():
            meta = s["meta"]
            out.append(
                {
                    "fingerprint": s["fingerprint"],
                    "backbone": meta["backbone"],
                    "variant": meta.get("variant", ""),
                    "modality": meta["modality"],
                    "kind": meta["kind"],
                    "dim": meta["dim"],
                    "items": s["items"],
                    "bytes": s["bytes"],
                    "shards": s["shards"],
                    "created": _iso(s["created"]),
                }
            )
        return out

    def resolve(self, name_or_fingerprint: str) -> str:
        """The fingerprint meant by a backbone spec or a unique fingerprint prefix."""
        sets = self.feature_sets()
        matches = [s for s in sets if s["fingerprint"] == name_or_fingerprint]
        matches = matches or [s for s in sets if s["backbone"] == name_or_fingerprint]
        matches = matches or [s for s in sets if name_or_fingerprint and s["fingerprint"].startswith(name_or_fingerprint)]
        if len(matches) == 1:
            return matches[0]["fingerprint"]
        choices = ", ".join(_described(s) for s in (matches or sets))
        if not sets:
            raise UsageError(
                f"store {self.root} has no feature sets, so none matches {name_or_fingerprint!r}",
                hint="run: mmtk extract-features DATA --backbone BACKBONE",
            )
        if matches:
            raise UsageError(f"{name_or_fingerprint!r} matches several feature sets: {choices}", hint="give a longer fingerprint prefix")
        raise UsageError(f"no feature set in store {self.root} matches {name_or_fingerprint!r}", hint=f"choose one of: {choices}")

    def info(self, name_or_fingerprint: str) -> dict:
        """A feature set's summary plus ``digest``: a hash of every (key, array) that is
        the same for two stores holding the same features, whatever order they were
        written in."""
        fingerprint = self.resolve(name_or_fingerprint)
        summary = next(s for s in self.feature_sets() if s["fingerprint"] == fingerprint)
        meta = self.index.feature_set_meta(fingerprint)
        extra = {k: v for k, v in meta.items() if k not in summary and k not in REQUIRED_META}
        return {**summary, **extra, "store": str(self.root), "digest": maintenance.digest(self, fingerprint)}

    def verify(self, checksums: bool = True) -> dict:
        """Check the index against the shards: see ``mmtk.store.maintenance.verify``."""
        return maintenance.verify(self, checksums=checksums)

    def repair(self, dry_run: bool = False) -> dict:
        """Drop every damaged entry so the next extraction recomputes exactly those: see
        ``mmtk.store.maintenance.repair``."""
        return maintenance.repair(self, dry_run=dry_run)

    def gc(self, dry_run: bool = False, **options) -> dict:
        """Remove orphans and stale temp files, compact small shards: see
        ``mmtk.store.maintenance.gc`` for the options."""
        return maintenance.gc(self, dry_run=dry_run, **options)
