"""Loop safety: the emitter watching the bucket the consumer packages into must go quiet.

Packaging into the watched bucket writes README.md and .quiltignore into the prefix and files
under .quilt/. Each round here turns every new S3 object version into the EventBridge event S3
would send, feeds the real emitter (memory store, its rules and scope), closes due batches and
hands each package-objects-ready event to the consumer. The loop must end by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest

from consumers.events import parse_ready_events
from consumers.pipeline import package_prefix
from tests.consumers.consumer_helpers import World

MAX_ROUNDS = 6
T0 = datetime(2022, 12, 8, 20, 0, 0, tzinfo=UTC)
GOOD_META = {
    "Author": "EDP",
    "ComputerName": "Genome Lab - 1234",
    "Date": "2022-12-08",
    "ProjectID": "YYD",
    "StudyID": "ABC-23-023394",
}


def object_created_event(
    bucket: str, version: dict[str, Any], at: datetime, sequence: int
) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object version (keys URL-encoded, as AWS does)."""
    return {
        "version": "0",
        "id": f"00000000-0000-0000-0000-{sequence:012d}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": quote_plus(version["Key"], safe="/"),
                "size": version["Size"],
                "etag": version["ETag"].strip('"'),
                "version-id": version["VersionId"],
                "sequencer": f"{sequence:016X}",
            },
            "request-id": "C3D13FE58DE4C810",
            "requester": "123456789012",
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


def new_versions(world: World, seen: set[tuple[str, str]]) -> list[dict[str, Any]]:
    found = []
    for page in world.s3.get_paginator("list_object_versions").paginate(Bucket=world.bucket):
        for version in page.get("Versions", []):
            identity = (version["Key"], version["VersionId"])
            if identity not in seen:
                seen.add(identity)
                found.append(version)
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("depth", "prefix", "name"),
    [
        (2, "genome-lab/exp-0042/", "genome-lab/exp-0042"),
        (1, "genome-lab/", "edp/genome-lab"),
        (3, "genome-lab/2022/exp 42/", "genome-lab/2022--exp_42"),
    ],
)
def test_emitter_and_consumer_together_go_quiet(
    world: World, make_settings: Callable[..., Any], depth: int, prefix: str, name: str
) -> None:
    from edp.emitter import Emitter
    from edp.events import parse_message
    from edp.publisher import eventbridge_event
    from edp.settings import Settings
    from edp.store.memory import MemoryStore

    world.install_workflow()
    emitter = Emitter(
        Settings(
            buckets=(world.bucket,), prefix_depth=depth, threshold_duration=300, threshold_count=20
        ),
        MemoryStore(),
    )
    settings = make_settings(default_metadata=GOOD_META)
    world.put(
        prefix, {"reads/sample-1.fastq": "@r1\nACGT\n", "run.log": "ok\n", "plate.csv": "a,b\n"}
    )

    seen: set[tuple[str, str]] = set()
    statuses: list[str] = []
    sequence = 0
    now = T0
    for _ in range(MAX_ROUNDS):
        versions = new_versions(world, seen)
        if not versions:
            break
        parsed = []
        for version in versions:
            sequence += 1
            parsed.append(
                parse_message(
                    json.dumps(object_created_event(world.bucket, version, now, sequence))
                )
            )
        emissions = list(emitter.ingest(parsed, arrived=None).emissions)
        now += timedelta(seconds=301)
        emissions.extend(emitter.close_due(now))
        for emission in emissions:
            for ready in parse_ready_events(eventbridge_event(emission)):
                statuses.append(package_prefix(ready, settings).status)
        now += timedelta(seconds=600)
    else:
        pytest.fail(f"still packaging after {MAX_ROUNDS} rounds: {statuses}")

    # One push, then the emitter reports the consumer's own README.md/.quiltignore once,
    # and that event changes nothing (.quilt/ writes never reach the consumer).
    assert statuses == ["pushed", "unchanged"]
    assert len(world.revisions(name)) == 1
    keys = {
        v["Key"]
        for v in world.s3.list_object_versions(Bucket=world.bucket, Prefix=prefix)["Versions"]
    }
    assert {prefix + "README.md", prefix + ".quiltignore"} <= keys
