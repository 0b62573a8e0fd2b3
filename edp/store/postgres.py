"""The PostgreSQL backend of the batch store (RDS): safe for many writer and emitter processes at once.

This module is the store's protocol (its statements and the BatchStore methods); the schema and
its migrations are in :mod:`edp.store.pg_schema`, the connection, its secrets and reconnection in
:mod:`edp.store.pg_connection`.

Concurrency, in short (README.md, PostgreSQL store, has the long version):

* Every (bucket, prefix) has a permanent row in ``places``. A writer first inserts the missing ones
  and then locks all of its places ``FOR UPDATE`` in one statement sorted by (bucket, prefix), so two
  writers that share prefixes wait for each other in the same order and never deadlock. Only then
  does it read the batches, members, sequencers and dedupe identities those events can touch,
  apply the pure rules (:mod:`edp.core`) and write the changes back, all in one transaction.
* An emitter closes due batches after locking their places ``FOR UPDATE SKIP LOCKED``: a batch a
  writer (or another emitter) holds is skipped, never waited for, so each due batch is closed by
  exactly one emitter; the outbox is claimed the same way.
* The hot rows every transaction would touch are sharded: counters are kept per (name, shard) and
  the ingest clock per shard (``GREATEST`` of the old and new value), and the readers sum or take
  the maximum. Each store object writes one shard, so writers do not queue on a single row.
* Closing a batch starts the dedupe window of its identities with one row in ``closed`` (not an
  update of each identity); an identity counts while its batch is open or that row is recent.
* One connection per store object, reused across Lambda invocations. When the server goes away
  (restart, failover) the store reconnects and runs the whole transaction again, once; when the
  connection died during COMMIT it first asks the server (``pg_xact_status``) whether that commit
  landed, so a transaction is never applied twice.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

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
from edp.store import pg_schema
from edp.store.base import (
    LEGACY_IDENTITIES,
    LEGACY_LEFT,
    BatchStore,
    PendingBatch,
    apply_to_snapshot,
    counters_for,
    emitted_counters,
    identities_to_look_up,
)
from edp.store.pg_connection import PgConnection
from edp.store.rows import (
    BATCH_COLUMNS,
    OUTBOX_COLUMNS,
    batch_from_row,
    emission_from_row,
    pending_from_row,
    pending_select,
)
from edp.store.timecodec import from_micros, opt_from_micros, opt_micros, to_micros

SHARDS = 16  # counter and clock rows per name: writers rarely share one, readers sum 16 rows

# (bucket, prefix) pairs passed as two parallel arrays.
PAIRS = "unnest(%b::text[], %b::text[])"

# ---- statements ------------------------------------------------------------------------------
ADD_PLACES = (
    f"INSERT INTO places (bucket, prefix) SELECT b, p FROM {PAIRS} AS u(b, p) "
    'ORDER BY b COLLATE "C", p COLLATE "C" ON CONFLICT DO NOTHING'
)
LOCK_PLACES = (
    f"SELECT bucket FROM places WHERE (bucket, prefix) IN (SELECT b, p FROM {PAIRS} AS u(b, p)) "
    'ORDER BY bucket COLLATE "C", prefix COLLATE "C" FOR UPDATE'
)
LOAD_BATCHES = (
    f"SELECT {BATCH_COLUMNS} FROM batches "
    f"WHERE (bucket, prefix) IN (SELECT b, p FROM {PAIRS} AS u(b, p))"
)
LOAD_MEMBERS = (
    "SELECT m.batch_id, m.key FROM unnest(%b::text[], %b::text[]) AS u(b, k) "
    "JOIN members m ON m.batch_id = u.b AND m.key = u.k"
)
LOAD_SEQUENCERS = (
    "SELECT s.bucket, s.key, s.sequencer FROM unnest(%b::text[], %b::text[]) AS u(b, k) "
    "JOIN sequencers s ON s.bucket = u.b AND s.key = u.k"
)
# An identity counts while its batch is open, or closed less than the dedupe window ago.
LOAD_SEEN = (
    "SELECT s.identity, c.expires_at FROM seen s LEFT JOIN closed c ON c.batch_id = s.batch_id "
    "WHERE s.identity = ANY(%b::text[]) AND (c.expires_at IS NULL OR c.expires_at > %s)"
)
DELETE_BATCHES = (
    "DELETE FROM batches b USING unnest(%b::text[], %b::text[], %b::text[]) AS u(bk, px, id) "
    "WHERE b.bucket = u.bk AND b.prefix = u.px AND b.batch_id = u.id"
)
UPSERT_BATCHES = (
    f"INSERT INTO batches ({BATCH_COLUMNS}) SELECT * FROM unnest("
    "%b::text[], %b::text[], %b::text[], %b::int[], %b::bool[], "
    "%b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[]) "
    "ON CONFLICT (bucket, prefix) DO UPDATE SET batch_id = excluded.batch_id, "
    "count = excluded.count, changed = excluded.changed, "
    "first_activity = excluded.first_activity, last_activity = excluded.last_activity, "
    "first_event_time = excluded.first_event_time, last_event_time = excluded.last_event_time, "
    "due_at = excluded.due_at"
)
ADD_MEMBERS = (
    "INSERT INTO members (batch_id, key) SELECT * FROM unnest(%b::text[], %b::text[]) "
    "ON CONFLICT DO NOTHING"
)
REMOVE_MEMBERS = (
    "DELETE FROM members m USING unnest(%b::text[], %b::text[]) AS u(b, k) "
    "WHERE m.batch_id = u.b AND m.key = u.k"
)
UPSERT_SEEN = (
    "INSERT INTO seen (identity, batch_id) SELECT * FROM unnest(%b::text[], %b::text[]) "
    "ON CONFLICT (identity) DO UPDATE SET batch_id = excluded.batch_id"
)
UPSERT_SEQUENCERS = (
    "INSERT INTO sequencers (bucket, key, sequencer, updated_at) "
    "SELECT b, k, s, %s FROM unnest(%b::text[], %b::text[], %b::text[]) AS u(b, k, s) "
    "ON CONFLICT (bucket, key) DO UPDATE SET sequencer = excluded.sequencer, "
    "updated_at = excluded.updated_at"
)
CLOSED_MEMBERS = "DELETE FROM members WHERE batch_id = ANY(%b::text[])"
# The dedupe window of a closed batch's identities starts now: one row per batch, not one
# update per identity (which made closing 1,000 batches cost a third of a second).
ADD_CLOSED = (
    "INSERT INTO closed (batch_id, expires_at) SELECT * FROM unnest(%b::text[], %b::bigint[]) "
    "ON CONFLICT (batch_id) DO NOTHING"
)
ADD_OUTBOX = (
    f"INSERT INTO outbox ({OUTBOX_COLUMNS}) SELECT * FROM unnest("
    "%b::text[], %b::text[], %b::text[], %b::int[], %b::text[], "
    "%b::bigint[], %b::bigint[], %b::bigint[]) ON CONFLICT (batch_id) DO NOTHING"
)
ADD_COUNTERS = (
    "INSERT INTO counters (name, shard, value) "
    "SELECT n, %s, v FROM unnest(%b::text[], %b::bigint[]) AS u(n, v) "
    'ORDER BY n COLLATE "C" '
    "ON CONFLICT (name, shard) DO UPDATE SET value = counters.value + excluded.value"
)
ADVANCE_CLOCK = (
    "INSERT INTO clocks (shard, value) VALUES (%s, %s) "
    "ON CONFLICT (shard) DO UPDATE SET value = GREATEST(clocks.value, excluded.value)"
)
# The places of due batches nobody holds, oldest due first.
CLAIM_DUE = (
    "SELECT p.bucket, p.prefix FROM batches b "
    "JOIN places p ON p.bucket = b.bucket AND p.prefix = b.prefix "
    "WHERE b.due_at <= %s ORDER BY b.due_at LIMIT %s FOR UPDATE OF p SKIP LOCKED"
)
CLAIM_OUTBOX = (
    f"UPDATE outbox SET claimed_until = %s WHERE batch_id IN ("
    "SELECT batch_id FROM outbox WHERE published_at IS NULL "
    "AND (claimed_until IS NULL OR claimed_until <= %s) "
    'ORDER BY emitted_at, bucket COLLATE "C", prefix COLLATE "C" LIMIT %s '
    f"FOR UPDATE SKIP LOCKED) RETURNING {OUTBOX_COLUMNS}"
)
PURGE_SEEN = (
    "DELETE FROM seen WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM closed c "
    "JOIN seen s ON s.batch_id = c.batch_id WHERE c.expires_at <= %s "
    "FOR UPDATE OF s SKIP LOCKED))"
)
# A closed row goes only once no identity refers to it (a skipped one keeps it for next time).
PURGE_CLOSED = (
    "DELETE FROM closed c WHERE c.expires_at <= %s "
    "AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.batch_id = c.batch_id)"
)
PURGE_SEQUENCERS = (
    "DELETE FROM sequencers WHERE ctid = ANY(ARRAY(SELECT ctid FROM sequencers "
    "WHERE updated_at <= %s FOR UPDATE SKIP LOCKED))"
)


def batch_columns(batches: Sequence[OpenBatch]) -> list[list[Any]]:
    """The batches as ten parallel arrays, in BATCH_COLUMNS order."""
    return [
        [b.bucket for b in batches],
        [b.prefix for b in batches],
        [b.batch_id for b in batches],
        [b.count for b in batches],
        [b.changed for b in batches],
        [to_micros(b.first_activity) for b in batches],
        [to_micros(b.last_activity) for b in batches],
        [to_micros(b.first_event_time) for b in batches],
        [to_micros(b.last_event_time) for b in batches],
        [opt_micros(b.due_at) for b in batches],
    ]


def unzip(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    firsts: list[str] = []
    seconds: list[str] = []
    for a, b in pairs:
        firsts.append(a)
        seconds.append(b)
    return firsts, seconds


class PostgresStore(BatchStore):
    """Batch state in PostgreSQL; any number of writer and emitter processes may share it."""

    def __init__(
        self, url: str, *, secret_arn: str | None = None, read_only: bool = False, **connection: Any
    ) -> None:
        """``read_only``: never create or migrate the schema, and refuse every write (status).
        ``connection``: how to reach the server (secrets client, reconnect wait, clocks), see
        :class:`~edp.store.pg_connection.PgConnection`."""
        self._db = PgConnection(url, secret_arn=secret_arn, read_only=read_only, **connection)
        self.url = self._db.url
        # One shard per store object: concurrent writers rarely share a counter or clock row.
        self._shard = random.randrange(SHARDS)
        if read_only:
            self._db.run(
                lambda conn: pg_schema.check_schema(conn, self.url),
                what="read the schema",
                idempotent=True,
            )
        else:
            self._db.run(pg_schema.migrate, what="migrate the schema")
        self._legacy_identities = not read_only and self._db.run(
            pg_schema.legacy_identities, what="read the schema", idempotent=True
        )

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    @property
    def reconnects(self) -> int:
        """How often the connection was re-established (tests, metrics)."""
        return self._db.reconnects

    @property
    def rollback_retries(self) -> int:
        """Deadlocks or serialization failures retried (should stay 0)."""
        return self._db.rollback_retries

    def schema_version(self) -> int:
        return self._db.run(
            pg_schema.schema_version, what="read the schema version", idempotent=True
        )

    # --- ingest ------------------------------------------------------------------------
    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        def work(conn: psycopg.Connection[Any]) -> Changes:
            snapshot = self._load(conn, events)
            changes = apply_to_snapshot(snapshot, events, rules, dropped)
            self._save(conn, changes, rules)
            return changes

        return self._db.run(work, what="store events")

    def _load(self, conn: psycopg.Connection[Any], events: Sequence[RoutedEvent]) -> Snapshot:
        snapshot = Snapshot()
        places = sorted({(r.event.bucket, r.prefix) for r in events})
        buckets, prefixes = unzip(places)
        conn.execute(ADD_PLACES, (buckets, prefixes))
        locked = conn.execute(LOCK_PLACES, (buckets, prefixes)).fetchall()
        if len(locked) != len(places):
            raise StoreError(f"locked {len(locked)} of {len(places)} prefixes; retry")
        # Read only after the locks are held: a statement sees what committed before it started.
        row = conn.execute("SELECT max(value) FROM clocks").fetchone()
        now = events[0].arrived
        if row is not None and row[0] is not None:
            snapshot.clock = from_micros(int(row[0]))
            now = max(now, snapshot.clock)
        for found in conn.execute(LOAD_BATCHES, (buckets, prefixes)):
            batch = batch_from_row(found)
            snapshot.batches[(batch.bucket, batch.prefix)] = batch
        probes = unzip(
            sorted(
                {
                    (snapshot.batches[(r.event.bucket, r.prefix)].batch_id, r.event.key)
                    for r in events
                    if (r.event.bucket, r.prefix) in snapshot.batches
                }
            )
        )
        if probes[0]:
            snapshot.members.update(conn.execute(LOAD_MEMBERS, probes).fetchall())
        keys = unzip(sorted({(r.event.bucket, r.event.key) for r in events if r.event.sequencer}))
        if keys[0]:
            for bucket, key, sequencer in conn.execute(LOAD_SEQUENCERS, keys):
                snapshot.sequencers[(bucket, key)] = sequencer
        # Each event's identity, and its earlier forms while the store may hold some (schemas 2-3).
        stored_as = identities_to_look_up(events, self._legacy_identities)
        if stored_as:
            found_ids = conn.execute(LOAD_SEEN, (sorted(stored_as), to_micros(now))).fetchall()
            for stored, expires in found_ids:
                identity = stored_as[stored]
                snapshot.seen.add(identity)
                if expires is not None:
                    snapshot.seen_expiry[identity] = from_micros(expires)
        return snapshot

    def _save(self, conn: psycopg.Connection[Any], changes: Changes, rules: Rules) -> None:
        closed_ids = {e.batch_id for e in changes.closed}
        now = to_micros(changes.clock) if changes.clock else 0
        if changes.closed:
            conn.execute(
                DELETE_BATCHES,
                (
                    [e.bucket for e in changes.closed],
                    [e.prefix for e in changes.closed],
                    [e.batch_id for e in changes.closed],
                ),
            )
        if changes.batches:
            conn.execute(UPSERT_BATCHES, batch_columns(list(changes.batches.values())))
        added = sorted(m for m in changes.members_added if m[0] not in closed_ids)
        if added:
            conn.execute(ADD_MEMBERS, unzip(added))
        removed = sorted(m for m in changes.members_removed if m[0] not in closed_ids)
        if removed:
            conn.execute(REMOVE_MEMBERS, unzip(removed))
        if changes.seen:
            conn.execute(UPSERT_SEEN, unzip(sorted(changes.seen.items())))
        if changes.sequencers:
            items = sorted(changes.sequencers.items())
            conn.execute(
                UPSERT_SEQUENCERS,
                (
                    now,
                    [b for (b, _), _ in items],
                    [k for (_, k), _ in items],
                    [s for _, s in items],
                ),
            )
        self._record_closed(conn, changes.closed, rules)
        # Hot rows last, so they are held only for the commit.
        self._add_counters(conn, counters_for(changes))
        if changes.clock is not None:
            conn.execute(ADVANCE_CLOCK, (self._shard, now))

    def _record_closed(
        self, conn: psycopg.Connection[Any], closed: Sequence[Emission], rules: Rules
    ) -> None:
        if not closed:
            return
        window = rules.dedupe_window // timedelta(microseconds=1)
        ids = [e.batch_id for e in closed]
        conn.execute(CLOSED_MEMBERS, (ids,))
        conn.execute(ADD_CLOSED, (ids, [to_micros(e.emitted_at) + window for e in closed]))
        conn.execute(
            ADD_OUTBOX,
            (
                ids,
                [e.bucket for e in closed],
                [e.prefix for e in closed],
                [e.count for e in closed],
                [e.trigger for e in closed],
                [to_micros(e.emitted_at) for e in closed],
                [to_micros(e.first_event_time) for e in closed],
                [to_micros(e.last_event_time) for e in closed],
            ),
        )

    def _add_counters(self, conn: psycopg.Connection[Any], counts: Counter[str]) -> None:
        items = sorted((name, value) for name, value in counts.items() if value)
        if items:
            conn.execute(ADD_COUNTERS, (self._shard, [n for n, _ in items], [v for _, v in items]))

    # --- emitting ----------------------------------------------------------------------
    def close_due(self, now: datetime, rules: Rules, limit: int | None = None) -> list[Emission]:
        moment = to_micros(now)

        def work(conn: psycopg.Connection[Any]) -> list[Emission]:
            places = conn.execute(CLAIM_DUE, (moment, limit)).fetchall()
            if not places:
                return []
            # Re-read under the locks: the first statement's view may predate a writer's commit.
            due = [batch_from_row(r) for r in conn.execute(LOAD_BATCHES, unzip(places)).fetchall()]
            emissions = close_due(due, now, rules)
            moved = rescheduled(due, emissions, rules)
            if moved:
                with conn.cursor() as cur:
                    cur.executemany(
                        "UPDATE batches SET due_at = %s WHERE bucket = %s AND prefix = %s "
                        "AND batch_id = %s",
                        [(opt_micros(b.due_at), b.bucket, b.prefix, b.batch_id) for b in moved],
                    )
            if emissions:
                conn.execute(
                    DELETE_BATCHES,
                    (
                        [e.bucket for e in emissions],
                        [e.prefix for e in emissions],
                        [e.batch_id for e in emissions],
                    ),
                )
                self._record_closed(conn, emissions, rules)
                self._add_counters(conn, emitted_counters(emissions))
            return emissions

        return self._db.run(work, what="close due batches")

    def enqueue(self, emissions: Sequence[Emission]) -> list[str]:
        def work(conn: psycopg.Connection[Any]) -> list[str]:
            if not emissions:
                return []
            rows = conn.execute(
                ADD_OUTBOX + " RETURNING batch_id",
                (
                    [e.batch_id for e in emissions],
                    [e.bucket for e in emissions],
                    [e.prefix for e in emissions],
                    [e.count for e in emissions],
                    [e.trigger for e in emissions],
                    [to_micros(e.emitted_at) for e in emissions],
                    [to_micros(e.first_event_time) for e in emissions],
                    [to_micros(e.last_event_time) for e in emissions],
                ),
            ).fetchall()
            added = {row[0] for row in rows}
            self._add_counters(conn, emitted_counters(e for e in emissions if e.batch_id in added))
            return [e.batch_id for e in emissions if e.batch_id in added]

        return self._db.run(work, what="enqueue batches")

    def next_due(self) -> datetime | None:
        def read(conn: psycopg.Connection[Any]) -> datetime | None:
            row = conn.execute("SELECT min(due_at) FROM batches").fetchone()
            return opt_from_micros(row[0]) if row else None

        return self._db.run(read, what="read the next due time", idempotent=True)

    def claim_pending(self, now: datetime, lease: timedelta, limit: int = 100) -> list[Emission]:
        def work(conn: psycopg.Connection[Any]) -> list[Emission]:
            rows = conn.execute(
                CLAIM_OUTBOX, (to_micros(now + lease), to_micros(now), limit)
            ).fetchall()
            claimed = [emission_from_row(r) for r in rows]
            return sorted(claimed, key=lambda e: (e.emitted_at, e.bucket, e.prefix))

        return self._db.run(work, what="claim pending batches")

    def mark_published(self, batch_ids: Iterable[str], now: datetime) -> None:
        ids = sorted(batch_ids)
        if not ids:
            return
        self._db.run(
            lambda conn: conn.execute(
                "WITH done AS (UPDATE outbox SET published_at = %s, claimed_until = NULL "
                "WHERE batch_id = ANY(%b::text[]) RETURNING batch_id) "
                "DELETE FROM publish_failures WHERE batch_id IN (SELECT batch_id FROM done)",
                (to_micros(now), ids),
            ),
            what="mark batches published",
            # Losing this on a server crash only means publishing again (at least once, same
            # batch_id), so the commit does not wait for the disk.
            durable=False,
            idempotent=True,
        )

    def release(self, batch_ids: Iterable[str]) -> None:
        ids = sorted(batch_ids)
        if not ids:
            return
        self._db.run(
            lambda conn: conn.execute(
                "UPDATE outbox SET claimed_until = NULL "
                "WHERE batch_id = ANY(%b::text[]) AND published_at IS NULL",
                (ids,),
            ),
            what="release claimed batches",
            durable=False,  # a lost release only delays the retry until the lease runs out
            idempotent=True,
        )

    # --- reading -----------------------------------------------------------------------
    def open_batches(self) -> list[OpenBatch]:
        def read(conn: psycopg.Connection[Any]) -> list[OpenBatch]:
            rows = conn.execute(
                f"SELECT {BATCH_COLUMNS} FROM batches "
                'ORDER BY bucket COLLATE "C", prefix COLLATE "C"'
            ).fetchall()
            return [batch_from_row(r) for r in rows]

        return self._db.run(read, what="list open batches", idempotent=True)

    def published(self) -> list[Emission]:
        def read(conn: psycopg.Connection[Any]) -> list[Emission]:
            rows = conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NOT NULL "
                'ORDER BY emitted_at, bucket COLLATE "C", prefix COLLATE "C"'
            ).fetchall()
            return [emission_from_row(r) for r in rows]

        return self._db.run(read, what="list published batches", idempotent=True)

    def pending(self, limit: int = 100) -> list[PendingBatch]:
        def read(conn: psycopg.Connection[Any]) -> list[PendingBatch]:
            # A store still at schema 1 (read-only status does not migrate) has no failure table.
            joined = conn.execute("SELECT to_regclass('publish_failures') IS NOT NULL").fetchone()
            rows = conn.execute(
                f"{pending_select(bool(joined and joined[0]))} "  # type: ignore[arg-type]
                'ORDER BY o.emitted_at, o.bucket COLLATE "C", o.prefix COLLATE "C" LIMIT %s',
                (limit,),
            ).fetchall()
            return [pending_from_row(row) for row in rows]

        return self._db.run(read, what="list pending batches", idempotent=True)

    def record_failures(self, errors: Mapping[str, str], now: datetime) -> None:
        if not errors:
            return
        ids = sorted(errors)
        self._db.run(
            lambda conn: conn.execute(
                "INSERT INTO publish_failures "
                "SELECT batch_id, 1, last_error, %s FROM unnest(%b::text[], %b::text[]) "
                "AS t(batch_id, last_error) ON CONFLICT (batch_id) DO UPDATE SET "
                "attempts = publish_failures.attempts + 1, last_error = excluded.last_error, "
                "last_attempt_at = excluded.last_attempt_at",
                (to_micros(now), ids, [errors[i] for i in ids]),
            ),
            what="record publish failures",
            durable=False,  # a lost count only makes `edp status` show one attempt fewer
            idempotent=True,
        )

    def pending_count(self) -> int:
        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()
            return int(row[0]) if row else 0

        return self._db.run(read, what="count pending batches", idempotent=True)

    def add_counters(self, counts: Counter[str]) -> None:
        if any(counts.values()):
            self._db.run(lambda conn: self._add_counters(conn, counts), what="add to the counters")

    def counters(self) -> dict[str, int]:
        def read(conn: psycopg.Connection[Any]) -> dict[str, int]:
            rows = conn.execute(
                "SELECT name, sum(value)::bigint FROM counters GROUP BY name "
                'ORDER BY name COLLATE "C"'
            ).fetchall()
            return {name: int(value) for name, value in rows}

        return self._db.run(read, what="read the counters", idempotent=True)

    def purge(self, now: datetime, window: timedelta) -> int:
        cleared = False

        # SKIP LOCKED: purging never waits for (or deadlocks with) a writer using those rows.
        def work(conn: psycopg.Connection[Any]) -> int:
            nonlocal cleared
            removed = conn.execute(PURGE_SEEN, (to_micros(now),)).rowcount
            conn.execute(PURGE_CLOSED, (to_micros(now),))
            removed += conn.execute(PURGE_SEQUENCERS, (to_micros(now - window),)).rowcount
            cleared = self._legacy_identities and not conn.execute(LEGACY_LEFT).fetchone()
            if cleared:
                conn.execute("DELETE FROM meta WHERE name = %s", (LEGACY_IDENTITIES,))
            return int(removed)

        removed = self._db.run(work, what="purge old dedupe state")
        if cleared:  # committed: no identity of the old form is left
            self._legacy_identities = False
        return removed

    def close(self) -> None:
        self._db.close()
