"""Connections fit for Lambda: reuse, reconnect, migration races, TLS pass-through, secrets, no leaks."""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest
from moto import mock_aws

from edp.core import Changes, RoutedEvent, Rules
from edp.errors import StoreError
from edp.events import ObjectEvent
from edp.store import open_store
from edp.store.pg_schema import SCHEMA_VERSION
from edp.store.postgres import PostgresStore
from tests.pgfixture import with_database

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 7, 1, tzinfo=UTC)
RULES = Rules(threshold_count=1000, threshold_duration=timedelta(seconds=60))
PASSWORD = "s3cr3t-Pa55word!"


def events(first: int, count: int) -> list[RoutedEvent]:
    return [
        RoutedEvent(
            ObjectEvent("lab", f"a/b/{n}.csv", "created", T0, event_id=f"id-{n}"),
            "a/b/",
            T0 + timedelta(seconds=n),
        )
        for n in range(first, first + count)
    ]


def terminate(admin_url: str, pid: int) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def backend_pid(store: PostgresStore) -> int:
    conn = store._db.conn
    assert conn is not None
    return int(conn.info.backend_pid)


def full_text(err: BaseException) -> str:
    """Everything a log line of this error would show: the message, causes, traceback."""
    return "".join(traceback.format_exception(err))


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg_url)
    yield opened
    opened.close()


def test_one_connection_is_reused_across_calls(store: PostgresStore) -> None:
    pid = backend_pid(store)
    for start in range(0, 50, 10):
        store.ingest(events(start, 10), RULES)
    store.counters()
    assert backend_pid(store) == pid
    assert store.reconnects == 0


def test_a_dropped_connection_is_reestablished_and_nothing_is_lost(
    store: PostgresStore, pg_database: str
) -> None:
    store.ingest(events(0, 10), RULES)
    terminate(pg_database, backend_pid(store))  # the server ends our session between calls
    store.ingest(events(10, 10), RULES)
    assert store.reconnects == 1
    assert store.counters() == {"accepted": 20}
    assert [b.count for b in store.open_batches()] == [20]


class DiesInCommit(PostgresStore):
    """Loses its connection after the transaction's work, just before COMMIT, once."""

    admin_url = ""
    armed = True

    def _save(self, conn: psycopg.Connection[Any], changes: Changes, rules: Rules) -> None:
        super()._save(conn, changes, rules)
        if self.armed:
            self.armed = False
            terminate(self.admin_url, int(conn.info.backend_pid))


def test_a_transaction_cut_off_at_commit_is_run_again_exactly_once(
    pg_url: str, pg_database: str
) -> None:
    store = DiesInCommit(pg_url)
    store.admin_url = pg_database
    try:
        store.ingest(events(0, 10), RULES)
        assert store.reconnects == 1
        assert store.counters() == {"accepted": 10}
        assert [b.count for b in store.open_batches()] == [10]
    finally:
        store.close()


def test_the_schema_is_created_once_when_several_processes_start_at_once(pg_url: str) -> None:
    barrier = threading.Barrier(6)
    opened: list[PostgresStore] = []
    failures: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            opened.append(PostgresStore(pg_url))
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert failures == []
        assert [s.schema_version() for s in opened] == [SCHEMA_VERSION] * 6
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT name, value FROM meta").fetchall()
        assert rows == [("schema_version", str(SCHEMA_VERSION))]
    finally:
        for s in opened:
            s.close()


def test_a_store_written_by_a_newer_edp_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(StoreError, match="newer edp"):
        PostgresStore(pg_url)


def test_tls_settings_in_the_url_reach_libpq(pg_url: str) -> None:
    # The test server has no TLS: requiring it must fail, which shows sslmode got through.
    with psycopg.connect(pg_url) as conn:
        ssl_on = conn.execute("SHOW ssl").fetchone() == ("on",)
    if ssl_on:
        pytest.skip("the test server has TLS on; this checks the refusal of a server without it")
    with pytest.raises(StoreError, match="SSL"):
        PostgresStore(pg_url + "&sslmode=require&sslrootcert=/etc/ssl/certs/rds-ca.pem")
    PostgresStore(pg_url + "&sslmode=prefer").close()


def test_the_password_in_the_url_never_shows(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edp")
    parts = urlsplit(pg_url)
    with_password = pg_url.replace(f"{parts.username}@", f"{parts.username}:{PASSWORD}@")
    unreachable = with_password.replace(f":{parts.port}/", ":1/")
    with pytest.raises(StoreError) as caught:
        open_store(unreachable)
    assert "***" in str(caught.value)
    assert PASSWORD not in full_text(caught.value)
    # Trust auth accepts any password: the store works, and shows itself without it.
    store = open_store(with_password)
    try:
        assert PASSWORD not in repr(store) and PASSWORD not in store.url
        store.ingest(events(0, 3), RULES)
    finally:
        store.close()
    assert PASSWORD not in caplog.text


def test_a_password_parameter_in_the_query_never_shows(pg_url: str) -> None:
    store = open_store(f"{pg_url}&password={PASSWORD}")
    try:
        assert "password=***" in store.url
        assert PASSWORD not in repr(store)
    finally:
        store.close()
    with pytest.raises(StoreError) as caught:
        open_store(f"{pg_url}&password={PASSWORD}&port=1")
    assert PASSWORD not in full_text(caught.value)


@pytest.fixture
def secret(pg_database: str) -> Iterator[tuple[str, dict[str, Any]]]:
    parts = urlsplit(pg_database)
    value = {
        "engine": "postgres",
        "username": parts.username or "postgres",
        "password": PASSWORD,
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "dbname": parts.path.lstrip("/"),
    }
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(Name="edp/rds", SecretString=json.dumps(value))["ARN"]
        yield arn, value


def test_the_secret_supplies_the_connection(
    secret: tuple[str, dict[str, Any]], pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    arn, _ = secret
    caplog.set_level(logging.DEBUG, logger="edp")
    search_path = urlsplit(pg_url).query  # the test's own schema; everything else from the secret
    store = open_store(f"postgresql://nobody@192.0.2.1:1/wrong?{search_path}", secret_arn=arn)
    try:
        store.ingest(events(0, 5), RULES)
        assert store.counters() == {"accepted": 5}
        assert PASSWORD not in repr(store)
    finally:
        store.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (1,)
    assert PASSWORD not in caplog.text


def test_a_failing_connection_from_the_secret_does_not_leak_the_password(
    secret: tuple[str, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    arn, value = secret
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({**value, "port": 1}))
    caplog.set_level(logging.DEBUG, logger="edp")
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://", secret_arn=arn)
    assert "cannot connect" in str(caught.value)
    assert PASSWORD not in full_text(caught.value)
    assert PASSWORD not in caplog.text


def test_a_secret_that_is_not_rds_json_is_reported_without_its_text(
    secret: tuple[str, dict[str, Any]],
) -> None:
    arn, _ = secret
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    client.put_secret_value(SecretId=arn, SecretString=f"password={PASSWORD}")
    with pytest.raises(StoreError, match="not a JSON object") as caught:
        open_store("postgresql://", secret_arn=arn)
    assert PASSWORD not in full_text(caught.value)


def test_a_missing_secret_says_which(pg_url: str) -> None:
    with mock_aws():
        arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:edp/none-AbCdEf"
        with pytest.raises(StoreError, match="cannot read the database secret"):
            open_store(pg_url, secret_arn=arn)


def test_with_database_keeps_the_query() -> None:
    url = with_database("postgresql://u@h:5/a?sslmode=require", "b", options="-cx=y")
    assert url == "postgresql://u@h:5/b?sslmode=require&options=-cx%3Dy"
