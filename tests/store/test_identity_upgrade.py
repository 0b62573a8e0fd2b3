"""A store written by an earlier edp keeps its duplicates duplicates after the upgrade.

Each identity was stored as a bare 32-hex digest under SQLite schema 1 and PostgreSQL schema 2
(where SQLite also kept a closed batch's dedupe expiry on every identity row), then as folder tag
and digest (40 hex) under SQLite 2 and PostgreSQL 3; now the sequencer's first digits follow the
tag. The stores here are made with the current code, then turned back into an earlier layout
with SQL, reopened (which migrates them) and fed the same events again: every one must be a
duplicate; new events are accepted; once the old rows have expired and been purged, the store
stops looking up the earlier forms.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from edp.core import RoutedEvent, Rules
from edp.events import ObjectEvent, earlier_forms
from edp.store import BatchStore, open_store
from edp.store.base import LEGACY_IDENTITIES

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RULES = Rules(
    threshold_count=3,
    threshold_duration=timedelta(seconds=600),
    dedupe_window=timedelta(hours=1),
)


def events(first: int, count: int, at: datetime) -> list[RoutedEvent]:
    """``count`` files in one folder: with a threshold of 3, some batches close, one stays open."""
    out = []
    for n in range(first, first + count):
        obj = ObjectEvent(
            "lab-bucket",
            f"run-1/file-{n:03d}.csv",
            "created",
            at,
            sequencer=f"{n + 1:016X}",
            event_id=f"ev-{n}",
        )
        out.append(RoutedEvent(obj, "run-1/", at))
    return out


# The earlier forms (index into earlier_forms) and the schemas that stored them.
FORMS = {"digest": 0, "tagged": 1}
SQLITE_SCHEMA = {"digest": "1", "tagged": "2"}
POSTGRES_SCHEMA = {"digest": "2", "tagged": "3"}


def rewrite_identities(db: Any, stream: list[RoutedEvent], form: str, mark: str) -> None:
    query = f"UPDATE seen SET identity = {mark} WHERE identity = {mark}"
    for routed in stream:
        identity = routed.event.identity()
        assert identity is not None
        db.execute(query, (earlier_forms(identity)[FORMS[form]], identity))
    db.execute(f"DELETE FROM meta WHERE name = {mark}", (LEGACY_IDENTITIES,))


def downgrade_sqlite(path: Path, stream: list[RoutedEvent], form: str) -> None:
    """Rewrite a current SQLite store into the layout of the schema that stored ``form``."""
    with sqlite3.connect(path) as db:
        rewrite_identities(db, stream, form, "?")
        if form == "digest":
            db.execute(
                "UPDATE seen SET expires_at = "
                "(SELECT c.expires_at FROM closed c WHERE c.batch_id = seen.batch_id)"
            )
            db.execute("DROP TABLE closed")
        db.execute(
            "UPDATE meta SET value = ? WHERE name = 'schema_version'", (SQLITE_SCHEMA[form],)
        )


def downgrade_postgres(url: str, stream: list[RoutedEvent], form: str) -> None:
    """Rewrite a current PostgreSQL store into the layout of the schema that stored ``form``."""
    with psycopg.connect(url, autocommit=True) as conn:
        rewrite_identities(conn, stream, form, "%s")
        conn.execute(
            "UPDATE meta SET value = %s WHERE name = 'schema_version'", (POSTGRES_SCHEMA[form],)
        )


def legacy_flag(backend: str, where: Any) -> bool:
    if backend == "sqlite":
        with sqlite3.connect(where) as db:
            query = "SELECT 1 FROM meta WHERE name = ?"
            return db.execute(query, (LEGACY_IDENTITIES,)).fetchone() is not None
    with psycopg.connect(where) as conn:
        query = "SELECT 1 FROM meta WHERE name = %s"
        return conn.execute(query, (LEGACY_IDENTITIES,)).fetchone() is not None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any, str]]:
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite"
        yield "sqlite", path, f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
        yield "postgres", url, url


@pytest.mark.parametrize("form", sorted(FORMS))
def test_events_stored_before_the_upgrade_stay_duplicates(
    backend: tuple[str, Any, str], form: str
) -> None:
    kind, where, url = backend
    stream = events(0, 8, T0)  # batches of 3, 3 (closed) and 2 (open)
    store: BatchStore = open_store(url)
    closed = store.ingest(stream, RULES).emissions
    store.close()
    assert [e.count for e in closed] == [3, 3]
    if kind == "sqlite":
        downgrade_sqlite(where, stream, form)
    else:
        downgrade_postgres(where, stream, form)

    store = open_store(url)  # migrates
    assert legacy_flag(kind, where)
    assert store.schema_version() > int(
        (SQLITE_SCHEMA if kind == "sqlite" else POSTGRES_SCHEMA)[form]
    )
    later = T0 + timedelta(minutes=5)
    again = [RoutedEvent(r.event, r.prefix, later) for r in stream]
    before = store.counters()
    result = store.ingest(again, RULES)
    counted = {k: v - before.get(k, 0) for k, v in store.counters().items()}
    assert counted.get("duplicate") == 8 and counted.get("accepted", 0) == 0
    assert result.emissions == []
    # New files are accepted and join the batch left open before the upgrade.
    fresh = events(8, 1, later)
    assert [e.count for e in store.ingest(fresh, RULES).emissions] == [3]

    # Purge removes old rows as their windows end; the store looks the old form up until none
    # is left. The two batches closed before the upgrade expire at T0 + 1 h; the one left open
    # (old-form identities of files 6 and 7) closed 5 minutes later.
    store.purge(T0 + RULES.dedupe_window + timedelta(minutes=1), RULES.dedupe_window)
    assert legacy_flag(kind, where)
    assert store.ingest(again[6:], RULES).emissions == []
    counted = {k: v - before.get(k, 0) for k, v in store.counters().items()}
    assert counted.get("duplicate") == 10 and counted.get("accepted") == 1
    store.purge(T0 + RULES.dedupe_window + timedelta(minutes=6), RULES.dedupe_window)
    assert not legacy_flag(kind, where)
    store.close()


def test_a_new_store_has_no_old_identities(backend: tuple[str, Any, str]) -> None:
    kind, where, url = backend
    store = open_store(url)
    store.ingest(events(0, 4, T0), RULES)
    store.close()
    store = open_store(url)
    assert not legacy_flag(kind, where)
    store.close()
