"""Publishing: PutEvents in chunks of 10, failed entries retried, nothing dropped, SNS copy."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from edp.clock import FixedClock
from edp.core import Emission, Rules
from edp.publisher import Publisher, publish_pending
from edp.store.memory import MemoryStore
from tests.helpers import at


def emissions(n: int) -> list[Emission]:
    return [
        Emission(f"id-{i:03d}", "bkt", f"p/{i:03d}/", 1, "count", at(i), at(0), at(i))
        for i in range(n)
    ]


def entries_ok(n: int, start: int = 0) -> dict[str, Any]:
    return {"FailedEntryCount": 0, "Entries": [{"EventId": f"e{start + i}"} for i in range(n)]}


def test_chunks_of_ten_and_failed_entries_retried_until_accepted() -> None:
    client = boto3.client("events", region_name="us-east-1")
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_response("put_events", entries_ok(10), {"Entries": ANY})
        # Second chunk: 2 of 3 entries fail (throttled), then succeed on retry.
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 2,
                "Entries": [
                    {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"},
                    {"EventId": "ok"},
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"},
                ],
            },
            {"Entries": ANY},
        )
        stub.add_response("put_events", entries_ok(2), {"Entries": ANY})
        report = Publisher(lambda: client, "bus", sleep=sleeps.append).publish(emissions(13))
        stub.assert_no_pending_responses()
    assert sorted(report.published) == [f"id-{i:03d}" for i in range(13)]
    assert report.failed == [] and sleeps == [0.2]


def test_entries_still_failing_after_every_attempt_stay_in_the_outbox() -> None:
    client = boto3.client("events", region_name="us-east-1")
    store = MemoryStore()
    closed = emissions(2)
    store._record_closed(closed, Rules())
    clock = FixedClock(at(100))
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error(
                "put_events", service_error_code="ThrottlingException", http_status_code=400
            )
        report = publish_pending(
            store, Publisher(lambda: client, "bus", sleep=lambda s: None, max_attempts=3), clock
        )
        stub.assert_no_pending_responses()
    assert report.published == [] and sorted(report.failed) == ["id-000", "id-001"]
    assert store.pending_count() == 2
    # Released, not leased: the next sweep retries at once, and succeeds.
    with Stubber(client) as stub:
        stub.add_response("put_events", entries_ok(2), {"Entries": ANY})
        report = publish_pending(store, Publisher(lambda: client, "bus"), clock)
        stub.assert_no_pending_responses()
    assert sorted(report.published) == ["id-000", "id-001"] and store.pending_count() == 0
    assert [e.batch_id for e in store.published()] == ["id-000", "id-001"]


def test_a_claimed_batch_is_not_sent_by_another_emitter_until_its_lease_ends() -> None:
    store = MemoryStore()
    store._record_closed(emissions(1), Rules())
    assert len(store.claim_pending(at(0), timedelta(minutes=2))) == 1
    assert store.claim_pending(at(60), timedelta(minutes=2)) == []
    assert len(store.claim_pending(at(121), timedelta(minutes=2))) == 1


@mock_aws
def test_sns_gets_the_whole_event_when_a_topic_is_set() -> None:
    sns, sqs, events = boto3.client("sns"), boto3.client("sqs"), boto3.client("events")
    topic = sns.create_topic(Name="edp")["TopicArn"]
    queue = sqs.create_queue(QueueName="sub")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    report = Publisher(lambda: events, "default", sns_client=lambda: sns, topic_arn=topic).publish(
        emissions(1)
    )
    assert report.published == ["id-000"] and report.sns_failures == 0
    (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    body = json.loads(message["Body"])
    assert body["detail"] == {
        "version": "0.1",
        "bucket": "bkt",
        "prefix": "p/000/",
        "count": 1,
        "trigger": "count",
        "batch_id": "id-000",
        "first_event_time": "2022-12-08T20:00:00.000Z",
        "last_event_time": "2022-12-08T20:00:00.000Z",
    }


@pytest.mark.parametrize("n", [0, 1, 10, 11, 25])
def test_number_of_put_events_calls_is_ceil_n_over_10(n: int) -> None:
    client = boto3.client("events", region_name="us-east-1")
    with Stubber(client) as stub:
        for start in range(0, n, 10):
            stub.add_response("put_events", entries_ok(min(10, n - start)), {"Entries": ANY})
        report = Publisher(lambda: client, "bus").publish(emissions(n))
        stub.assert_no_pending_responses()
    assert len(report.published) == n


@mock_aws
def test_the_sns_copy_is_the_event_the_bus_delivered() -> None:
    sns, sqs, events = boto3.client("sns"), boto3.client("sqs"), boto3.client("events")
    topic = sns.create_topic(Name="edp")["TopicArn"]

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    copies_url, copies_arn = queue("copies")
    bus_url, bus_arn = queue("bus")
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=copies_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    events.put_rule(Name="ready", EventPattern=json.dumps({"source": ["com.quiltdata.edp"]}))
    events.put_targets(Rule="ready", Targets=[{"Id": "q", "Arn": bus_arn}])
    publisher = Publisher(
        lambda: events,
        "default",
        sns_client=lambda: sns,
        sts_client=lambda: boto3.client("sts"),
        topic_arn=topic,
    )
    report = publisher.publish(emissions(3))
    assert len(report.published) == 3 and report.sns_failures == 0

    def read(url: str) -> dict[str, dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        return {(b := json.loads(m["Body"]))["id"]: b for m in messages}

    delivered, copies = read(bus_url), read(copies_url)
    assert set(copies) == set(delivered) and len(copies) == 3
    account = boto3.client("sts").get_caller_identity()["Account"]
    for event_id, copy in copies.items():
        # Every field the bus delivered, identical (moto's bus leaves out "account")...
        assert {k: copy[k] for k in delivered[event_id]} == delivered[event_id]
        # ...and the deployment's account and region, not placeholders.
        assert (copy["account"], copy["region"]) == (account, "us-east-1")
        assert copy["id"] != copy["detail"]["batch_id"]  # the bus's id, not ours
