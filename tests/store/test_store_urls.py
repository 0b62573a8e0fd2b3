"""Database URLs: the backend a URL names is decided in one place (edp.store.urls), the store
says whether it has one user, and passwords never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from edp.errors import SettingsError, StoreError
from edp.settings import Settings
from edp.store import open_store
from edp.store.urls import backend_of, redact_url


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("sqlite:///tmp/x.sqlite", "sqlite"),
        ("SQLite:///tmp/x.sqlite", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
        ("memory://", "memory"),
        ("mysql://u@h/db", None),
        ("host=db password=x", None),
    ],
)
def test_the_backend_a_url_names(url: str, backend: str | None) -> None:
    assert backend_of(url) == backend


def test_settings_and_open_store_refuse_the_same_urls() -> None:
    with pytest.raises(SettingsError, match="DatabaseUrl"):
        Settings(database_url="mysql://u:secret@h/db")
    with pytest.raises(StoreError, match="mysql") as caught:
        open_store("mysql://u:secret@h/db")
    assert "secret" not in str(caught.value)


def test_sqlite_and_memory_stores_are_exclusive_postgres_is_not(tmp_path: Path) -> None:
    from edp.store.postgres import PostgresStore

    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as sqlite_store:
        assert sqlite_store.exclusive
    assert open_store("memory://").exclusive
    assert not PostgresStore.exclusive


def test_redaction_masks_url_and_libpq_passwords() -> None:
    assert redact_url("postgresql://edp:s3cr3t@db/edp") == "postgresql://edp:***@db/edp"
    assert "s3cr3t" not in redact_url("host=db password='s3 cr3t' user=edp")
