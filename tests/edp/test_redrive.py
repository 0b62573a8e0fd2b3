"""`edp redrive`: dead-lettered messages go back to their queue; nothing is lost if interrupted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from edp.cli import main
from edp.redrive import redrive

REGION = "us-east-1"


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def queue_pair(sqs: Any, name: str) -> tuple[str, str]:
    """A queue whose redrive policy names its dead-letter queue: (queue URL, DLQ URL)."""
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = {"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": "3"}
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)})[
        "QueueUrl"
    ]
    return url, dlq


def bodies(sqs: Any, url: str) -> list[str]:
    found: list[str] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return sorted(found)
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            found.append(message["Body"])


def fill(sqs: Any, url: str, count: int) -> list[str]:
    sent = [json.dumps({"n": n}) for n in range(count)]
    for body in sent:
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"origin": {"DataType": "String", "StringValue": "s3"}},
        )
    return sorted(sent)


def test_redrive_moves_every_message_back_with_its_attributes(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, dlq = queue_pair(sqs, "edp-in")
    sent = fill(sqs, dlq, 23)
    assert main(["redrive", "--from", dlq, "--to", queue]) == 0
    assert f"moved 23 message(s) from {dlq} to {queue}" in capsys.readouterr().out
    message = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])["Messages"][0]
    assert message["MessageAttributes"]["origin"]["StringValue"] == "s3"
    sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    assert bodies(sqs, queue) == sent and bodies(sqs, dlq) == []


def test_dry_run_counts_and_moves_nothing(sqs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    queue, dlq = queue_pair(sqs, "edp-in")
    sent = fill(sqs, dlq, 4)
    assert main(["redrive", "--from", dlq, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"dry run: would move 4 message(s) from {dlq} to {queue}" in out
    assert bodies(sqs, dlq) == sent and bodies(sqs, queue) == []


def test_the_other_queue_is_found_from_the_redrive_policy(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, dlq = queue_pair(sqs, "consumer-ready")  # a consumer's queue works the same
    sent = fill(sqs, dlq, 3)
    assert main(["redrive", "--to", queue]) == 0  # the DLQ comes from the queue's policy
    assert bodies(sqs, queue) == sent
    fill(sqs, dlq, 2)
    assert main(["redrive", "--from", dlq, "--max", "1"]) == 0  # the queue from the DLQ
    assert "moved 1 message(s)" in capsys.readouterr().out
    assert len(bodies(sqs, dlq)) == 1


def test_a_dead_letter_queue_with_no_known_source_needs_to(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    lonely = sqs.create_queue(QueueName="lonely")["QueueUrl"]
    assert main(["redrive", "--from", lonely]) == 1
    err = capsys.readouterr().err
    assert "cannot tell where to send" in err and "--to QUEUE_URL" in err


def test_interrupted_between_send_and_delete_loses_nothing(sqs: Any) -> None:
    """A crash after the send and before the delete: the message is in both queues, not lost."""
    queue, dlq = queue_pair(sqs, "edp-in")
    sent = fill(sqs, dlq, 5)

    class CrashBeforeDelete:
        def __init__(self, real: Any) -> None:
            self.real = real

        def delete_message_batch(self, **kwargs: Any) -> Any:
            raise KeyboardInterrupt  # the process dies here

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    with pytest.raises(KeyboardInterrupt):
        redrive(CrashBeforeDelete(sqs), source=dlq, target=queue)
    # The received messages become visible again in the DLQ after their visibility timeout.
    for message in sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", []):
        sqs.change_message_visibility(
            QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    in_target = bodies(sqs, queue)
    assert in_target  # sent before the crash
    assert sorted(set(in_target) | set(bodies(sqs, dlq))) == sent


def test_a_send_failure_leaves_the_message_in_the_dead_letter_queue(sqs: Any) -> None:
    queue, dlq = queue_pair(sqs, "edp-in")
    sent = fill(sqs, dlq, 2)

    class Refusing:
        def __init__(self, real: Any) -> None:
            self.real = real

        def send_message_batch(self, **kwargs: Any) -> Any:
            entries = kwargs["Entries"]
            return {
                "Failed": [
                    {
                        "Id": e["Id"],
                        "Code": "KMS.AccessDenied",
                        "Message": "no",
                        "SenderFault": True,
                    }
                    for e in entries
                ]
            }

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    report = redrive(Refusing(sqs), source=dlq, target=queue)
    assert report.moved == 0 and len(report.send_failures) == 2
    assert bodies(sqs, dlq) == sent and bodies(sqs, queue) == []
