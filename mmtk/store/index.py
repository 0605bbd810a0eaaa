"""The store's SQLite index: which feature sets exist and where each item's rows live.

WAL mode lets readers run while one writer commits; every write is one ``BEGIN
IMMEDIATE`` transaction, so two processes serialise on SQLite's lock (waiting up to a
minute) instead of failing. Items are keyed by ``(fingerprint, key)``; ``INSERT OR
IGNORE`` means two writers that computed the same item both succeed and the first row
stays.

A store this process cannot write is opened read-only (``mode=ro``, or ``immutable``
when no writer is active and SQLite cannot create its shared-memory file there). The
index file is created by mmtk itself (``O_CREAT``, mode 0666), so it follows the
umask like the shards: a group can share a store. SQLite errors a user can fix (a full
disk, a damaged index, a read-only store) become ``StoreError``s naming the file.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mmtk.errors import StoreError

INDEX_NAME = "index.sqlite"
# 2 added ``items.digest``; a version-1 index gains the column (NULL for its items) the
# first time this mmtk opens it with write access, and is read as it is otherwise.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
BUSY_TIMEOUT_S = 60
# SQLite's historic limit is 999 bound parameters per statement; one is the fingerprint.
IN_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_sets (
    fingerprint TEXT PRIMARY KEY,
    meta TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS shards_by_fingerprint ON shards (fingerprint);
-- shard is NULL for a zero-length sequence: it has no rows to point at. digest is the
-- item's own checksum (shards.item_digest), so a read checks only the rows it reads;
-- NULL for an empty sequence and for items stored before schema 2.
CREATE TABLE IF NOT EXISTS items (
    fingerprint TEXT NOT NULL,
    key TEXT NOT NULL,
    shard INTEGER,
    start INTEGER NOT NULL,
    length INTEGER NOT NULL,
    digest INTEGER,
    PRIMARY KEY (fingerprint, key)
) WITHOUT ROWID;
"""


