"""Fault run: `edp run` SIGKILLed again and again while it drains a backlog and a queue.

    python bench/faults.py [--db URL] [--backlog 600] [--messages 400] [--kills 20] [--seed 1]

A moto server (in this process) stands in for SQS and EventBridge; every PutEvents entry that
reaches the bus is counted by batch id before moto handles it. The store starts with
``--backlog`` closed, unpublished batches (as after a bus outage); ``--messages`` S3 events wait
on the input queue (count threshold 1: each message closes a batch of its own). Then `edp run`
(the real CLI, a child process) is started and killed with SIGKILL after a random 0.3-3 s,
``--kills`` times, landing anywhere: start-up, receive, ingest, publish. A last run drains what
is left and is stopped with SIGTERM.

Printed: kills, batches expected, delivered, lost (expected but never on the bus), re-sent
(copies beyond the first), the most copies of one batch, messages left on the queues, and time.
Exit status 1 when a batch was lost or more than one PutEvents chunk (10) was re-sent per kill.

``--db`` takes ``sqlite:///path`` (default: a temporary file) or ``postgresql://...`` (a schema of
its own is created and dropped). With PostgreSQL a killed run's claims are respected until their
lease ends (a shared store cannot tell a dead emitter from a slow one), so the last run waits up
to two minutes for them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUS = "faults"
T0 = datetime(2026, 1, 5, tzinfo=UTC)
CHUNK = 10  # PutEvents entries per call: at most this many copies re-sent per kill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="store URL (default: a temporary SQLite file)")
    parser.add_argument("--backlog", type=int, default=600, help="unpublished batches at start")
    parser.add_argument("--messages", type=int, default=400, help="S3 events on the queue")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs before the last run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.update(FAKE_AWS)
    rng = random.Random(args.seed)

    from moto.events.models import EventsBackend

    from consumers.testing.aws import running_moto_server

    delivered: Counter[str] = Counter()
    original = EventsBackend.put_events

    def counting(self: EventsBackend, events: list[dict[str, Any]]) -> Any:
        for entry in events:
            delivered[json.loads(entry.get("Detail") or "{}").get("batch_id", "?")] += 1
        return original(self, events)

    EventsBackend.put_events = counting  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory() as tmp, running_moto_server() as moto:
        url, cleanup = store_url(args.db, Path(tmp))
        try:
            return fault_run(args, rng, moto.url, url, Path(tmp), delivered)
        finally:
            cleanup()


def store_url(given: str | None, tmp: Path) -> tuple[str, Any]:
    if not given:
        return f"sqlite:///{tmp / 'edp.sqlite'}", lambda: None
    if not given.startswith(("postgresql:", "postgres:")):
        return given, lambda: None
    import psycopg
    from psycopg import sql

    schema = f"faults_{secrets.token_hex(4)}"
    with psycopg.connect(given, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    parts = urlsplit(given)
    query = urlencode([*parse_qsl(parts.query), ("options", f"-csearch_path={schema}")])

    def drop() -> None:
        with psycopg.connect(given, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    return urlunsplit((*parts[:3], query, "")), drop


def fault_run(
    args: argparse.Namespace,
    rng: random.Random,
    endpoint: str,
    url: str,
    tmp: Path,
    delivered: Counter[str],
) -> int:
    import boto3

    from edp.core import RoutedEvent, Rules
    from edp.events import ObjectEvent
    from edp.store import open_store

    sqs = boto3.client("sqs", endpoint_url=endpoint)
    boto3.client("events", endpoint_url=endpoint).create_event_bus(Name=BUS)
    dlq = sqs.create_queue(QueueName="faults-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName="faults-in",
        Attributes={
            # A killed run's in-flight messages come back after 2 s.
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "50"}),
        },
    )["QueueUrl"]

    store = open_store(url)
    backlog = [
        RoutedEvent(
            ObjectEvent("lab", f"b{n}/x/f", "created", T0, event_id=f"b{n}"), f"b{n}/x/", T0
        )
        for n in range(args.backlog)
    ]
    expected = {e.batch_id for e in store.ingest(backlog, Rules(threshold_count=1)).emissions}
    store.close()
    for start in range(0, args.messages, 10):
        entries = []
        for n in range(start, min(start + 10, args.messages)):
            body = {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "id": f"m{n}",
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "detail": {"bucket": {"name": "lab"}, "object": {"key": f"m{n}/run/f.csv"}},
            }
            entries.append({"Id": str(n), "MessageBody": json.dumps(body)})
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    command = [sys.executable, "-m", "edp.cli", "run", "--queue-url", queue]
    command += ["--endpoint-url", endpoint, "--region", "us-east-1", "--poll-wait", "1"]
    command += ["--event-bus", BUS, "--db", url, "--threshold-count", "1"]
    env = {**os.environ, **FAKE_AWS, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.monotonic()
    for _ in range(args.kills):
        with (tmp / "killed.log").open("a") as log:
            run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
            time.sleep(rng.uniform(0.3, 3.0))
            run.send_signal(signal.SIGKILL)
            run.wait()

    with (tmp / "last.log").open("w") as log:
        last = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            store = open_store(url)
            try:
                pending, published = store.pending_count(), store.published()
            finally:
                store.close()
            if pending == 0 and len(published) >= args.backlog + args.messages:
                break
            time.sleep(0.5)
        last.send_signal(signal.SIGTERM)
        last.wait(timeout=60)
    took = time.monotonic() - started

    store = open_store(url)
    try:
        published_ids = {e.batch_id for e in store.published()}
        pending = store.pending_count()
    finally:
        store.close()
    expected |= {batch_id for batch_id in published_ids if batch_id not in expected}
    depth = {
        name: int(
            sqs.get_queue_attributes(
                QueueUrl=q,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        for name, q in (("input", queue), ("dead-letter", dlq))
    }
    lost = {b for b in expected if not delivered.get(b)}
    re_sent = sum(n - 1 for n in delivered.values())
    batches = args.backlog + args.messages
    print(f"store              {url.split(':', 1)[0]}")
    print(f"kills (SIGKILL)    {args.kills}")
    print(f"batches expected   {batches} ({args.backlog} backlog + {args.messages} from messages)")
    print(f"batches delivered  {len(delivered)}")
    print(f"lost               {len(lost) + max(0, batches - len(expected))}")
    print(f"re-sent copies     {re_sent} (limit {CHUNK * args.kills}: one chunk per kill)")
    print(f"most copies of one {max(delivered.values(), default=0)}")
    print(
        f"left pending       {pending}; queue {depth['input']}, dead-letter {depth['dead-letter']}"
    )
    print(f"wall time          {took:.1f} s")
    ok = not lost and len(expected) >= batches and re_sent <= CHUNK * args.kills and not pending
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
