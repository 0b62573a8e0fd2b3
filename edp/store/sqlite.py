"""The embedded SQLite backend of the batch store (WAL, schema version recorded)."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edp.core import (
    Changes,
    Emission,
    OpenBatch,
    RoutedEvent,
    Rules,
    Snapshot,
    close_due,
    rescheduled,
)
from edp.errors import StoreError
from edp.store.base import (
    LEGACY_IDENTITIES,
    LEGACY_LEFT,
    SCHEMA_VERSION,
    BatchStore,
    PendingBatch,
    apply_to_snapshot,
    counters_for,
    emitted_counters,
    identities_to_look_up,
)
from edp.store.rows import (
    BATCH_COLUMNS,
    OUTBOX_COLUMNS,
    batch_from_row,
    batch_row,
    emission_from_row,
    emission_row,
    pending_from_row,
    pending_select,
)
from edp.store.timecodec import from_micros, opt_from_micros, opt_micros, to_micros

CHUNK = 400  # rows per IN (...) probe: well under SQLite's bound-variable limit
# A chunk of events touches one leaf page per prefix in each index, so with many prefixes a
# commit dirties thousands of pages: keep them cached, and checkpoint the WAL less often so a
# page dirtied by several commits is copied back once (bench/ingest.py measures the effect).
DURABILITY_PRAGMA = "PRAGMA synchronous=FULL"
# For a throwaway store (`edp simulate`'s temporary file): no fsync at all; a crash loses the file,
# which is deleted at exit anyway. Transactions still commit or roll back as a whole.
THROWAWAY_PRAGMA = "PRAGMA synchronous=OFF"
PERFORMANCE_PRAGMAS = (
    "PRAGMA cache_size=-65536",  # KiB: 64 MiB of page cache instead of 2 MiB
    "PRAGMA wal_autocheckpoint=10000",  # pages (40 MiB of WAL) between checkpoints, not 1000
    "PRAGMA temp_store=MEMORY",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    bucket TEXT NOT NULL, prefix TEXT NOT NULL, batch_id TEXT NOT NULL,
    count INTEGER NOT NULL, changed INTEGER NOT NULL,
    first_activity INTEGER NOT NULL, last_activity INTEGER NOT NULL,
    first_event_time INTEGER NOT NULL, last_event_time INTEGER NOT NULL,
    due_at INTEGER,
    PRIMARY KEY (bucket, prefix)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_due ON batches (due_at);
CREATE TABLE IF NOT EXISTS members (
    batch_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (batch_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (
    identity TEXT PRIMARY KEY, batch_id TEXT NOT NULL, expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_batch ON seen (batch_id);
CREATE TABLE IF NOT EXISTS closed (
    batch_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS closed_expires ON closed (expires_at);
CREATE TABLE IF NOT EXISTS sequencers (
    bucket TEXT NOT NULL, key TEXT NOT NULL, sequencer TEXT NOT NULL, updated_at INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sequencers_updated ON sequencers (updated_at);
CREATE TABLE IF NOT EXISTS outbox (
    batch_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, prefix TEXT NOT NULL, count INTEGER NOT NULL,
    trigger TEXT NOT NULL, emitted_at INTEGER NOT NULL,
    first_event_time INTEGER NOT NULL, last_event_time INTEGER NOT NULL,
    published_at INTEGER, claimed_until INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (published_at, emitted_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS publish_failures (
    batch_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL, last_error TEXT NOT NULL,
    last_attempt_at INTEGER NOT NULL
);
"""


PREFIXED_BATCH_COLUMNS = ", ".join("b." + c.strip() for c in BATCH_COLUMNS.split(","))


def pairs_values(count: int) -> str:
    """``VALUES (?,?),...`` for ``count`` pairs: the outer side of an index lookup join.

    (``(a, b) IN (VALUES ...)`` makes SQLite scan the whole table for every probe, which grows
    with the table; a CROSS JOIN with the VALUES first makes it one primary-key search per pair.)
    """
    return "VALUES " + ",".join(["(?,?)"] * count)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def describe_os_error(path: str, err: BaseException) -> str:
    """``err`` in one line; a path under a regular file says which file is in the way."""
    for parent in Path(path).parents:
        if parent.is_file():
            return f"{parent} is a file, not a folder"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)


