"""SNS alerts: what they say, SNS size limits, and what reaches a subscriber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from consumers.alerts import (
    SNS_MESSAGE_MAX_BYTES,
    SNS_SUBJECT_MAX_CHARS,
    TRUNCATION_MARK,
    catalog_url,
    clean_subject,
    make_alert,
    publish_alert,
    quarantine_alert,
    truncate_message,
)
from consumers.errors import AlertError


@pytest.fixture
def topic_and_queue() -> Iterator[tuple[Any, str, Any, str]]:
    """An SNS topic with an SQS subscription, to read back what was published."""
    with mock_aws():
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="edp-alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="alerts-reader")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield sns, topic, sqs, queue_url


def test_quarantine_alert_names_workflow_package_bucket_url_and_error() -> None:
    alert = quarantine_alert(
        workflow="instrument",
        package_name="genome-lab/exp-0042",
        bucket="instrument-bucket",
        prefix="genome-lab/exp-0042/",
        registry="instrument-bucket",
        quarantine_bucket="quarantine-bucket",
        quilt_url="https://quilt.example.com",
        error="Metadata failed validation: 'StudyID' is a required property.",
    )
    assert alert.subject == "EDP: package genome-lab/exp-0042 quarantined"
    for text in [
        "instrument",
        "genome-lab/exp-0042",
        "instrument-bucket",
        "https://quilt.example.com/b/quarantine-bucket/packages/genome-lab/exp-0042",
        "'StudyID' is a required property",
    ]:
        assert text in alert.message


def test_catalog_url_quotes_odd_characters() -> None:
    assert (
        catalog_url("https://q.example.com/", "bkt", "a/b c")
        == "https://q.example.com/b/bkt/packages/a/b%20c"
    )


def test_subject_is_one_ascii_line_of_at_most_100_characters() -> None:
    subject = clean_subject("Échec:\npackage " + "x" * 200)
    assert len(subject) == SNS_SUBJECT_MAX_CHARS
    assert subject.isascii() and "\n" not in subject and subject.endswith("...")
    assert clean_subject("\n\t") == "EDP alert"


def test_oversize_message_is_truncated_on_a_character_boundary() -> None:
    message = "é" * SNS_MESSAGE_MAX_BYTES  # 2 bytes each: twice the limit
    truncated = truncate_message(message)
    assert len(truncated.encode("utf-8")) <= SNS_MESSAGE_MAX_BYTES
    assert truncated.endswith(TRUNCATION_MARK)
    assert truncate_message("short") == "short"


def test_oversize_alert_is_published_not_rejected(
    topic_and_queue: tuple[Any, str, Any, str],
) -> None:
    sns, topic, sqs, queue_url = topic_and_queue
    alert = make_alert("big\nerror", "error line\n" * 40_000)  # ~440 KB
    publish_alert(sns, topic, alert)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    notification = json.loads(messages[0]["Body"])
    assert notification["Subject"] == "big error"
    assert notification["Message"].endswith(TRUNCATION_MARK)
    assert notification["Message"].startswith("error line\n")


def test_publish_failure_is_an_alert_error_with_its_cause(
    topic_and_queue: tuple[Any, str, Any, str],
) -> None:
    sns, topic, _, _ = topic_and_queue
    missing = topic.replace("edp-alerts", "no-such-topic")
    with pytest.raises(AlertError, match="no-such-topic") as caught:
        publish_alert(sns, missing, make_alert("s", "m"))
    assert caught.value.__cause__ is not None
