"""Fixtures for the deployment tests (the shared pieces live in deploy_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# deploy/ is tooling, not an installed package: make `import deploy.…` work from the tests.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from deploy_support import TEMPLATES_DIR, load_template  # noqa: E402


@pytest.fixture(scope="session")
def emitter_template() -> dict[str, Any]:
    return load_template(TEMPLATES_DIR / "emitter.yaml")


@pytest.fixture(scope="session")
def consumer_template() -> dict[str, Any]:
    return load_template(TEMPLATES_DIR / "consumer.yaml")
