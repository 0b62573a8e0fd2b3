"""The AWS side of a consumers test (``World``); fixture events load with tests.helpers.load_event."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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

    def put(self, prefix: str, files: Mapping[str, bytes | str]) -> None:
        for name, body in files.items():
            data = body.encode() if isinstance(body, str) else body
            self.s3.put_object(Bucket=self.bucket, Key=prefix + name, Body=data)

    def alerts(self) -> list[dict[str, Any]]:
        """SNS notifications received so far by the topic's SQS subscription."""
        found: list[dict[str, Any]] = []
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
