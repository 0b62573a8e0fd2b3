"""End to end on a moto server: S3 puts -> EventBridge -> SQS -> `edp run` -> custom bus -> SQS.

Nothing is emulated by the test: objects are put into a bucket whose EventBridge notifications are
on, moto's default bus routes the `aws.s3` events through a rule to the input queue, a real
`edp run` process consumes it, and a rule on the custom bus delivers what it publishes to the
queue the test reads. Where moto differs from AWS it is said below.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edp.clock import whole_seconds
from edp.store.sqlite import SqliteStore
from tests.service.service_aws import Pipeline, build_pipeline
from tests.service.service_processes import EdpRun

BUCKET = "instrument-data"
OTHER_BUCKET = "not-watched"
DURATION = 2  # seconds; short so the test is quick
COUNT = 4


def s3_events_to_queue(aws: Pipeline) -> None:
    """Both buckets send EventBridge notifications; a default-bus rule routes them to the queue."""
    s3 = aws.client("s3")
    for bucket in (BUCKET, OTHER_BUCKET):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    events = aws.client("events")
    events.put_rule(Name="s3-to-edp", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule="s3-to-edp", Targets=[{"Id": "edp", "Arn": aws.input_arn}])


def topic_to_queue(aws: Pipeline) -> tuple[str, str]:
    """An SNS topic for the service's copies, with a queue subscribed to it (raw delivery off)."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="edp-topic-copies")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic_arn = aws.client("sns").create_topic(Name="edp-ready")["TopicArn"]
    aws.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return topic_arn, url


def run_args(aws: Pipeline, db: str) -> list[str]:
    return aws.run_args(
        db,
        "--bucket",
        BUCKET,
        "--threshold-duration",
        str(DURATION),
        "--threshold-count",
        str(COUNT),
        # moto puts raw keys in EventBridge events; AWS URL-encodes them.
        "--eventbridge-keys-unencoded",
        "--verbose",
    )


