"""The AWS side of the `edp run` tests: input queue (with dead-letter queue), custom bus, output queue.

Works against moto in-process (``endpoint_url=None`` inside ``mock_aws``) or a moto server. What the
service published is read the way a consumer would see it: a rule on the custom bus sends
`package-objects-ready` events to an SQS queue that the test reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"
# boto3-stubs types boto3.client per literal service name; Pipeline.client takes any name.
new_client: Callable[..., Any] = boto3.client
BUS = "edp-test-bus"
EDP_PATTERN = {"source": ["com.quiltdata.edp"], "detail-type": ["package-objects-ready"]}


@dataclass
class Pipeline:
    endpoint_url: str | None
    input_url: str
    input_arn: str
    dlq_url: str
    output_url: str
    bus: str = BUS
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = new_client(
                name, region_name=REGION, endpoint_url=self.endpoint_url
            )
        return self._clients[name]

    def run_args(self, db: str, *settings: str) -> list[str]:
        """`edp run` arguments wiring it to this pipeline (1 s polls), then ``settings``."""
        return [
            "--queue-url",
            self.input_url,
            "--endpoint-url",
            str(self.endpoint_url),
            "--region",
            REGION,
            "--poll-wait",
            "1",
            "--event-bus",
            self.bus,
            "--db",
            db,
            *settings,
        ]

    def send(self, *bodies: Any) -> None:
        """Put messages on the input queue (dicts are sent as their JSON)."""
        for body in bodies:
            text = body if isinstance(body, str) else json.dumps(body)
            self.client("sqs").send_message(QueueUrl=self.input_url, MessageBody=text)

    def drain(self, url: str, *, wait: int = 0) -> list[dict[str, Any]]:
        """Receive (and delete) every message now on a queue, with SentTimestamp."""
        sqs = self.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            found.extend(batch)
            wait = 0

    def published(self, expect: int = 0, timeout: float = 0.0) -> list[dict[str, Any]]:
        """package-objects-ready events from the output queue, each with ``_sent`` (epoch s).

        Waits up to ``timeout`` seconds until at least ``expect`` arrived.
        """
        deadline = time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while True:
            for message in self.drain(self.output_url):
                event = json.loads(message["Body"])
                event["_sent"] = int(message["Attributes"]["SentTimestamp"]) / 1000
                events.append(event)
            if len(events) >= expect and (expect or not timeout):
                return events
            if time.monotonic() >= deadline:
                return events
            time.sleep(0.05)

    def queue_depth(self, url: str) -> int:
        """Messages on a queue, visible or in flight."""
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def build_pipeline(
    endpoint_url: str | None = None,
    *,
    name: str = "edp-in",
    visibility_timeout: int = 30,
    max_receive_count: int = 1,
) -> Pipeline:
    """Input queue with a dead-letter queue, the custom bus and a rule sending EDP events to a queue."""
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
    events = boto3.client("events", region_name=REGION, endpoint_url=endpoint_url)
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = _arn(sqs, dlq_url)
    input_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    output_url = sqs.create_queue(QueueName=f"{name}-published")["QueueUrl"]
    events.create_event_bus(Name=BUS)
    connect_bus(events, _arn(sqs, output_url))
    return Pipeline(endpoint_url, input_url, _arn(sqs, input_url), dlq_url, output_url)


def connect_bus(events: Any, queue_arn: str, bus: str = BUS) -> None:
    """The consumer's side: a rule on the bus matching Quilt's source and detail type."""
    events.put_rule(Name="edp-published", EventBusName=bus, EventPattern=json.dumps(EDP_PATTERN))
    events.put_targets(
        Rule="edp-published", EventBusName=bus, Targets=[{"Id": "out", "Arn": queue_arn}]
    )


def _arn(sqs: Any, url: str) -> str:
    return str(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    )
