"""Shared fixtures: the Lambda's environment and the experiment's files in the registry bucket.

The AWS fixtures (moto_server, registry_bucket, consumer_env, sns_reader,
lambda_context...) come from the EDP testing kit's pytest plugin.
"""

from __future__ import annotations

import pytest
from consumers.testing.aws import put_objects

from fixture_events import EXPERIMENT_FILES, EXPERIMENT_PREFIX

# What the stack's PackageMetadata parameter sets in a deployment (template.yaml).
PACKAGE_METADATA = '{"ProjectID": "P-0001", "StudyID": "ST-2024-001"}'


@pytest.fixture
def lambda_env(consumer_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The deployed Lambda's environment: the kit's ``consumer_env`` plus this stack's defaults."""
    monkeypatch.setenv("PACKAGE_METADATA", PACKAGE_METADATA)
    return {**consumer_env, "PACKAGE_METADATA": PACKAGE_METADATA}


@pytest.fixture
def experiment(registry_bucket: str) -> dict[str, str]:
    """The experiment's files uploaded under EXPERIMENT_PREFIX of the registry bucket."""
    put_objects(registry_bucket, {EXPERIMENT_PREFIX + k: v for k, v in EXPERIMENT_FILES.items()})
    return EXPERIMENT_FILES
