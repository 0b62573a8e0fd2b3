"""Fixtures of the consumers tests: a moto server quilt3 can talk to, buckets, a topic reader."""

from __future__ import annotations

import json
import logging
import pathlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

TOPIC_NAME = "edp-consumer-alerts"


@pytest.fixture(scope="session")
def consumer_moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server on 127.0.0.1 for the session; quilt3 reaches it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(consumer_moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> str:
    """An emptied moto server, with every new boto3/quilt3 client pointed at it."""
    requests.post(f"{consumer_moto_url}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", consumer_moto_url)
    monkeypatch.setenv("QUILT_DISABLE_USAGE_METRICS", "true")
    monkeypatch.setenv("QUILT_MINIMIZE_STDOUT", "true")
    _share_botocore_loader(monkeypatch)
    return consumer_moto_url


def _share_botocore_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """quilt3 builds a new boto3 session per S3 call, each parsing the service models again
    (~0.3 s). Tests give those sessions one shared, read-only model loader: same requests,
    a third of the time."""
    import boto3
    import botocore.loaders
    import botocore.session
    import quilt3.data_transfer

    loader = botocore.loaders.create_loader()

    def session_with_shared_loader() -> boto3.Session:
        core = botocore.session.Session()
        core.register_component("data_loader", loader)
        return boto3.Session(botocore_session=core)

    monkeypatch.setattr(quilt3.data_transfer, "get_boto3_session", session_with_shared_loader)


@dataclass
class World:
    """The AWS side of a consumer test: a watched bucket, a quarantine bucket, an alert topic."""

    s3: Any
    sns: Any
    sqs: Any
    bucket: str
    quarantine: str
    topic_arn: str
    queue_url: str

    def put(self, prefix: str, files: dict[str, bytes | str]) -> None:
        for name, body in files.items():
            data = body.encode() if isinstance(body, str) else body
            self.s3.put_object(Bucket=self.bucket, Key=prefix + name, Body=data)

    def alerts(self) -> list[dict[str, Any]]:
        """SNS notifications received so far by the topic's SQS subscription."""
        found = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def latest_top_hash(self, name: str, bucket: str | None = None) -> str | None:
        try:
            body = self.s3.get_object(
                Bucket=bucket or self.bucket, Key=f".quilt/named_packages/{name}/latest"
            )["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return str(body.decode())

    def revisions(self, name: str, bucket: str | None = None) -> set[str]:
        """Top hashes of every revision of ``name`` ever written.

        quilt3 names revision pointers by the second, so two pushes within a second share a
        pointer key: its object versions (the buckets are versioned) keep them all.
        """
        bucket = bucket or self.bucket
        response = self.s3.list_object_versions(
            Bucket=bucket, Prefix=f".quilt/named_packages/{name}/"
        )
        return {
            self.s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])[
                "Body"
            ]
            .read()
            .decode()
            for version in response.get("Versions", [])
            if not version["Key"].endswith("/latest")
        }

    def install_workflow(self, bucket: str | None = None) -> None:
        from consumers.install_workflows import install, plan_install

        source = pathlib.Path(__file__).resolve().parents[2] / "workflows"
        install(plan_install(source, bucket or self.bucket), self.s3)


@pytest.fixture
def world(aws: str) -> World:
    import boto3

    s3, sns, sqs = boto3.client("s3"), boto3.client("sns"), boto3.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    bucket, quarantine = f"instrument-{suffix}", f"quarantine-{suffix}"
    for name in (bucket, quarantine):
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    topic_arn = sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return World(s3, sns, sqs, bucket, quarantine, topic_arn, queue_url)


@pytest.fixture
def make_settings(world: World) -> Callable[..., Any]:
    from consumers.settings import ConsumerSettings

    def make(**overrides: Any) -> ConsumerSettings:
        values: dict[str, Any] = {
            "workflow": "instrument",
            "quarantine_bucket": world.quarantine,
            "sns_topic_arn": world.topic_arn,
            "quilt_url": "https://quilt.example.com",
        }
        values.update(overrides)
        return ConsumerSettings(**values)

    return make
