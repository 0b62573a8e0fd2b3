"""The reference Lambda: direct EventBridge invocation, SQS batches with per-message failures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from consumers.auto_package import handler
from consumers.quilt_env import quilt_environment
from tests.consumers.consumer_helpers import World
from tests.helpers import load_event

PREFIX = "genome-lab/exp-0042/"
GOOD_META = {
    "Author": "EDP",
    "ComputerName": "Genome Lab - 1234",
    "Date": "2022-12-08",
    "ProjectID": "YYD",
    "StudyID": "ABC-23-023394",
}


@dataclass
class LambdaContext:
    function_name: str = "edp-auto-package"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:edp-auto-package"
    aws_request_id: str = "6f1c6ae1-5d6c-4c1a-9a34-1d1c8b8f2f0e"


def fixture_for(world: World, name: str) -> Any:
    """A fixture event with its bucket replaced by the test's bucket."""
    return json.loads(json.dumps(load_event(name)).replace("instrument-bucket", world.bucket))


@pytest.fixture
def lambda_env(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "WORKFLOW_NAME": "instrument",
        "QUARANTINE_BUCKET_NAME": world.quarantine,
        "SNS_TOPIC_ARN": world.topic_arn,
        "QUILT_URL": "https://quilt.example.com",
        "PACKAGE_METADATA": json.dumps(GOOD_META),
        "POWERTOOLS_METRICS_NAMESPACE": "EDPTest",
    }.items():
        monkeypatch.setenv(name, value)
    world.install_workflow()
    world.put(PREFIX, {"a.csv": "x,y\n1,2\n", "b.txt": "hello"})


def emf_metrics(stdout: str) -> dict[str, float]:
    """Metric values from the CloudWatch EMF lines Powertools printed."""
    values: dict[str, float] = {}
    for line in stdout.splitlines():
        if line.startswith("{") and "_aws" in line:
            record = json.loads(line)
            for directive in record["_aws"]["CloudWatchMetrics"]:
                assert directive["Namespace"] == "EDPTest"
                for metric in directive["Metrics"]:
                    value = record[metric["Name"]]
                    values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


@pytest.mark.usefixtures("lambda_env")
def test_direct_eventbridge_invocation_pushes_and_counts(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    result = handler(fixture_for(world, "ready_eventbridge"), LambdaContext())
    [outcome] = result["outcomes"]
    assert outcome["status"] == "pushed" and outcome["package_name"] == "genome-lab/exp-0042"
    assert world.latest_top_hash("genome-lab/exp-0042") == outcome["top_hash"]
    assert emf_metrics(capsys.readouterr().out)["PackagesPushed"] == 1

    again = handler(fixture_for(world, "ready_eventbridge"), LambdaContext())
    assert again["outcomes"][0]["status"] == "unchanged"
    assert emf_metrics(capsys.readouterr().out)["PackagesUnchanged"] == 1


@pytest.mark.usefixtures("lambda_env")
def test_sqs_batch_reports_only_the_failed_messages(world: World) -> None:
    event = fixture_for(world, "ready_lambda_sqs")
    missing_bucket = json.loads(event["Records"][0]["body"])
    missing_bucket["detail"]["bucket"] = "no-such-bucket-here"
    event["Records"].append(
        {**event["Records"][0], "messageId": "m-missing-bucket", "body": json.dumps(missing_bucket)}
    )

    result = handler(event, LambdaContext())

    assert result == {
        "batchItemFailures": [
            {"itemIdentifier": "8a5f2c1e-3b4d-4e6f-9a0b-1c2d3e4f5a6b"},  # no prefix
            {"itemIdentifier": "m-missing-bucket"},
        ]
    }
    assert len(world.revisions("genome-lab/exp-0042")) == 1  # two good messages, one revision


@pytest.mark.usefixtures("lambda_env")
def test_bad_metadata_through_lambda_sns_is_quarantined_and_alerted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACKAGE_METADATA", json.dumps({"Author": "EDP"}))
    result = handler(fixture_for(world, "ready_lambda_sns"), LambdaContext())
    assert result["outcomes"][0]["status"] == "quarantined"
    [alert] = world.alerts()
    assert "ComputerName" in alert["Message"]


def test_missing_settings_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QUARANTINE_BUCKET_NAME", "SNS_TOPIC_ARN", "QUILT_URL"):
        monkeypatch.delenv(name, raising=False)
    from consumers.errors import SettingsError

    with pytest.raises(SettingsError, match="QUARANTINE_BUCKET_NAME"):
        handler(load_event("ready_eventbridge"), LambdaContext())


def test_quilt_environment_is_lambda_safe_and_keeps_explicit_values() -> None:
    env = {"AWS_LAMBDA_FUNCTION_NAME": "edp-auto-package", "QUILT_MINIMIZE_STDOUT": "false"}
    applied = quilt_environment(env)
    assert env["QUILT_DISABLE_USAGE_METRICS"] == "true"
    assert env["QUILT_DISABLE_CACHE"] == "true"
    assert env["XDG_DATA_HOME"].startswith("/tmp/") and env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["QUILT_MINIMIZE_STDOUT"] == "false" and "QUILT_MINIMIZE_STDOUT" not in applied
    outside_lambda: dict[str, str] = {}
    quilt_environment(outside_lambda)
    assert (
        "XDG_DATA_HOME" not in outside_lambda
        and outside_lambda["QUILT_DISABLE_USAGE_METRICS"] == "true"
    )


def outcome_lines(stdout: str) -> list[dict[str, Any]]:
    """The consumer's structured outcome log lines (Powertools JSON) in ``stdout``."""
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("message") == "package outcome"]


