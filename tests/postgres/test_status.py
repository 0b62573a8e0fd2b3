"""`edp status` against PostgreSQL: read-only, nothing created, the password never shown."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from edp.store import open_store


def edp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edp.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.postgres
def test_status_on_postgres_creates_no_tables_and_masks_the_password(pg_url: str) -> None:
    def tables() -> int:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchone()
            return int(row[0]) if row else 0

    before = tables()
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    result = edp("status", "--db", url)
    assert result.returncode == 1 and "tables are missing" in result.stderr
    assert "s3cret" not in result.stderr and "***" in result.stderr
    assert tables() == before


@pytest.mark.postgres
def test_status_reads_an_existing_postgres_store(pg_url: str) -> None:
    open_store(pg_url).close()  # an emitter created the schema
    result = edp("status", "--db", pg_url)
    assert result.returncode == 0, result.stderr
    assert "Open batches: 0   waiting to publish: 0" in result.stdout


@pytest.mark.postgres
def test_a_read_only_postgres_store_refuses_writes(pg_url: str) -> None:
    from collections import Counter

    from edp.errors import StoreError

    open_store(pg_url).close()
    store = open_store(pg_url, read_only=True)
    try:
        with pytest.raises(StoreError, match="read-only"):
            store.add_counters(Counter({"accepted": 1}))
    finally:
        store.close()
