"""Tests of the Lambda handler against moto: what reached the registry, the quarantine and SNS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import quilt3
from consumers.errors import BadEventError
from consumers.testing import FakeLambdaContext, package_objects_ready, s3_object_event
from consumers.testing.aws import SnsReader, list_keys

from {{ cookiecutter.package_name }}.handler import handler


def test_each_fixture_event_pushes_the_prefix_as_a_package(
    event_file: str,
    load_event: Callable[[str], dict[str, Any]],
    lambda_env: dict[str, str],
    registry_bucket: str,
    experiment: Any,
    lambda_context: FakeLambdaContext,
) -> None:
    reply = handler(load_event(event_file), lambda_context)

    assert [(p["status"], p["package_name"]) for p in reply["packages"]] == [
        ("pushed", experiment.package_name)
    ]
    package = quilt3.Package.browse(experiment.package_name, registry=f"s3://{registry_bucket}")
    assert set(experiment.files) <= {key for key, _ in package.walk()}
    assert package.meta["edp"]["source"] == f"s3://{registry_bucket}/{experiment.prefix}"
    assert package.meta["StudyID"] == "ST-2024-001"


def test_a_second_delivery_of_the_same_batch_changes_nothing(
    lambda_env: dict[str, str],
    registry_bucket: str,
    experiment: Any,
    lambda_context: FakeLambdaContext,
) -> None:
    event = package_objects_ready(registry_bucket, experiment.prefix)

    first = handler(event, lambda_context)["packages"][0]
    again = handler(event, lambda_context)["packages"][0]

    assert first["status"] == "pushed"
    assert again["status"] == "unchanged"
    assert again["top_hash"] == first["top_hash"]


def written_by_the_consumer(bucket: str, experiment: Any) -> set[str]:
    """Keys of the experiment's prefix that the instrument did not write."""
    instrument = {experiment.prefix + name for name in experiment.files}
    return set(list_keys(bucket, experiment.prefix)) - instrument


def test_the_consumers_own_files_coming_back_as_a_batch_change_nothing(
    lambda_env: dict[str, str],
    registry_bucket: str,
    experiment: Any,
    lambda_context: FakeLambdaContext,
) -> None:
    """The loop closes: the files the consumer adds land in the prefix, the emitter reports
    them as a new batch (another id, count and day), and the package is the same."""
    first = handler(package_objects_ready(registry_bucket, experiment.prefix), lambda_context)
    written = written_by_the_consumer(registry_bucket, experiment)
    added = {"README.md", ".quiltignore", "quilt_summarize.json"}  # the library's defaults
    assert written == {experiment.prefix + name for name in added}
    loop_back = package_objects_ready(
        registry_bucket,
        experiment.prefix,
        count=len(written),
        trigger="duration",
        batch_id="the-consumers-own-writes",
        first_event_time="2099-01-02T00:00:01Z",
        last_event_time="2099-01-02T00:00:02Z",
    )

    again = handler(loop_back, lambda_context)["packages"][0]

    pushed = first["packages"][0]
    assert pushed["status"] == "pushed"
    assert (again["status"], again["top_hash"]) == ("unchanged", pushed["top_hash"])
    assert written_by_the_consumer(registry_bucket, experiment) == written  # no new batch


def test_a_package_the_workflow_rejects_is_quarantined_and_announced(
    lambda_env: dict[str, str],
    registry_bucket: str,
    quarantine_bucket: str,
    sns_reader: SnsReader,
    experiment: Any,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKFLOW_NAME", "no-such-workflow")

    reply = handler(package_objects_ready(registry_bucket, experiment.prefix), lambda_context)

    assert reply["packages"][0]["status"] == "quarantined"
    quarantined = quilt3.Package.browse(
        experiment.package_name, registry=f"s3://{quarantine_bucket}"
    )
    assert "reads.csv" in quarantined
    notices = sns_reader.messages()
    assert len(notices) == 1
    assert experiment.package_name in notices[0].message


def test_an_s3_object_event_is_refused_so_it_reaches_the_dead_letter_queue(
    lambda_env: dict[str, str], lambda_context: FakeLambdaContext
) -> None:
    with pytest.raises(BadEventError):
        handler(s3_object_event("edp-registry", "instrument/a.csv"), lambda_context)