@pytest.mark.usefixtures("lambda_env")
def test_quilt3_prints_nothing_and_each_outcome_is_one_structured_line(
    world: World, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import quilt3.data_transfer
    import quilt3.util

    from consumers import auto_package

    # Powertools keeps the stream it was created with: point it at this test's stdout.
    monkeypatch.setattr(auto_package.logger.registered_handler, "stream", sys.stdout)
    # As if quilt3 had been imported before quilt_environment(): its bars are on.
    monkeypatch.setattr(quilt3.util, "DISABLE_TQDM", False)
    monkeypatch.setattr(quilt3.data_transfer, "DISABLE_TQDM", False, raising=False)
    handler(fixture_for(world, "ready_eventbridge"), LambdaContext())
    handler(fixture_for(world, "ready_eventbridge"), LambdaContext())
    monkeypatch.setenv("PACKAGE_METADATA", json.dumps({"Author": "EDP"}))
    handler(fixture_for(world, "ready_eventbridge"), LambdaContext())

    captured = capfd.readouterr()
    for text in ("Successfully pushed", "pushed to s3://", "Copying objects", "Hashing", "it/s"):
        assert text not in captured.out and text not in captured.err
    lines = outcome_lines(captured.out)
    assert [line["outcome"]["status"] for line in lines] == ["pushed", "unchanged", "quarantined"]
    assert all(line["level"] == "INFO" and line["batch_id"] for line in lines)


@pytest.mark.usefixtures("lambda_env")
def test_a_rejected_prefix_redelivered_through_sqs_is_handled_every_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACKAGE_METADATA", json.dumps({"Author": "EDP"}))
    event = fixture_for(world, "ready_lambda_sqs")
    event["Records"] = event["Records"][:2]  # the two good messages: the same prefix twice
    results = [handler(event, LambdaContext()) for _ in range(3)]
    assert results == [{"batchItemFailures": []}] * 3  # 6 deliveries, no failure
    assert len(world.revisions("genome-lab/exp-0042", world.quarantine)) == 1
    [alert] = world.alerts()
    assert "quarantined" in alert["Subject"]


@pytest.mark.usefixtures("lambda_env")
def test_an_sqs_batch_where_every_message_fails_reports_them_all(world: World) -> None:
    # Powertools' BatchProcessor would raise when the whole batch fails; the handler reports
    # each message instead, so the queue's redrive policy counts them one by one.
    event = fixture_for(world, "ready_lambda_sqs")
    for index, record in enumerate(event["Records"]):
        record["messageId"] = f"bad-{index}"
        record["body"] = "not json"
    result = handler(event, LambdaContext())
    assert result == {
        "batchItemFailures": [{"itemIdentifier": f"bad-{i}"} for i in range(len(event["Records"]))]
    }