@pytest.mark.slow
def test_objects_put_into_s3_arrive_as_package_objects_ready_events(
    moto_endpoint: str,
    tmp_path: Path,
    edp_runs: list[EdpRun],
    bus_arrivals: dict[str, list[float]],
) -> None:
    aws = build_pipeline(moto_endpoint, visibility_timeout=1, max_receive_count=2)
    s3_events_to_queue(aws)
    topic_arn, topic_queue = topic_to_queue(aws)
    db = f"sqlite:///{tmp_path / 'edp.sqlite'}"
    run = EdpRun([*run_args(aws, db), "--sns-topic-arn", topic_arn], tmp_path / "edp-run.log")
    edp_runs.append(run)
    run.wait_for_line("polling")

    s3 = aws.client("s3")
    # Prefix A: two files stay, one comes and goes -> closed by duration, count 2.
    for key in ("instr-a/exp-1/a.csv", "instr-a/exp-1/sub/b.csv", "instr-a/exp-1/gone.csv"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key="instr-a/exp-1/gone.csv")
    # Prefix B (a space and accents in the prefix): four files -> closed by count at once.
    for n in range(COUNT):
        s3.put_object(Bucket=BUCKET, Key=f"instr-b/run 2/échantillon {n}.csv", Body=b"y")
    # Dropped: too shallow, Quilt's registry, a bucket that is not watched.
    s3.put_object(Bucket=BUCKET, Key="top.csv", Body=b"z")
    s3.put_object(Bucket=BUCKET, Key=".quilt/named_packages/a/b/latest", Body=b"z")
    s3.put_object(Bucket=OTHER_BUCKET, Key="x/y/z.csv", Body=b"z")
    # Not an S3 event at all: left on the queue, then moved to the DLQ by the redrive policy.
    aws.send("definitely not an event")

    published = aws.published(expect=2, timeout=DURATION + 15)
    assert len(published) == 2, run.stderr()
    published += aws.published(timeout=1.5)  # and nothing more arrives
    dead = aws.drain(aws.dlq_url, wait=5)
    copies = [json.loads(json.loads(m["Body"])["Message"]) for m in aws.drain(topic_queue)]

    run.process.send_signal(signal.SIGTERM)
    assert run.wait() == 0, run.stderr()

    by_prefix: dict[str, dict[str, Any]] = {e["detail"]["prefix"]: e for e in published}
    assert sorted(by_prefix) == ["instr-a/exp-1/", "instr-b/run 2/"] and len(published) == 2
    a, b = by_prefix["instr-a/exp-1/"], by_prefix["instr-b/run 2/"]
    for event in (a, b):
        assert event["source"] == "com.quiltdata.edp"
        assert event["detail-type"] == "package-objects-ready"
        assert event["resources"] == [f"arn:aws:s3:::{BUCKET}"]
        # Quilt's fields, exactly and first; consumers written for Quilt's EDP keep working.
        assert list(event["detail"])[:3] == ["version", "bucket", "prefix"]
        assert event["detail"]["version"] == "0.1"
        assert event["detail"]["bucket"] == BUCKET
    assert (a["detail"]["count"], a["detail"]["trigger"]) == (2, "duration")
    assert (b["detail"]["count"], b["detail"]["trigger"]) == (COUNT, "count")

    # The store agrees, batch ids included; each batch reaches the bus within a second of its due
    # time (due = last activity + duration for A, the fourth file's arrival for B).
    store = SqliteStore(db)
    try:
        emissions = {e.batch_id: e for e in store.published()}
        counters = store.counters()
        assert store.open_batches() == [] and store.pending_count() == 0
    finally:
        store.close()
    assert sorted(emissions) == sorted(e["detail"]["batch_id"] for e in published)
    for event in published:
        emission = emissions[event["detail"]["batch_id"]]
        (arrived,) = bus_arrivals[emission.batch_id]  # sent once
        late = arrived - emission.emitted_at.timestamp()
        assert 0.0 <= late <= 1.0, (event["detail"]["trigger"], late)
        assert event["_sent"] >= arrived
        assert event["time"] == whole_seconds(emission.emitted_at)
    assert counters["accepted"] == 3 + 1 + COUNT  # three puts and a delete in A, four puts in B
    for reason in ("too-shallow", "quilt-registry", "bucket"):
        assert counters[f"dropped:{reason}"] == 1, counters

    # The topic got the same events, whole, as EventBridge delivered them (the bus's event id,
    # the deployment's account and region).
    # (moto's bus leaves "account" out of what it delivers: the copy's is STS's.)
    delivered = {e["id"]: {k: v for k, v in e.items() if k != "_sent"} for e in published}
    assert sorted(c["id"] for c in copies) == sorted(delivered)
    for copy in copies:
        assert {k: copy[k] for k in delivered[copy["id"]]} == delivered[copy["id"]]
        assert copy["account"] == "123456789012"
    assert {c["detail-type"] for c in copies} == {"package-objects-ready"}

    # Every stored message was deleted; the bad one went to the dead-letter queue.
    assert aws.queue_depth(aws.input_url) == 0
    assert [m["Body"] for m in dead] == ["definitely not an event"]
    log = run.stderr()
    assert "rejected message" in log and "not JSON" in log
    assert "stopped after" in log and "2 batch(es) published" in log


@pytest.mark.slow
def test_a_second_signal_exits_at_once(
    moto_endpoint: str, tmp_path: Path, edp_runs: list[EdpRun]
) -> None:
    aws = build_pipeline(moto_endpoint)
    args = run_args(aws, f"sqlite:///{tmp_path / 'edp.sqlite'}")
    args[args.index("--poll-wait") + 1] = "20"  # a stop waits for the current receive
    run = EdpRun(args, tmp_path / "edp-run.log")
    edp_runs.append(run)
    run.wait_for_line("polling")
    time.sleep(0.5)  # inside the long poll now

    run.process.send_signal(signal.SIGTERM)
    run.wait_for_line("stopping after this receive")
    assert run.process.poll() is None  # still finishing the receive
    started = time.monotonic()
    run.process.send_signal(signal.SIGINT)

    assert run.wait(timeout=5) == 130
    assert time.monotonic() - started < 2
    assert "SIGINT again: exiting now" in run.stderr()
