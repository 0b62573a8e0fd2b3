"""The PostgreSQL store's schema: its migrations, applied once per version under an advisory
lock, and the check a read-only store makes that the tables are there."""

from __future__ import annotations

from typing import Any

import psycopg

from edp.errors import StoreError
from edp.store.base import LEGACY_IDENTITIES

MIGRATION_LOCK = (
    0x6564_7073_6368_656D  # pg_advisory_xact_lock key held while migrating ("edpschem")
)

# A store holding identities flags it: it looks up their earlier forms too (base.LEGACY_IDENTITIES).
_EARLIER_IDENTITIES_KEPT = """
    INSERT INTO meta (name, value) SELECT 'legacy_identities', '1'
        WHERE EXISTS (SELECT 1 FROM seen) ON CONFLICT (name) DO NOTHING;
    """

# Each entry migrates the schema from version N to N+1; never edit one that has shipped, add one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE places (
        bucket TEXT NOT NULL, prefix TEXT NOT NULL, PRIMARY KEY (bucket, prefix)
    );
    CREATE TABLE batches (
        bucket TEXT NOT NULL, prefix TEXT NOT NULL, batch_id TEXT NOT NULL,
        count INTEGER NOT NULL, changed BOOLEAN NOT NULL,
        first_activity BIGINT NOT NULL, last_activity BIGINT NOT NULL,
        first_event_time BIGINT NOT NULL, last_event_time BIGINT NOT NULL,
        due_at BIGINT,
        PRIMARY KEY (bucket, prefix)
    );
    CREATE INDEX batches_due ON batches (due_at) WHERE due_at IS NOT NULL;
    CREATE TABLE members (
        batch_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (batch_id, key)
    );
    CREATE TABLE seen (identity TEXT PRIMARY KEY, batch_id TEXT NOT NULL);
    CREATE INDEX seen_batch ON seen (batch_id);
    CREATE TABLE closed (batch_id TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
    CREATE INDEX closed_expires ON closed (expires_at);
    CREATE TABLE sequencers (
        bucket TEXT NOT NULL, key TEXT NOT NULL, sequencer TEXT NOT NULL,
        updated_at BIGINT NOT NULL, PRIMARY KEY (bucket, key)
    );
    CREATE INDEX sequencers_updated ON sequencers (updated_at);
    CREATE TABLE outbox (
        batch_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, prefix TEXT NOT NULL,
        count INTEGER NOT NULL, trigger TEXT NOT NULL, emitted_at BIGINT NOT NULL,
        first_event_time BIGINT NOT NULL, last_event_time BIGINT NOT NULL,
        published_at BIGINT, claimed_until BIGINT
    );
    CREATE INDEX outbox_pending ON outbox (emitted_at, bucket COLLATE "C", prefix COLLATE "C")
        WHERE published_at IS NULL;
    CREATE TABLE counters (
        name TEXT NOT NULL, shard SMALLINT NOT NULL, value BIGINT NOT NULL,
        PRIMARY KEY (name, shard)
    );
    CREATE TABLE clocks (shard SMALLINT PRIMARY KEY, value BIGINT NOT NULL);
    """,
    """
    CREATE TABLE publish_failures (
        batch_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL, last_error TEXT NOT NULL,
        last_attempt_at BIGINT NOT NULL
    );
    """,
    # 2 -> 3: identities gained a folder tag and batch ids are time-ordered; identities stored
    # so far are in the old form, and are looked up as well until purge finds none left.
    _EARLIER_IDENTITIES_KEPT,
    # 3 -> 4: identities gained the sequencer's first digits after the folder tag; as above.
    _EARLIER_IDENTITIES_KEPT,
)


SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Bring the schema to SCHEMA_VERSION (run inside a transaction)."""
    # Two processes starting at once: the second waits here, then finds the schema current.
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the store was written by a newer edp (schema {current} > {SCHEMA_VERSION}); "
            "upgrade edp"
        )
    for statement in MIGRATIONS[current:]:
        conn.execute(statement)  # type: ignore[arg-type]
    conn.execute(
        "INSERT INTO meta (name, value) VALUES ('schema_version', %s) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )


def check_schema(conn: psycopg.Connection[Any], url: str) -> None:
    """For a read-only store: the tables must be there already (nothing is created)."""
    row = conn.execute(
        "SELECT to_regclass('meta') IS NOT NULL AND to_regclass('outbox') IS NOT NULL, "
        "current_database(), current_schemas(false)::text"
    ).fetchone()
    if row is None or not row[0]:
        database, schemas = (row[1], row[2]) if row else ("?", "?")
        raise StoreError(
            f"no edp store at {url} (database {database!r}, schemas {schemas}): its "
            "tables are missing; check --db or EDP_DATABASE_URL (an emitter creates them)"
        )


def schema_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def legacy_identities(conn: psycopg.Connection[Any]) -> bool:
    """Whether identities written before schema 3 may still be stored."""
    row = conn.execute("SELECT 1 FROM meta WHERE name = %s", (LEGACY_IDENTITIES,)).fetchone()
    return row is not None
