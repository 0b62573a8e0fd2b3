"""The Lambda entry points against moto: what reaches the bus, and batchItemFailures for bad messages."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from edp import handlers
from edp.clock import FixedClock
from tests.helpers import T0, at, load_event

BUS = "edp-bus"


@dataclass
class LambdaContext:
    function_name: str = "edp-store"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:edp-store"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A bus with a rule sending package-objects-ready events to a queue the test reads."""
    monkeypatch.setenv("EDP_DATABASE_URL", f"sqlite:///{tmp_path}/edp.sqlite")
    monkeypatch.setenv("EDP_EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("EDP_BUCKET_THRESHOLD_EVENT_COUNT", "2")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "EDP")
    with mock_aws():
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        events.create_event_bus(Name=BUS)
        queue_url = sqs.create_queue(QueueName="ready")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="ready",
            EventBusName=BUS,
            EventPattern=json.dumps(
                {"source": ["com.quiltdata.edp"], "detail-type": ["package-objects-ready"]}
            ),
        )
        events.put_targets(Rule="ready", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
        clock = FixedClock(T0)
        handlers.reset()
        handlers.runtime(lambda: handlers.build_runtime(clock))
        yield {"sqs": sqs, "queue_url": queue_url, "clock": clock}
        handlers.reset()


def received(aws: dict[str, Any]) -> list[dict[str, Any]]:
    messages = (
        aws["sqs"]
        .receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)
        .get("Messages", [])
    )
    return [json.loads(m["Body"]) for m in messages]


def test_store_in_db_reports_only_the_bad_message_and_stores_the_rest(aws: dict[str, Any]) -> None:
    event = load_event("lambda_sqs_batch")
    bad = copy.deepcopy(event["Records"][0])
    bad["messageId"] = "bad-one"
    bad["body"] = "{truncated"
    event["Records"].insert(1, bad)
    response = handlers.store_in_db(event, LambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad-one"}]}
    # Three good events: two in sequencer-1/exp-7/ (count 2 -> published now), one open.
    (ready,) = received(aws)
    assert (
        ready["source"] == "com.quiltdata.edp" and ready["detail-type"] == "package-objects-ready"
    )
    assert ready["resources"] == ["arn:aws:s3:::instrument-bucket"]
    detail = ready["detail"]
    assert (detail["version"], detail["bucket"], detail["prefix"]) == (
        "0.1",
        "instrument-bucket",
        "sequencer-1/exp-7/",
    )
    assert (detail["count"], detail["trigger"]) == (2, "count")
    open_batches = handlers.runtime().store.open_batches()
    assert [b.prefix for b in open_batches] == ["sequencer-1/exp 42/"]


def test_a_batch_of_only_bad_messages_is_reported_not_raised(aws: dict[str, Any]) -> None:
    event = load_event("lambda_sqs_batch")
    for record in event["Records"]:
        record["body"] = json.dumps({"unexpected": True})
    response = handlers.store_in_db(event, LambdaContext())
    assert len(response["batchItemFailures"]) == 2
    assert handlers.runtime().store.counters() == {}


def test_direct_eventbridge_invocation_then_emit_event_on_schedule(aws: dict[str, Any]) -> None:
    result = handlers.store_in_db(load_event("eventbridge_object_created"), LambdaContext())
    assert result == {"stored": 1}
    assert handlers.emit_event({}, LambdaContext())["closed"] == 0
    aws["clock"].now = at(300)
    summary = handlers.emit_event({"source": "aws.events"}, LambdaContext())
    assert summary["closed"] == 1 and summary["published"] == 1 and summary["open"] == 0
    (ready,) = received(aws)
    assert (
        ready["detail"]["prefix"] == "sequencer-1/exp 42/"
        and ready["detail"]["trigger"] == "duration"
    )
    # Nothing is sent twice.
    assert handlers.emit_event({}, LambdaContext())["published"] == 0
    assert received(aws) == []


def test_a_direct_bad_event_raises_a_clear_error(aws: dict[str, Any]) -> None:
    from edp.errors import BadEventError

    with pytest.raises(BadEventError, match="unknown event shape"):
        handlers.store_in_db({"hello": "world"}, LambdaContext())


def test_importing_the_handlers_does_not_load_quilt3_or_psycopg() -> None:
    code = "import sys, edp.handlers; print(sorted(m for m in sys.modules if m.split('.')[0] in ('quilt3', 'psycopg', 'moto')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def emf_metrics(text: str) -> dict[str, dict[str, Any]]:
    """Metric name -> {value, dimensions} from the EMF lines Powertools printed."""
    found: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dimensions = {d: blob[d] for group in directive["Dimensions"] for d in group}
            for metric in directive["Metrics"]:
                found[
                    metric["Name"]
                    + "".join(f"|{v}" for k, v in sorted(dimensions.items()) if k != "service")
                ] = {
                    "value": sum(v) if isinstance(v := blob[metric["Name"]], list) else v,
                    "dimensions": dimensions,
                }
    return found


def test_handlers_report_the_dashboard_metrics(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import eb_event

    event = load_event("lambda_sqs_batch")
    event["Records"][0]["body"] = json.dumps(eb_event("shallow.csv", 0, bucket="instrument-bucket"))
    capsys.readouterr()
    handlers.store_in_db(event, LambdaContext())
    stored = emf_metrics(capsys.readouterr().out)
    assert stored["EventsAccepted"]["value"] == 2.0
    assert stored["EventsDropped|too-shallow"]["value"] == 1.0
    assert stored["EventsDropped|too-shallow"]["dimensions"] == {
        "service": "edp",
        "Reason": "too-shallow",
    }
    assert stored["BatchesEmitted|count"]["value"] == 1.0
    assert "IngestLagSeconds" in stored
    handlers.emit_event({}, LambdaContext())
    swept = emf_metrics(capsys.readouterr().out)
    assert swept["OpenBatches"]["value"] == 0.0
    assert swept["OldestOpenBatchAgeSeconds"]["value"] == 0.0
