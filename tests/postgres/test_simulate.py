"""`edp simulate --db postgresql://...` prints byte for byte what the SQLite run and simulate's
own store (memory) print.

The scenario streams are generated here in the real AWS shapes (EventBridge S3 events, S3
notifications, inside SQS and SNS envelopes), with re-deliveries, deletes, out-of-order
sequencers, late events and bad lines; each is played through the CLI on both backends.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from edp.cli import main

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def eventbridge(
    bucket: str, key: str, kind: str, moment: datetime, seq: int, event_id: str
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Object Created" if kind == "created" else "Object Deleted",
        "source": "aws.s3",
        "account": "123456789012",
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key), "size": 10, "sequencer": f"{seq:016X}"},
            "request-id": event_id,
            "reason": "PutObject" if kind == "created" else "DeleteObject",
        },
    }


def s3_record(bucket: str, key: str, kind: str, moment: datetime, seq: int) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": stamp(moment),
        "eventName": "ObjectCreated:Put" if kind == "created" else "ObjectRemoved:Delete",
        "responseElements": {"x-amz-request-id": f"REQ{seq}"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key), "size": 10, "sequencer": f"{seq:016X}"},
        },
    }


def sqs_envelope(body: dict[str, Any], n: int) -> dict[str, Any]:
    return {"MessageId": f"m-{n}", "ReceiptHandle": f"r-{n}", "Body": json.dumps(body)}


def sns_envelope(message: dict[str, Any], n: int) -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": f"sns-{n}", "Message": json.dumps(message)}


def mixed_stream(seed: int, size: int) -> list[str]:
    """Busy and quiet prefixes, re-deliveries, deletes, stale sequencers, envelopes, bad lines."""
    rng = random.Random(seed)
    lines: list[str] = []
    sent: list[str] = []
    moment = T0
    for n in range(size):
        moment += timedelta(seconds=rng.choice([0, 1, 2, 10, 45, 200, 400]))
        if sent and rng.random() < 0.07:
            lines.append(rng.choice(sent))  # a re-delivery, byte for byte
            continue
        if rng.random() < 0.01:
            lines.append('{"not": "an event"}')
            continue
        bucket = rng.choice(["raw-data", "lab.results"])
        key = f"inst {rng.randrange(4)}/exp-{rng.randrange(12)}/f{rng.randrange(30)}+é.csv"
        kind = "deleted" if rng.random() < 0.15 else "created"
        seq = n + 1 if rng.random() > 0.03 else 1  # now and then an old sequencer: stale
        shape = rng.random()
        if shape < 0.5:
            message: dict[str, Any] = eventbridge(bucket, key, kind, moment, seq, f"ev-{n}")
        elif shape < 0.8:
            message = sqs_envelope({"Records": [s3_record(bucket, key, kind, moment, seq)]}, n)
        else:
            message = sns_envelope({"Records": [s3_record(bucket, key, kind, moment, seq)]}, n)
        line = json.dumps(message, ensure_ascii=False)
        sent.append(line)
        lines.append(line)
    return lines


Scenario = tuple[Callable[[], list[str]], list[str]]
SCENARIOS: dict[str, Scenario] = {
    "defaults": (lambda: mixed_stream(1, 3000), []),
    "small-batches-deep-prefixes": (
        lambda: mixed_stream(2, 3000),
        ["--threshold-count", "4", "--threshold-duration", "30", "--prefix-depth", "1"],
    ),
    "markers-max-age-scope": (
        lambda: [
            *mixed_stream(3, 2000),
            json.dumps(
                eventbridge(
                    "raw-data",
                    "inst 1/exp-1/_SUCCESS",
                    "created",
                    T0 + timedelta(days=3),
                    10**6,
                    "marker",
                )
            ),
        ],
        [
            "--marker-files",
            "_SUCCESS,*.json",
            "--max-age",
            "600",
            "--bucket",
            "raw-data",
            "--ignore",
            "inst 3/*",
            "--dedupe-window",
            "900",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulate_prints_the_same_on_its_own_store_sqlite_and_postgresql(
    name: str, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, flags = SCENARIOS[name]
    stream = tmp_path / f"{name}.jsonl"
    stream.write_text("\n".join(make()) + "\n", encoding="utf-8")

    outputs = {}
    stores = {
        "own": [],  # simulate's own store (memory://)
        "sqlite": ["--db", f"sqlite:///{tmp_path}/sim.sqlite"],
        "postgres": ["--db", pg_url],
    }
    for label, db in stores.items():
        status = main(["simulate", str(stream), *db, *flags])
        captured = capsys.readouterr()
        outputs[label] = (status, captured.out.encode("utf-8"), captured.err.encode("utf-8"))
    assert outputs["postgres"] == outputs["sqlite"] == outputs["own"]
    status, out, err = outputs["sqlite"]
    assert status == 1 and b"unknown event shape" in err  # the bad lines were reported
    assert out.count(b"\n") > 50, "the scenario emitted too little to compare"
