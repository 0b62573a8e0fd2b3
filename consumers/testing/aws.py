"""Fake AWS for consumer tests: credentials, a local moto server, buckets, and an SNS reader.

Imported by the fixtures only when a test asks for AWS, so the pytest plugin
stays cheap to import. Clients are made at call time, after moto is running.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

DEFAULT_REGION = "us-east-1"

FAKE_AWS_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": DEFAULT_REGION,
    "AWS_REGION": DEFAULT_REGION,
    # A developer's ~/.aws must not leak into tests (profiles, SSO, real endpoints).
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# Settings that would send a test's clients somewhere else than moto.
AWS_ENV_TO_CLEAR: tuple[str, ...] = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)

# Quilt keeps a registry's workflow configuration under this key prefix of its bucket.
WORKFLOWS_KEY_PREFIX = ".quilt/workflows/"


class MotoServer:
    """moto's threaded HTTP server on 127.0.0.1, for code that cannot be patched in-process.

    quilt3 (and anything else using its own boto3 sessions or subprocesses)
    reaches it through ``AWS_ENDPOINT_URL``. Start it once per test session and
    :meth:`reset` it between tests: resetting is much faster than restarting.
    """

    def __init__(self) -> None:
        self._server: ThreadedMotoServer | None = None
        self.url = ""

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO: thousands of lines in a failing test's report.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.url = f"http://{host}:{port}"
        return self.url

    def reset(self) -> None:
        """Forget every bucket, queue and topic (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@contextmanager
def running_moto_server() -> Iterator[MotoServer]:
    """A started :class:`MotoServer`, stopped on exit."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def aws_client(service: str, region: str | None = None) -> Any:
    """A boto3 client made now, so it talks to whatever moto backend is active."""
    import boto3

    make_client: Any = boto3.client  # typed per service name; ours is a runtime string
    return make_client(service, region_name=region or os.environ.get("AWS_DEFAULT_REGION"))


def create_bucket(name: str, *, region: str = DEFAULT_REGION, versioned: bool = False) -> str:
    """Create bucket ``name`` (idempotent) and return its name."""
    s3 = aws_client("s3", region)
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":  # us-east-1 rejects an explicit location constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def put_objects(bucket: str, objects: Mapping[str, bytes | str]) -> list[str]:
    """Upload ``{key: body}`` to ``bucket``; returns the keys in upload order."""
    s3 = aws_client("s3")
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)
    return list(objects)


def list_keys(bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``bucket``, sorted."""
    s3 = aws_client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def read_json_object(bucket: str, key: str) -> Any:
    """The JSON document stored at ``s3://bucket/key``."""
    body = aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


@dataclass(frozen=True)
class SnsMessage:
    """One notification as a subscriber sees it, decoded from its SQS delivery."""

    topic_arn: str
    message: str
    subject: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The message body parsed as JSON (for topics that carry JSON)."""
        return json.loads(self.message)


@dataclass(frozen=True)
class SnsReader:
    """An SNS topic subscribed to an SQS queue, so tests can read what was published.

    Create it with :meth:`create`; publish to :attr:`topic_arn`; call
    :meth:`messages` to drain what arrived so far.
    """

    topic_arn: str
    queue_url: str
    region: str = DEFAULT_REGION

    @classmethod
    def create(
        cls, name: str = "edp-consumer-notifications", *, region: str = DEFAULT_REGION
    ) -> SnsReader:
        sns = aws_client("sns", region)
        sqs = aws_client("sqs", region)
        topic_arn = sns.create_topic(Name=name)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=f"{name}-reader")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        return cls(topic_arn=topic_arn, queue_url=queue_url, region=region)

    def messages(self) -> list[SnsMessage]:
        """Every notification delivered since the last call, removed from the queue."""
        sqs = aws_client("sqs", self.region)
        received: list[SnsMessage] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return received
            for raw in batch:
                received.append(_decode_notification(raw["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=raw["ReceiptHandle"])


def _decode_notification(body: str) -> SnsMessage:
    notification = json.loads(body)
    attributes = {
        name: value.get("Value", "")
        for name, value in (notification.get("MessageAttributes") or {}).items()
    }
    return SnsMessage(
        topic_arn=notification["TopicArn"],
        message=notification["Message"],
        subject=notification.get("Subject"),
        attributes=attributes,
    )
