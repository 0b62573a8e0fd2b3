"""Fixtures for these tests: the shared PostgreSQL ones from tests/pgfixture.py."""

from __future__ import annotations

from tests.pgfixture import pg_database, pg_server, pg_url

__all__ = ["pg_database", "pg_server", "pg_url"]
