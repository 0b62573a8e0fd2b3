"""Batch stores: pick a backend from a database URL."""

from __future__ import annotations

from edp.errors import StoreError
from edp.store.base import BatchStore, IngestResult, PendingBatch
from edp.store.urls import EXPECTED, backend_of

__all__ = ["BatchStore", "IngestResult", "PendingBatch", "open_store"]


def open_store(
    url: str, *, secret_arn: str | None = None, durable: bool = True, read_only: bool = False
) -> BatchStore:
    """Open the store a URL names: ``sqlite:///path``, ``postgresql://...`` or ``memory://``.

    ``durable=False`` is for a throwaway SQLite file (simulate's own): commits skip the fsync.
    ``read_only`` (for `edp status`): open an existing store only; create no file, folder, table
    or schema, and fail with a StoreError when there is no store at that URL.

    Backends are imported here, on demand, so the Lambda that uses SQLite or memory never loads psycopg.
    """
    backend = backend_of(url)
    if backend == "sqlite":
        from edp.store.sqlite import SqliteStore

        return SqliteStore(url, durable=durable, read_only=read_only)
    if backend == "postgresql":
        try:
            from edp.store.postgres import PostgresStore
        except ImportError as err:
            raise StoreError(
                "PostgreSQL support is not installed: pip install -e '.[postgres]' "
                "in the edp-toolkit checkout"
            ) from err
        return PostgresStore(url, secret_arn=secret_arn, read_only=read_only)
    if backend == "memory":
        from edp.store.memory import MemoryStore

        return MemoryStore(url)
    scheme = url.split(":", 1)[0]
    raise StoreError(f"unknown database URL scheme {scheme!r}: use {EXPECTED}")
