"""Fixtures for the deployment tests (the shared pieces live in deploy_support.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.deploy_support import TEMPLATES_DIR, load_template


@pytest.fixture(scope="session")
def emitter_template() -> dict[str, Any]:
    return load_template(TEMPLATES_DIR / "emitter.yaml")


@pytest.fixture(scope="session")
def consumer_template() -> dict[str, Any]:
    return load_template(TEMPLATES_DIR / "consumer.yaml")
