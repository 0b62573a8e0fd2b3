"""Fixtures of the consumers tests: a moto server quilt3 can talk to, buckets, a topic reader."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from consumers.testing.aws import running_moto_server
from tests.consumers.consumer_helpers import World

TOPIC_NAME = "edp-consumer-alerts"


@pytest.fixture(scope="session")
def consumer_moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server on 127.0.0.1 for the session; quilt3 reaches it through AWS_ENDPOINT_URL."""
    with running_moto_server() as server:
        yield server.url


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
