"""Fixtures for these tests: the shared PostgreSQL ones from tests/pgfixture.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgfixture import pg_database, pg_server, pg_url

__all__ = ["pg_database", "pg_server", "pg_url"]
