"""Shared fixtures: the real-shaped events in tests/events/, the Lambda's environment, and the
files of the experiment those events announce.

The AWS fixtures (moto_server, registry_bucket, consumer_env, sns_reader,
lambda_context...) come from the EDP testing kit's pytest plugin. The events
name the bucket ``edp-registry``: the kit's default ``registry_bucket_name``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from consumers.testing.aws import put_objects

EVENTS_DIR = Path(__file__).parent / "events"
# What the stack's PackageMetadata and PackageDateKey parameters set in a deployment
# (template.yaml): the instrument workflow's fixed fields, and the key of the packaging date.
PACKAGE_METADATA = '{"ProjectID": "P-0001", "StudyID": "ST-2024-001"}'
PACKAGE_DATE_KEY = "Date"


@dataclass(frozen=True)
class Experiment:
    """Files an instrument wrote under one prefix."""

    prefix: str = "instrument/experiment-1/"
    package_name: str = "instrument/experiment-1"
    files: dict[str, str] = field(
        default_factory=lambda: {
            "reads.csv": "sample,reads\nA1,1024\nA2,2048\n",
            "notes/run.txt": "operator: EDP\n",
        }
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``event_file`` runs once per file in tests/events/: add a file, get a test."""
    if "event_file" in metafunc.fixturenames:
        metafunc.parametrize("event_file", sorted(p.name for p in EVENTS_DIR.glob("*.json")))


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    """Reads ``tests/events/<name>``."""

    def load(name: str) -> dict[str, Any]:
        return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
def lambda_env(consumer_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The deployed Lambda's environment: the kit's ``consumer_env`` plus this stack's defaults."""
    stack = {"PACKAGE_METADATA": PACKAGE_METADATA, "PACKAGE_DATE_KEY": PACKAGE_DATE_KEY}
    for name, value in stack.items():
        monkeypatch.setenv(name, value)
    return {**consumer_env, **stack}


@pytest.fixture
def experiment(registry_bucket: str) -> Experiment:
    """The experiment's files, uploaded under its prefix in the registry bucket."""
    run = Experiment()
    put_objects(registry_bucket, {run.prefix + name: body for name, body in run.files.items()})
    return run
