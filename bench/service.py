"""`edp run` benchmark: the service end to end against a bare boto3 receive+delete loop.

    python bench/service.py                          # SQLite; PostgreSQL too if reachable
    python bench/service.py --messages 2000 --rounds 1 --stores sqlite

A moto server runs in this process (fake credentials, 127.0.0.1, a free port). For each run a
fresh queue is fed while it is drained, so it stays shallow (moto's SQS slows down on deep
queues): a feeder thread sends batches of 10 EventBridge S3 events, one per message, keeping at
most ``--depth`` messages ahead of the consumer. The consumers, on the same queue and feeder:

* the floor: ``receive_message`` (10 messages, 1 s wait) then ``delete_message_batch``, nothing
  else;
* ``edp run``'s Service (what the command runs, minus argument parsing): parse, store, delete,
  close batches (20 files or 300 s), publish them to the moto bus.

It prints the wall time until every message is deleted, best of ``--rounds`` (runs alternate, so
load on the machine hits both sides), and the ratio. Target (issue 16): within 1.2x of the floor
on SQLite and PostgreSQL. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumers.testing import s3_sequencer

TARGET = 1.2
REGION = "us-east-1"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def body(n: int, start: datetime) -> str:
    moment = start + timedelta(milliseconds=50 * n)
    return json.dumps(
        {
            "version": "0",
            "id": f"{n:08x}-0000-4000-8000-000000000000",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "111122223333",
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": ["arn:aws:s3:::instrument-bucket"],
            "detail": {
                "version": "0",
                "bucket": {"name": "instrument-bucket"},
                "object": {
                    "key": f"instrument-{n % 7}/exp-{n // 350:06d}/file-{n:08d}.dat",
                    "size": 1024,
                    "sequencer": s3_sequencer(moment, n),
                },
            },
        }
    )


class Feeder(threading.Thread):
    """Sends ``total`` messages in batches of 10, never more than ``depth`` ahead of ``consumed``."""

    def __init__(self, sqs: Any, url: str, total: int, depth: int, consumed: Callable[[], int]):
        super().__init__(daemon=True)
        self.sqs, self.url, self.total, self.depth, self.consumed = sqs, url, total, depth, consumed
        self.start_time = datetime.now(UTC)

    def run(self) -> None:
        sent = 0
        while sent < self.total:
            if sent - self.consumed() >= self.depth:
                time.sleep(0.001)
                continue
            count = min(10, self.total - sent)
            entries = [
                {"Id": str(i), "MessageBody": body(sent + i, self.start_time)} for i in range(count)
            ]
            self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
            sent += count


def bare_loop(sqs: Any, url: str, total: int, depth: int) -> float:
    consumed = 0
    feeder = Feeder(sqs, url, total, depth, lambda: consumed)
    started = time.perf_counter()
    feeder.start()
    while consumed < total:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        if not messages:
            continue
        response = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        consumed += len(response.get("Successful", []))
    elapsed = time.perf_counter() - started
    feeder.join()
    return elapsed


def edp_run(clients: Callable[[str], Any], url: str, total: int, depth: int, db: str) -> float:
    from edp.service import Service
    from edp.settings import Settings
    from edp.store import open_store

    settings = Settings.from_sources(env={}, database_url=db)
    store = open_store(db)
    service = Service(
        settings,
        store,
        queue_url=url,
        sqs_client=lambda: clients("sqs"),
        events_client=lambda: clients("events"),
        poll_wait=1,
    )
    feeder = Feeder(clients("sqs"), url, total, depth, lambda: service.stats.deleted)
    runner = threading.Thread(target=service.run, daemon=True)
    started = time.perf_counter()
    feeder.start()
    runner.start()
    while service.stats.deleted < total:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    service.stop.set()
    runner.join()
    feeder.join()
    accepted = store.counters().get("accepted", 0)
    store.close()
    if accepted != total:
        raise SystemExit(f"edp stored {accepted} of {total} events")
    return elapsed


def fresh_postgres(url: str, schemas: list[str]) -> str:
    import psycopg

    schema = f"edp_bench_service_{os.getpid()}_{len(schemas)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    schemas.append(schema)
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def postgres_reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--depth", type=int, default=200, help="most messages queued ahead")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument(
        "--postgres", default=os.environ.get("EDP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    if "postgres" in kinds and not postgres_reachable(args.postgres):
        print(f"PostgreSQL at {args.postgres} not reachable: skipped")
        kinds.remove("postgres")

    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    made: dict[str, Any] = {}
    # boto3-stubs types boto3.client per literal service name; these names come at run time.
    new_client: Callable[..., Any] = boto3.client

    def clients(name: str) -> Any:
        if name not in made:
            made[name] = new_client(name, region_name=REGION, endpoint_url=endpoint)
        return made[name]

    queues = 0

    def new_queue() -> str:
        nonlocal queues
        queues += 1
        return str(clients("sqs").create_queue(QueueName=f"bench-{queues}")["QueueUrl"])

    schemas: list[str] = []
    times: dict[str, list[float]] = {"floor": [], **{kind: [] for kind in kinds}}
    print(
        f"edp run benchmark: {args.messages:,} messages (one S3 event each), queue kept under "
        f"{args.depth} deep, moto server at {endpoint}"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="edp-bench-") as tmp:
            for round_ in range(args.rounds):
                times["floor"].append(
                    bare_loop(clients("sqs"), new_queue(), args.messages, args.depth)
                )
                for kind in kinds:
                    if kind == "sqlite":
                        db = f"sqlite:///{Path(tmp) / f'service-{round_}.sqlite'}"
                    else:
                        db = fresh_postgres(args.postgres, schemas)
                    times[kind].append(edp_run(clients, new_queue(), args.messages, args.depth, db))
    finally:
        server.stop()
        if schemas:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")

    floor = min(times["floor"])
    print()
    print(f"{'consumer':<44}{'best s':>8}{'msg/s':>9}{'ratio':>8}   all runs")
    print(
        f"{'floor: boto3 receive + delete_message_batch':<44}{floor:>8.2f}"
        f"{args.messages / floor:>9,.0f}{1:>8.2f}   {', '.join(f'{t:.2f}' for t in times['floor'])}"
    )
    ok = True
    for kind in kinds:
        best = min(times[kind])
        ratio = best / floor
        ok = ok and ratio <= TARGET
        runs = ", ".join(f"{t:.2f}" for t in times[kind])
        label = f"edp run ({kind})"
        print(f"{label:<44}{best:>8.2f}{args.messages / best:>9,.0f}{ratio:>8.2f}   {runs}")
    print()
    for kind in kinds:
        ratio = min(times[kind]) / floor
        verdict = "PASS" if ratio <= TARGET else "FAIL"
        print(f"{verdict}  edp run on {kind} within {TARGET}x of the floor: {ratio:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
