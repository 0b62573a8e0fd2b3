"""`edp redrive`: send dead-lettered messages back to the queue they came from, once the cause is fixed.

Works on any SQS queue pair: the emitter's input queue and its dead-letter queue, or a consumer's.
Each message is **sent to the target first and deleted from the dead-letter queue only after the
send succeeded**, so an interruption at any point loses nothing: at worst a message is in both
queues (delivery is at least once; the emitter recognises the repeat as a duplicate and the
consumer finds the package unchanged). A message whose send fails stays in the dead-letter queue,
visible again at once (after ``VISIBILITY_TIMEOUT`` if the process died).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edp.errors import RedriveError

BATCH = 10  # ReceiveMessage / SendMessageBatch / DeleteMessageBatch API limit
VISIBILITY_TIMEOUT = 60  # seconds a received message is hidden while it is being moved
# Seconds of long poll. A long poll asks every SQS server, so one empty answer means the queue
# has nothing visible left (a short poll can answer empty while messages remain).
RECEIVE_WAIT = 1

logger = logging.getLogger(__name__)


@dataclass
class RedriveReport:
    source: str
    target: str
    moved: int = 0
    send_failures: list[str] = field(default_factory=list)  # message ids left in the source
    dry_run: bool = False
    waiting: int = 0  # dry run: messages visible in the source (ApproximateNumberOfMessages)
    in_flight: int = 0  # dry run: messages received by someone and not yet visible

    def summary(self) -> str:
        if self.dry_run:
            return (
                f"dry run: would move {self.waiting} message(s) from {self.source} to "
                f"{self.target} ({self.in_flight} more in flight, not visible now); nothing moved"
            )
        failed = (
            f"; {len(self.send_failures)} could not be sent and stay in the dead-letter queue"
            if self.send_failures
            else ""
        )
        return f"moved {self.moved} message(s) from {self.source} to {self.target}{failed}"


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = _attributes(sqs, url, ["QueueArn"])
    return str(attributes["QueueArn"])


def _attributes(sqs: Any, url: str, names: list[str]) -> dict[str, str]:
    try:
        return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"])
    except Exception as err:
        raise RedriveError(
            f"cannot read queue {url}: {err} (check the URL, --region, --endpoint-url and the "
            "credentials)"
        ) from err


def _url_of_arn(sqs: Any, arn: str) -> str:
    # arn:aws:sqs:REGION:ACCOUNT:NAME
    parts = arn.split(":")
    if len(parts) != 6:
        raise RedriveError(f"not an SQS queue ARN: {arn}")
    try:
        return str(
            sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        )
    except Exception as err:
        raise RedriveError(f"cannot find the queue {arn}: {err}") from err


def resolve_queues(sqs: Any, source: str | None, target: str | None) -> tuple[str, str]:
    """(dead-letter queue URL, target URL) from what the user gave.

    ``--from DLQ --to QUEUE``: as given. ``--from DLQ`` alone: the one queue whose redrive policy
    names this DLQ. ``--to QUEUE`` alone: the DLQ named by that queue's redrive policy.
    """
    if source and target:
        return source, target
    if source:
        try:
            sources = sqs.list_dead_letter_source_queues(QueueUrl=source).get("queueUrls", [])
        except Exception as err:
            raise RedriveError(f"cannot list the queues that use {source}: {err}") from err
        if len(sources) != 1:
            found = ", ".join(sources) if sources else "none"
            raise RedriveError(
                f"cannot tell where to send {source}'s messages: queues using it as their "
                f"dead-letter queue: {found}; name the target with --to QUEUE_URL"
            )
        return source, str(sources[0])
    if target:
        policy = _attributes(sqs, target, ["RedrivePolicy"]).get("RedrivePolicy")
        if not policy:
            raise RedriveError(
                f"{target} has no redrive policy, so it has no dead-letter queue; name one with "
                "--from DLQ_URL"
            )
        return _url_of_arn(sqs, json.loads(policy)["deadLetterTargetArn"]), target
    raise RedriveError("give --from DLQ_URL, --to QUEUE_URL, or both")


def _send_entry(index: int, message: dict[str, Any], fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
    attributes = {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in message.get("MessageAttributes", {}).items()
    }
    if attributes:
        entry["MessageAttributes"] = attributes
    if fifo:
        system = message.get("Attributes", {})
        entry["MessageGroupId"] = system.get("MessageGroupId", "redrive")
        entry["MessageDeduplicationId"] = (
            system.get("MessageDeduplicationId") or message["MessageId"]
        )
    return entry


def redrive(
    sqs: Any,
    *,
    source: str,
    target: str,
    dry_run: bool = False,
    limit: int | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RedriveReport:
    """Move up to ``limit`` messages (default: until the source is empty) from source to target."""
    report = RedriveReport(source=source, target=target, dry_run=dry_run)
    if _queue_arn(sqs, source) == _queue_arn(sqs, target):
        raise RedriveError("--from and --to name the same queue")
    if dry_run:
        counts = _attributes(
            sqs, source, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )
        report.waiting = int(counts.get("ApproximateNumberOfMessages", 0))
        report.in_flight = int(counts.get("ApproximateNumberOfMessagesNotVisible", 0))
        return report
    fifo = target.endswith(".fifo")
    while not (stop and stop.is_set()):
        want = BATCH if limit is None else min(BATCH, limit - report.moved)
        if want <= 0:
            break
        messages = sqs.receive_message(
            QueueUrl=source,
            MaxNumberOfMessages=want,
            WaitTimeSeconds=RECEIVE_WAIT,
            VisibilityTimeout=VISIBILITY_TIMEOUT,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        # 1. send (a failure here leaves the message in the DLQ: visible again after the timeout)
        response = sqs.send_message_batch(
            QueueUrl=target,
            Entries=[_send_entry(i, m, fifo) for i, m in enumerate(messages)],
        )
        sent = {int(ok["Id"]) for ok in response.get("Successful", [])}
        unsent = [(i, m) for i, m in enumerate(messages) if i not in sent]
        if unsent:
            # Visible again at once in the dead-letter queue, rather than after the timeout.
            sqs.change_message_visibility_batch(
                QueueUrl=source,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in unsent
                ],
            )
        for failure in response.get("Failed", []):
            message = messages[int(failure["Id"])]
            report.send_failures.append(message["MessageId"])
            logger.warning(
                "could not send message %s (%s: %s); it stays in the dead-letter queue",
                message["MessageId"],
                failure.get("Code"),
                failure.get("Message"),
            )
        # 2. only then delete what was sent (a crash between 1 and 2 means a duplicate, not a loss)
        done = [messages[i] for i in sorted(sent)]
        if done:
            deleted = sqs.delete_message_batch(
                QueueUrl=source,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
            for failure in deleted.get("Failed", []):
                logger.warning(
                    "message sent but not deleted from the dead-letter queue (%s): it will be "
                    "redriven again, a duplicate the emitter and the consumer recognise",
                    failure.get("Message"),
                )
        report.moved += len(done)
        logger.info("moved %d message(s) so far", report.moved)
        if on_batch is not None:
            on_batch(report.moved)
        if len(sent) < len(messages):
            break  # the target refuses messages: stop rather than spin on them
    return report