def path_of(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:///:memory:`` for an in-memory database)."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.sqlite)")
    return url[len("sqlite:///") :] or ":memory:"


class SqliteStore(BatchStore):
    """Batch state in one SQLite file; safe for one writer process and any number of readers."""

    exclusive = True

    def __init__(self, url: str, *, durable: bool = True, read_only: bool = False) -> None:
        """``read_only``: open an existing store without creating or changing anything (status).
        ``durable=False``: a throwaway file (simulate's own), commits skip the fsync."""
        self.url = url
        self._lock = threading.RLock()
        self._legacy_identities = False
        path = path_of(url)
        if read_only:
            self._db = self._open_read_only(path)
            return
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed batch survives a power cut too, not only a crashed process. It costs
            # one fsync per transaction, which chunked ingest pays once per chunk.
            self._db.execute(DURABILITY_PRAGMA if durable else THROWAWAY_PRAGMA)
            self._db.execute("PRAGMA busy_timeout=10000")
            for pragma in PERFORMANCE_PRAGMAS:
                self._db.execute(pragma)
            self._migrate()
        except (sqlite3.Error, OSError) as err:
            raise StoreError(
                f"cannot open SQLite store {path}: {describe_os_error(path, err)}"
            ) from err

    @staticmethod
    def _open_read_only(path: str) -> sqlite3.Connection:
        if path == ":memory:" or not Path(path).is_file():
            raise StoreError(
                f"no SQLite store at {path} (nothing has been written there; check --db or "
                "EDP_DATABASE_URL, and use sqlite:////absolute/path with four slashes)"
            )
        try:
            db = sqlite3.connect(
                f"file:{quote(path)}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA busy_timeout=10000")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error as err:
            raise StoreError(f"cannot read SQLite store {path}: {err}") from err
        if not {"meta", "batches", "outbox", "counters"} <= tables:
            db.close()
            raise StoreError(f"{path} is not an edp store (its tables are missing)")
        return db

    def _migrate(self) -> None:
        with self._write() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"the store was written by a newer edp (schema {row[0]} > {SCHEMA_VERSION}); "
                    "upgrade edp"
                )
            elif int(row[0]) < SCHEMA_VERSION:
                self._upgrade(db, int(row[0]))
            self._legacy_identities = (
                db.execute("SELECT 1 FROM meta WHERE name=?", (LEGACY_IDENTITIES,)).fetchone()
                is not None
            )

    @staticmethod
    def _upgrade(db: sqlite3.Connection, version: int) -> None:
        if version < 2:
            # 1 -> 2: a closed batch's dedupe expiry moves from each of its identities' rows
            # (seen.expires_at, no longer written) to one row in `closed`.
            db.execute(
                "INSERT OR REPLACE INTO closed SELECT batch_id, MAX(expires_at) FROM seen "
                "WHERE expires_at IS NOT NULL GROUP BY batch_id"
            )
            db.execute("UPDATE seen SET expires_at = NULL WHERE expires_at IS NOT NULL")
        # 1 -> 2 and 2 -> 3 change the identity's form: those stored so far are looked up in
        # their earlier forms as well until purge finds none left.
        if db.execute("SELECT 1 FROM seen LIMIT 1").fetchone() is not None:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (LEGACY_IDENTITIES,))
        db.execute("UPDATE meta SET value=? WHERE name='schema_version'", (str(SCHEMA_VERSION),))

    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            return int(row[0]) if row else 0

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            if db.in_transaction:
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def transaction(self) -> AbstractContextManager[object]:
        return self._write()

    # --- ingest ------------------------------------------------------------------------
    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        with self._write() as db:
            snapshot = self._load(db, events)
            changes = apply_to_snapshot(snapshot, events, rules, dropped)
            self._save(db, changes, rules)
            return changes

    def _load(self, db: sqlite3.Connection, events: Sequence[RoutedEvent]) -> Snapshot:
        snapshot = Snapshot()
        row = db.execute("SELECT value FROM meta WHERE name='clock'").fetchone()
        now = events[0].arrived
        if row is not None:
            snapshot.clock = from_micros(int(row[0]))
            now = max(now, snapshot.clock)
        places = sorted({(r.event.bucket, r.prefix) for r in events})
        for part in chunks(places):
            sql = (
                f"SELECT {PREFIXED_BATCH_COLUMNS} FROM ({pairs_values(len(part))}) AS v "
                "CROSS JOIN batches b ON b.bucket = v.column1 AND b.prefix = v.column2"
            )
            for found in db.execute(sql, [v for pair in part for v in pair]):
                batch = batch_from_row(found)
                snapshot.batches[(batch.bucket, batch.prefix)] = batch
        probes = sorted(
            {
                (snapshot.batches[(r.event.bucket, r.prefix)].batch_id, r.event.key)
                for r in events
                if (r.event.bucket, r.prefix) in snapshot.batches
            }
        )
        for part in chunks(probes):
            sql = (
                f"SELECT m.batch_id, m.key FROM ({pairs_values(len(part))}) AS v "
                "CROSS JOIN members m ON m.batch_id = v.column1 AND m.key = v.column2"
            )
            snapshot.members.update(db.execute(sql, [v for pair in part for v in pair]))
        keys = sorted({(r.event.bucket, r.event.key) for r in events if r.event.sequencer})
        for part in chunks(keys):
            sql = (
                f"SELECT s.bucket, s.key, s.sequencer FROM ({pairs_values(len(part))}) AS v "
                "CROSS JOIN sequencers s ON s.bucket = v.column1 AND s.key = v.column2"
            )
            for bucket, key, sequencer in db.execute(sql, [v for pair in part for v in pair]):
                snapshot.sequencers[(bucket, key)] = sequencer
        # Each event's identity, and its earlier forms while the store may hold some (schemas 1-2).
        stored_as = identities_to_look_up(events, self._legacy_identities)
        for part in chunks(sorted(stored_as)):
            sql = (
                "SELECT s.identity, c.expires_at FROM seen s LEFT JOIN closed c "
                f"ON c.batch_id = s.batch_id WHERE s.identity IN ({','.join('?' * len(part))}) "
                "AND (c.expires_at IS NULL OR c.expires_at > ?)"
            )
            for stored, expires in db.execute(sql, [*part, to_micros(now)]):
                identity = stored_as[stored]
                snapshot.seen.add(identity)
                if expires is not None:
                    snapshot.seen_expiry[identity] = from_micros(expires)
        return snapshot

    def _save(self, db: sqlite3.Connection, changes: Changes, rules: Rules) -> None:
        closed_ids = {e.batch_id for e in changes.closed}
        now = to_micros(changes.clock) if changes.clock else 0
        if changes.closed:
            db.executemany(
                "DELETE FROM batches WHERE bucket=? AND prefix=? AND batch_id=?",
                [(e.bucket, e.prefix, e.batch_id) for e in changes.closed],
            )
        if changes.batches:
            db.executemany(
                f"INSERT OR REPLACE INTO batches ({BATCH_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [batch_row(b) for b in changes.batches.values()],
            )
        added = [m for m in changes.members_added if m[0] not in closed_ids]
        if added:
            db.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)", added)
        removed = [m for m in changes.members_removed if m[0] not in closed_ids]
        if removed:
            db.executemany("DELETE FROM members WHERE batch_id=? AND key=?", removed)
        if changes.seen:
            db.executemany(
                "INSERT OR REPLACE INTO seen (identity, batch_id) VALUES (?, ?)",
                list(changes.seen.items()),
            )
        if changes.sequencers:
            db.executemany(
                "INSERT OR REPLACE INTO sequencers VALUES (?, ?, ?, ?)",
                [(b, k, s, now) for (b, k), s in changes.sequencers.items()],
            )
        self._record_closed(db, changes.closed, rules)
        self._add_counters(db, counters_for(changes))
        if changes.clock is not None:
            db.execute(
                "INSERT INTO meta VALUES ('clock', ?) ON CONFLICT(name) DO UPDATE SET "
                "value = CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
                (str(now),),
            )

    def _record_closed(
        self, db: sqlite3.Connection, closed: Sequence[Emission], rules: Rules
    ) -> None:
        if not closed:
            return
        window = rules.dedupe_window // timedelta(microseconds=1)
        db.executemany("DELETE FROM members WHERE batch_id=?", [(e.batch_id,) for e in closed])
        # One row per closed batch holds its identities' dedupe expiry (they are not rewritten).
        db.executemany(
            "INSERT OR REPLACE INTO closed VALUES (?, ?)",
            [(e.batch_id, to_micros(e.emitted_at) + window) for e in closed],
        )
        db.executemany(
            f"INSERT OR IGNORE INTO outbox ({OUTBOX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
            [emission_row(e) for e in closed],
        )

    # --- emitting ----------------------------------------------------------------------
    def close_due(self, now: datetime, rules: Rules, limit: int | None = None) -> list[Emission]:
        with self._write() as db:
            sql = f"SELECT {BATCH_COLUMNS} FROM batches WHERE due_at <= ? ORDER BY due_at"
            params: list[Any] = [to_micros(now)]
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            due = [batch_from_row(r) for r in db.execute(sql, params)]
            emissions = close_due(due, now, rules)
            moved = rescheduled(due, emissions, rules)
            if moved:
                db.executemany(
                    "UPDATE batches SET due_at=? WHERE bucket=? AND prefix=? AND batch_id=?",
                    [(opt_micros(b.due_at), b.bucket, b.prefix, b.batch_id) for b in moved],
                )
            if emissions:
                db.executemany(
                    "DELETE FROM batches WHERE bucket=? AND prefix=? AND batch_id=?",
                    [(e.bucket, e.prefix, e.batch_id) for e in emissions],
                )
                self._record_closed(db, emissions, rules)
                self._add_counters(db, emitted_counters(emissions))
            return emissions

    def enqueue(self, emissions: Sequence[Emission]) -> list[str]:
        added: list[Emission] = []
        with self._write() as db:
            for emission in emissions:
                cursor = db.execute(
                    f"INSERT OR IGNORE INTO outbox ({OUTBOX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                    emission_row(emission),
                )
                if cursor.rowcount:
                    added.append(emission)
            self._add_counters(db, emitted_counters(added))
        return [e.batch_id for e in added]

    def next_due(self) -> datetime | None:
        with self._lock:  # one connection shared by threads: reads wait for a write in progress
            row = self._db.execute("SELECT MIN(due_at) FROM batches").fetchone()
        return opt_from_micros(row[0]) if row else None

    def claim_pending(self, now: datetime, lease: timedelta, limit: int = 100) -> list[Emission]:
        with self._write() as db:
            moment = to_micros(now)
            rows = db.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL "
                "AND (claimed_until IS NULL OR claimed_until <= ?) "
                "ORDER BY emitted_at, bucket, prefix LIMIT ?",
                (moment, limit),
            ).fetchall()
            claimed = [emission_from_row(r) for r in rows]
            until = to_micros(now + lease)
            db.executemany(
                "UPDATE outbox SET claimed_until=? WHERE batch_id=?",
                [(until, e.batch_id) for e in claimed],
            )
            return claimed

    def mark_published(self, batch_ids: Iterable[str], now: datetime) -> None:
        ids = list(batch_ids)
        with self._write() as db:
            db.executemany(
                "UPDATE outbox SET published_at=?, claimed_until=NULL WHERE batch_id=?",
                [(to_micros(now), b) for b in ids],
            )
            db.executemany("DELETE FROM publish_failures WHERE batch_id=?", [(b,) for b in ids])

    def release(self, batch_ids: Iterable[str]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE outbox SET claimed_until=NULL WHERE batch_id=? AND published_at IS NULL",
                [(b,) for b in batch_ids],
            )

    # --- reading -----------------------------------------------------------------------
    def open_batches(self) -> list[OpenBatch]:
        with self._lock:
            rows = self._db.execute(f"SELECT {BATCH_COLUMNS} FROM batches ORDER BY bucket, prefix")
            return [batch_from_row(r) for r in rows]

    def pending(self, limit: int = 100) -> list[PendingBatch]:
        with self._lock:
            # publish_failures appeared after the first release: a store written before it has
            # no such table, and a read-only status must not create it.
            has_failures = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE name='publish_failures'"
            ).fetchone()
            rows = self._db.execute(
                f"{pending_select(bool(has_failures))} "
                "ORDER BY o.emitted_at, o.bucket, o.prefix LIMIT ?",
                (limit,),
            ).fetchall()
        return [pending_from_row(row) for row in rows]

    def record_failures(self, errors: Mapping[str, str], now: datetime) -> None:
        if not errors:
            return
        with self._write() as db:
            db.executemany(
                "INSERT INTO publish_failures VALUES (?, 1, ?, ?) ON CONFLICT(batch_id) DO UPDATE "
                "SET attempts = attempts + 1, last_error = excluded.last_error, "
                "last_attempt_at = excluded.last_attempt_at",
                [(batch_id, error, to_micros(now)) for batch_id, error in errors.items()],
            )

    def pending_count(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"
            ).fetchone()
            return int(row[0])

    def published(self) -> list[Emission]:
        """Every published emission, oldest first (for status and tests)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NOT NULL "
                "ORDER BY emitted_at, bucket, prefix"
            )
            return [emission_from_row(r) for r in rows]

    def add_counters(self, counts: Counter[str]) -> None:
        if counts:
            with self._write() as db:
                self._add_counters(db, counts)

    @staticmethod
    def _add_counters(db: sqlite3.Connection, counts: Counter[str]) -> None:
        if counts:
            db.executemany(
                "INSERT INTO counters VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                sorted(counts.items()),
            )

    def counters(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM counters ORDER BY name").fetchall()
            return dict(rows)

    def purge(self, now: datetime, window: timedelta) -> int:
        with self._write() as db:
            moment = to_micros(now)
            removed = db.execute(
                "DELETE FROM seen WHERE batch_id IN "
                "(SELECT batch_id FROM closed WHERE expires_at <= ?)",
                (moment,),
            ).rowcount
            db.execute("DELETE FROM closed WHERE expires_at <= ?", (moment,))
            removed += db.execute(
                "DELETE FROM sequencers WHERE updated_at <= ?", (to_micros(now - window),)
            ).rowcount
            cleared = self._legacy_identities and not db.execute(LEGACY_LEFT).fetchone()
            if cleared:
                db.execute("DELETE FROM meta WHERE name=?", (LEGACY_IDENTITIES,))
        if cleared:  # committed: no identity of the old form is left
            self._legacy_identities = False
        return int(removed)

    def close(self) -> None:
        self._db.close()
