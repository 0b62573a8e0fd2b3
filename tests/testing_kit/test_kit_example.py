"""The example test of docs/writing-a-consumer.md (testing kit section), kept here so the documented example keeps working."""

from __future__ import annotations

import json

import pytest
import quilt3

from consumers.auto_package import handler
from consumers.testing import FakeLambdaContext, package_objects_ready
from consumers.testing.aws import SnsReader, put_objects

RUN_METADATA = {
    "Author": "EDP",
    "ComputerName": "Genome Lab - 1234",
    "Date": "2024-05-14",
    "ProjectID": "YYD",
    "StudyID": "ABC-23-023394",
}


def test_a_ready_prefix_becomes_a_package(
    consumer_env: dict[str, str],
    registry_bucket: str,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PACKAGE_METADATA", json.dumps(RUN_METADATA))
    put_objects(registry_bucket, {"instrument/run-1/reads.csv": "sample,reads\nA1,10\n"})

    handler(package_objects_ready(registry_bucket, "instrument/run-1/"), lambda_context)

    package = quilt3.Package.browse("instrument/run-1", registry=f"s3://{registry_bucket}")
    assert "reads.csv" in package
    assert package.meta["StudyID"] == "ABC-23-023394"


def test_a_package_without_the_required_metadata_is_quarantined_and_announced(
    consumer_env: dict[str, str],
    registry_bucket: str,
    quarantine_bucket: str,
    sns_reader: SnsReader,
    lambda_context: FakeLambdaContext,
) -> None:
    put_objects(registry_bucket, {"instrument/run-1/reads.csv": "sample,reads\nA1,10\n"})

    handler(package_objects_ready(registry_bucket, "instrument/run-1/"), lambda_context)

    quarantined = quilt3.Package.browse("instrument/run-1", registry=f"s3://{quarantine_bucket}")
    assert "reads.csv" in quarantined
    (notice,) = sns_reader.messages()
    assert "instrument/run-1" in notice.message
