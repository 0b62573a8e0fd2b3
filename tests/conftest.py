"""Shared fixtures: fake AWS credentials for every test; the `integration` marker's rules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may reach a real AWS account: fake credentials, a fixed region."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name in list(os.environ):
        if name.startswith("EDP_") and name != "EDP_TEST_POSTGRES_URL":
            monkeypatch.delenv(name, raising=False)
    yield


# A test using one of these fixtures talks to a moto server on 127.0.0.1 (a thread, HTTP, quilt3).
MOTO_SERVER_FIXTURES = frozenset({"consumer_moto_url", "service_moto", "edp_moto_server_process"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` tests, tests on a PostgreSQL server (`postgres`) and tests on a moto server are
    `integration` tests, marked so or not."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        marked = item.get_closest_marker("slow") or item.get_closest_marker("postgres")
        if marked or fixtures & MOTO_SERVER_FIXTURES:
            item.add_marker(pytest.mark.integration)