class IndexDamaged(StoreError):
    """SQLite finds the index file damaged: no entry in it can be trusted."""


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` (root may write anything not mounted
    read-only, which ``os.access`` knows)."""
    return os.access(path, os.W_OK)


def _known_sqlite_error(exc: Exception, index_path: Path) -> StoreError | None:
    """The ``StoreError`` for an SQLite failure the user caused and can fix, else None."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    root = index_path.parent
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return StoreError(
            f"the disk holding the feature store index {index_path} is full (SQLite: {text})",
            hint="free space there or point --store (or $MMTK_STORE) at a disk with room; "
            "what was committed is kept and the next run computes only the rest",
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return IndexDamaged(
            f"the feature store index {index_path} is damaged (SQLite: {text})",
            hint=f"its entries cannot be trusted: move {root} aside and run extract-features again to rebuild the store",
        )
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return StoreError(
            f"the feature store {root} is read-only here (SQLite: {text})",
            hint="list, inspect, verify and read it as it is; extract into a writable store: --store DIR",
        )
    return None


def _sqlite_errors(method):
    """Turn the SQLite errors a user can fix into ``StoreError``s naming the index."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            known = _known_sqlite_error(exc, self.path)
            if known is None:
                raise
            raise known from exc

    return wrapper


@dataclass(frozen=True)
class ShardRow:
    """One shard as the index records it."""

    id: int
    fingerprint: str
    path: str
    rows: int
    bytes: int
    checksum: str


def chunked(seq: Sequence, size: int | None = None) -> Iterator[Sequence]:
    """Consecutive slices of at most ``size`` (default ``IN_CHUNK``) elements, for
    bounded ``IN (...)`` lists."""
    size = size or IN_CHUNK
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _retry_while_locked(statement, deadline_s: float = BUSY_TIMEOUT_S):
    """Run ``statement`` again while SQLite says the database is locked.

    Switching a brand-new database to WAL needs an exclusive lock, and SQLite may answer
    SQLITE_BUSY at once, without its busy handler, when another process is creating the
    same store at that moment; waiting a little and trying again is all it takes.
    """
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(0.05)


class StoreIndex:
    """Access to ``index.sqlite``: one connection per thread and process, opened lazily.

    Reads on a store that was never written see an empty index and create nothing.
    """

    def __init__(self, root: Path):
        self.root = root
        self.path = root / INDEX_NAME
        self._local = threading.local()

    # ------------------------------------------------------------------ connections

    def exists(self) -> bool:
        return self.path.is_file()

    def read_only(self) -> bool:
        """True when this process cannot write the store, so it is opened read-only."""
        return self.exists() and not (_writable(self.root) and _writable(self.path))

    def _connection(self) -> sqlite3.Connection:
        # sqlite3 connections must not cross threads or survive a fork, so each
        # (thread, pid) gets its own.
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = self._open_read_only() if self.read_only() else self._open_read_write()
        except (OSError, sqlite3.DatabaseError) as exc:
            raise _known_sqlite_error(exc, self.path) or StoreError(
                f"cannot open the feature store index {self.path} ({exc})",
                hint="point --store (or $MMTK_STORE) at an mmtk store directory",
            ) from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _open_read_write(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            # SQLite would create the file 0644 whatever the umask; created here it
            # follows the umask (its -wal and -shm files copy its mode).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            pass
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            _retry_while_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            # NORMAL is crash-safe in WAL mode (a killed process loses nothing committed);
            # only an OS crash may drop the last commits, which leaves orphan shards for gc.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._local.version = SCHEMA_VERSION
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        conn = None
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.OperationalError:
            # A WAL database needs its -shm file, which cannot be created in a read-only
            # directory. With no -wal file no writer is active, so the file can be read
            # as immutable; with one, a writer is at work and must be waited for.
            if conn is not None:
                conn.close()
            if Path(f"{self.path}-wal").exists():
                raise
            conn = sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in READABLE_VERSIONS:
            conn.close()
            raise StoreError(
                f"store {self.root} is read-only here and its index has schema {version}; this mmtk reads {SCHEMA_VERSION}",
                hint="open it once with write access (any store command does) or use another --store",
            )
        self._local.version = version
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.root} has index schema {version}; this mmtk reads up to {SCHEMA_VERSION}",
                hint="upgrade mmtk or use another --store",
            )
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                # Adding a nullable column rewrites no row, so this is instant at any size.
                conn.execute("ALTER TABLE items ADD COLUMN digest INTEGER")
            # Statement by statement: executescript() would commit the transaction early.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def read(self) -> sqlite3.Connection | None:
        """A connection for queries, or None when the store has no index yet."""
        if getattr(self._local, "conn", None) is None and not self.exists():
            return None
        return self._connection()

    def _digest_column(self) -> str:
        """What to select for an item's digest: a version-1 index, read where it cannot
        be migrated, has no such column and reads as "no digest"."""
        return "digest" if getattr(self._local, "version", SCHEMA_VERSION) >= 2 else "NULL"

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from the start, so checks
        made inside it stay true until it commits."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise _known_sqlite_error(exc, self.path) or StoreError(
                f"the feature store index {self.path} stayed locked for {BUSY_TIMEOUT_S} s ({exc})",
                hint="another mmtk process is writing to this store; retry when it is done",
            ) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may have rolled back already (a full disk does that).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            known = _known_sqlite_error(exc, self.path)
            if known is None:
                raise
            raise known from exc

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Make the queries inside see one consistent state of the index (a WAL read
        transaction: writers are not blocked). Nests: an inner snapshot joins the outer."""
        conn = self.read()
        if conn is None or conn.in_transaction:
            yield
            return
        try:
            conn.execute("BEGIN")
        except sqlite3.DatabaseError as exc:
            raise (_known_sqlite_error(exc, self.path) or exc) from None
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # ------------------------------------------------------------------ feature sets

    @_sqlite_errors
    def feature_set_meta(self, fingerprint: str) -> dict | None:
        conn = self.read()
        if conn is None:
            return None
        row = conn.execute("SELECT meta FROM feature_sets WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return json.loads(row[0]) if row else None

    def register(self, fingerprint: str, meta: dict) -> dict:
        """Insert the feature set unless present; return the meta that is stored."""
        with self.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO feature_sets (fingerprint, meta, created) VALUES (?, ?, ?)",
                (fingerprint, json.dumps(meta, sort_keys=True), time.time()),
            )
            row = conn.execute("SELECT meta FROM feature_sets WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return json.loads(row[0])

    @_sqlite_errors
    def feature_sets(self) -> list[dict]:
        """Every feature set with its meta, item count, shard count and bytes on disk."""
        conn = self.read()
        if conn is None:
            return []
        items = dict(conn.execute("SELECT fingerprint, COUNT(*) FROM items GROUP BY fingerprint"))
        shards = {fp: (n, b) for fp, n, b in conn.execute("SELECT fingerprint, COUNT(*), SUM(bytes) FROM shards GROUP BY fingerprint")}
        sets = []
        for fingerprint, meta, created in conn.execute("SELECT fingerprint, meta, created FROM feature_sets ORDER BY created"):
            n_shards, nbytes = shards.get(fingerprint, (0, 0))
            sets.append(
                {
                    "fingerprint": fingerprint,
                    "meta": json.loads(meta),
                    "created": created,
                    "items": items.get(fingerprint, 0),
                    "shards": n_shards,
                    "bytes": int(nbytes or 0),
                }
            )
        return sets

    def remove_feature_set(self, fingerprint: str) -> tuple[int, list[str]]:
        """Drop a feature set's rows; return its item count and its shard paths."""
        with self.write() as conn:
            n_items = conn.execute("SELECT COUNT(*) FROM items WHERE fingerprint = ?", (fingerprint,)).fetchone()[0]
            paths = [p for (p,) in conn.execute("SELECT path FROM shards WHERE fingerprint = ?", (fingerprint,))]
            conn.execute("DELETE FROM items WHERE fingerprint = ?", (fingerprint,))
            conn.execute("DELETE FROM shards WHERE fingerprint = ?", (fingerprint,))
            conn.execute("DELETE FROM feature_sets WHERE fingerprint = ?", (fingerprint,))
        return n_items, paths

    # ------------------------------------------------------------------ items

    @_sqlite_errors
    def present(self, fingerprint: str, keys: Sequence[str]) -> set[str]:
        """The subset of ``keys`` (unique) that has an entry."""
        conn = self.read()
        if conn is None:
            return set()
        found: set[str] = set()
        for chunk in chunked(sorted(keys)):
            marks = ",".join("?" * len(chunk))
            found.update(
                k for (k,) in conn.execute(f"SELECT key FROM items WHERE fingerprint = ? AND key IN ({marks})", (fingerprint, *chunk))
            )
        return found

    @_sqlite_errors
    def locate(self, fingerprint: str, keys: Sequence[str]) -> dict[str, tuple[int | None, int, int, int | None]]:
        """``key -> (shard id or None, offset, length, digest or None)`` for the ``keys``
        (unique) stored."""
        conn = self.read()
        if conn is None:
            return {}
        found: dict[str, tuple[int | None, int, int, int | None]] = {}
        for chunk in chunked(sorted(keys)):
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, shard, start, length, {self._digest_column()} FROM items WHERE fingerprint = ? AND key IN ({marks})",
                (fingerprint, *chunk),
            )
            found.update((key, (shard, offset, length, digest)) for key, shard, offset, length, digest in rows)
        return found

    @_sqlite_errors
    def items_by_shard(self, fingerprint: str | None = None) -> dict[int | None, list[tuple[str, int, int, int | None]]]:
        """``shard id -> [(key, offset, length, digest), ...]`` for one feature set or all."""
        conn = self.read()
        if conn is None:
            return {}
        query = f"SELECT shard, key, start, length, {self._digest_column()} FROM items"
        args: tuple = ()
        if fingerprint is not None:
            query += " WHERE fingerprint = ?"
            args = (fingerprint,)
        grouped: dict[int | None, list[tuple[str, int, int, int | None]]] = {}
        for shard, *entry in conn.execute(query, args):
            grouped.setdefault(shard, []).append(tuple(entry))
        return grouped

    def iter_items_by_shard(self) -> Iterator[tuple[int | None, list[tuple[str, int, int, int | None]]]]:
        """``(shard id, [(key, offset, length, digest), ...])`` for every shard id items
        point at (None first), in shard order. SQLite sorts the rows, spilling to disk,
        so one shard's items are in memory at a time: for checks of stores of any size.
        Run it inside ``snapshot()`` when other queries must see the same state."""
        conn = self.read()
        if conn is None:
            return
        query = f"SELECT shard, key, start, length, {self._digest_column()} FROM items ORDER BY shard"
        shard, entries = None, []
        try:
            for row in conn.execute(query):
                if entries and row[0] != shard:
                    yield shard, entries
                    entries = []
                shard = row[0]
                entries.append(tuple(row[1:]))
        except sqlite3.DatabaseError as exc:
            known = _known_sqlite_error(exc, self.path)
            if known is None:
                raise
            raise known from exc
        if entries:
            yield shard, entries

    @_sqlite_errors
    def items_by_set_and_shard(self) -> dict[tuple[str, int | None], list[tuple[str, int, int, int | None]]]:
        """``(fingerprint, shard id) -> [(key, offset, length, digest), ...]`` for every item."""
        conn = self.read()
        if conn is None:
            return {}
        grouped: dict[tuple[str, int | None], list[tuple[str, int, int, int | None]]] = {}
        query = f"SELECT fingerprint, shard, key, start, length, {self._digest_column()} FROM items"
        for fingerprint, shard, *entry in conn.execute(query):
            grouped.setdefault((fingerprint, shard), []).append(tuple(entry))
        return grouped

    def commit_items(
        self,
        fingerprint: str,
        shard,
        keys: Sequence[str],
        offsets: Sequence[int],
        lengths: Sequence[int],
        digests: Sequence[int | None],
    ) -> tuple[int, bool]:
        """Record a written shard (``WrittenShard`` or None when every item is empty) and
        its items (with their ``digests``) in one transaction; return (items that were
        new, shard kept).

        A shard none of whose rows became an entry (another writer stored those items
        first) is not kept; the caller deletes its file.
        """
        root_file = None if shard is None else self.root / shard.relpath
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM feature_sets WHERE fingerprint = ?", (fingerprint,)).fetchone() is None:
                raise StoreError(
                    f"feature set {fingerprint[:12]} was removed from store {self.root} while writing",
                    hint="run the command again",
                )
            # gc deletes orphan files only while holding this lock, so a file that
            # exists now stays until the rows below are committed.
            if root_file is not None and not root_file.is_file():
                raise StoreError(f"shard {root_file} vanished before it was indexed", hint="run the command again")
            shard_id = None
            if shard is not None:
                cur = conn.execute(
                    "INSERT INTO shards (fingerprint, path, rows, bytes, checksum, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (fingerprint, shard.relpath, shard.rows, shard.nbytes, shard.checksum, time.time()),
                )
                shard_id = cur.lastrowid
            # Rows with data and empty sequences are inserted apart, so the change
            # count says whether the shard is referenced without scanning the table.
            insert = "INSERT OR IGNORE INTO items (fingerprint, key, shard, start, length, digest) VALUES (?, ?, ?, ?, ?, ?)"
            entries = list(zip(keys, offsets, lengths, digests))
            before = conn.total_changes
            conn.executemany(insert, [(fingerprint, k, shard_id, int(o), int(n), d) for k, o, n, d in entries if n > 0])
            with_rows = conn.total_changes - before
            conn.executemany(insert, [(fingerprint, k, None, 0, 0, None) for k, o, n, d in entries if n == 0])
            inserted = conn.total_changes - before
            kept = shard_id is not None and with_rows > 0
            if shard_id is not None and not kept:
                conn.execute("DELETE FROM shards WHERE id = ?", (shard_id,))
        return inserted, kept

    # ------------------------------------------------------------------ shards

    @_sqlite_errors
    def shards(self, fingerprint: str | None = None, ids: Sequence[int] | None = None) -> dict[int, ShardRow]:
        """Shard rows by id, for one feature set, a list of ids, or all."""
        conn = self.read()
        if conn is None:
            return {}
        query = "SELECT id, fingerprint, path, rows, bytes, checksum FROM shards"
        out: dict[int, ShardRow] = {}
        if ids is not None:
            for chunk in chunked(list(ids)):
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"{query} WHERE id IN ({marks})", tuple(chunk)):
                    out[row[0]] = ShardRow(*row)
            return out
        args: tuple = ()
        if fingerprint is not None:
            query += " WHERE fingerprint = ?"
            args = (fingerprint,)
        for row in conn.execute(query, args):
            out[row[0]] = ShardRow(*row)
        return out

    @_sqlite_errors
    def shard_paths(self, conn: sqlite3.Connection | None = None) -> set[str]:
        """Paths of every indexed shard (pass the connection of an open transaction)."""
        conn = conn or self.read()
        if conn is None:
            return set()
        return {p for (p,) in conn.execute("SELECT path FROM shards")}

    def drop_unreferenced_shards(self, dry_run: bool = False) -> list[str]:
        """Delete shard rows no item points at (their data was superseded); return their
        paths so the caller removes the files after the commit."""
        if self.read() is None:
            return []
        with self.write() as conn:
            rows = conn.execute(
                "SELECT id, path FROM shards WHERE id NOT IN (SELECT DISTINCT shard FROM items WHERE shard IS NOT NULL)"
            ).fetchall()
            if not dry_run:
                conn.executemany("DELETE FROM shards WHERE id = ?", [(i,) for i, _ in rows])
        return [p for _, p in rows]

    def repoint(
        self,
        fingerprint: str,
        old_ids: Sequence[int],
        new_shard,
        moves: Sequence[tuple[str, int, int]],
        dropped: Sequence[tuple[str, int]] = (),
    ) -> bool:
        """Swap compacted shards for ``new_shard`` in one transaction. ``moves`` lists
        ``(key, old shard id, new offset)``; ``dropped`` lists ``(key, old shard id)`` of
        items whose rows were damaged and not copied: they are deleted, so the next
        extraction recomputes them. Returns False, changing nothing, when another
        process removed those shards or the feature set meanwhile. (Items are never
        added to an existing shard, so shards that still exist hold what was read.)"""
        if not moves:
            return self._drop_shards(fingerprint, old_ids, dropped)
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM feature_sets WHERE fingerprint = ?", (fingerprint,)).fetchone() is None:
                return False
            marks = ",".join("?" * len(old_ids))
            still = conn.execute(f"SELECT COUNT(*) FROM shards WHERE id IN ({marks})", tuple(old_ids)).fetchone()[0]
            if still != len(old_ids):
                return False
            new_id = conn.execute(
                "INSERT INTO shards (fingerprint, path, rows, bytes, checksum, created) VALUES (?, ?, ?, ?, ?, ?)",
                (fingerprint, new_shard.relpath, new_shard.rows, new_shard.nbytes, new_shard.checksum, time.time()),
            ).lastrowid
            conn.executemany(
                "UPDATE items SET shard = ?, start = ? WHERE fingerprint = ? AND key = ? AND shard = ?",
                [(new_id, offset, fingerprint, key, old) for key, old, offset in moves],
            )
            conn.executemany(
                "DELETE FROM items WHERE fingerprint = ? AND key = ? AND shard = ?", [(fingerprint, k, old) for k, old in dropped]
            )
            conn.executemany("DELETE FROM shards WHERE id = ?", [(i,) for i in old_ids])
        return True

    def _drop_shards(self, fingerprint: str, ids: Sequence[int], dropped: Sequence[tuple[str, int]]) -> bool:
        """``repoint`` when nothing was worth copying: only the deletions."""
        with self.write() as conn:
            marks = ",".join("?" * len(ids))
            if conn.execute(f"SELECT COUNT(*) FROM shards WHERE id IN ({marks})", tuple(ids)).fetchone()[0] != len(ids):
                return False
            conn.executemany(
                "DELETE FROM items WHERE fingerprint = ? AND key = ? AND shard = ?", [(fingerprint, k, old) for k, old in dropped]
            )
            conn.executemany("DELETE FROM shards WHERE id = ?", [(i,) for i in ids])
        return True

    def drop_entries(self, shard_ids: Sequence[int], items: Sequence[tuple[str, str, int | None]], unregistered: bool) -> dict:
        """Delete damaged entries in one transaction: the shards ``shard_ids`` with every
        item pointing at them, the ``(fingerprint, key, shard id)`` ``items`` (only while
        they still point at that shard, so an item a concurrent gc has just moved to a
        sound shard stays), and with ``unregistered`` the items of unregistered feature
        sets. Returns ``{"items": {fingerprint: count}, "shards": [ids deleted]}``."""
        dropped: dict[str, int] = {}
        gone: list[int] = []

        def count(fingerprint: str, n: int) -> None:
            if n:
                dropped[fingerprint] = dropped.get(fingerprint, 0) + n

        with self.write() as conn:
            for shard_id in shard_ids:
                for fingerprint, n in conn.execute("SELECT fingerprint, COUNT(*) FROM items WHERE shard = ? GROUP BY fingerprint", (shard_id,)).fetchall():
                    count(fingerprint, n)
                conn.execute("DELETE FROM items WHERE shard = ?", (shard_id,))
                if conn.execute("DELETE FROM shards WHERE id = ?", (shard_id,)).rowcount:
                    gone.append(shard_id)
            for fingerprint, key, shard_id in items:
                cur = conn.execute("DELETE FROM items WHERE fingerprint = ? AND key = ? AND shard IS ?", (fingerprint, key, shard_id))
                count(fingerprint, cur.rowcount)
            if unregistered:
                orphaned = "fingerprint NOT IN (SELECT fingerprint FROM feature_sets)"
                for fingerprint, n in conn.execute(f"SELECT fingerprint, COUNT(*) FROM items WHERE {orphaned} GROUP BY fingerprint").fetchall():
                    count(fingerprint, n)
                conn.execute(f"DELETE FROM items WHERE {orphaned}")
        return {"items": dropped, "shards": gone}

    @_sqlite_errors
    def quick_check(self) -> list[str]:
        """SQLite's own structural check of the index file ([] when it is sound)."""
        conn = self.read()
        if conn is None:
            return []
        result = [r[0] for r in conn.execute("PRAGMA quick_check")]
        return [] if result == ["ok"] else result

    @_sqlite_errors
    def item_fingerprints(self) -> set[str]:
        """Fingerprints that have at least one item row."""
        conn = self.read()
        if conn is None:
            return set()
        return {fp for (fp,) in conn.execute("SELECT DISTINCT fingerprint FROM items")}
