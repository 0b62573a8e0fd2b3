"""PostgreSQL fixtures shared by tests/store and tests/postgres: a fresh database per session.

The server is the one ``EDP_TEST_POSTGRES_URL`` names (default: local, user postgres). Each test
gets its own schema in that database, through the URL's ``options=-csearch_path=...`` (which the
store passes through to libpq untouched). No server: the tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from edp.store.urls import redact_url

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("EDP_TEST_POSTGRES_URL") or DEFAULT_URL


def with_database(url: str, dbname: str, **query: str) -> str:
    """``url`` pointing at another database, with extra query parameters."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.update(query)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, urlencode(params), ""))


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def unreachable(reason: str) -> None:
    """Skip, or fail in CI, where a missing server means a broken setup rather than a laptop."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of a reachable server (skips or fails when there is none)."""
    url = server_url()
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        unreachable(
            f"PostgreSQL not reachable at {redact_url(url)}: set EDP_TEST_POSTGRES_URL ({first})"
        )
    return url


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """A URL of a database made for this test session and dropped after it."""
    name = f"edp_test_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(pg_server, name)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A store URL whose tables live in a schema of their own, dropped after the test."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_database(
            pg_database, database_of(pg_database), options=f"-csearch_path={schema}"
        )
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
