"""`edp run` with a large outbox: it starts polling at once, drains it, and stops when told to,
also while the bus is down."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from edp.core import RoutedEvent, Rules
from edp.events import ObjectEvent
from edp.publisher import CLAIM_LEASE
from edp.service import Service
from edp.settings import Settings
from edp.store import BatchStore, open_store
from tests.helpers import load_event
from tests.service.service_aws import REGION, build_pipeline
from tests.service.service_processes import EdpRun

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def backlog(store: BatchStore, size: int, claimed: int = 0) -> None:
    """``size`` closed, unpublished batches, the first ``claimed`` of them claimed by a process
    that died (its lease still running)."""
    events = [
        RoutedEvent(ObjectEvent("lab", f"p{n:05d}/run/f.csv", "created", T0), f"p{n:05d}/run/", T0)
        for n in range(size)
    ]
    for start in range(0, size, 2000):
        store.ingest(events[start : start + 2000], Rules(threshold_count=1))
    if claimed:
        store.claim_pending(datetime.now(UTC), CLAIM_LEASE, limit=claimed)


def published_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL").fetchone()[0]
        )


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
@pytest.mark.parametrize("size", [499, 500, 516, 1500])
def test_start_up_reclaim_terminates_for_any_backlog(url: str, size: int, tmp_path: Path) -> None:
    store = open_store(url if url != "sqlite" else f"sqlite:///{tmp_path / 's.sqlite'}")
    backlog(store, size, claimed=size)
    service = Service(
        Settings(database_url="memory://"),
        store,
        queue_url="unused",
        sqs_client=lambda: None,
        events_client=lambda: None,
        exclusive_store=True,
    )
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(service.reclaim_abandoned()), daemon=True
    )
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "reclaim_abandoned never returned"
    assert result == [size]
    assert len(store.claim_pending(datetime.now(UTC), timedelta(minutes=1), limit=size + 1)) == size
    store.close()


@pytest.mark.slow
def test_edp_run_with_10000_pending_polls_within_seconds_and_drains_them(
    moto_endpoint: str, tmp_path: Path, edp_runs: list[EdpRun]
) -> None:
    aws = build_pipeline(moto_endpoint)
    # A bus with no rule: 10,000 events must not fill a (slow, in moto) queue.
    boto3.client("events", region_name=REGION, endpoint_url=moto_endpoint).create_event_bus(
        Name="quiet"
    )
    db = tmp_path / "edp.sqlite"
    store = open_store(f"sqlite:///{db}")
    backlog(store, 10_000, claimed=700)  # some left claimed by a dead run
    store.close()

    args = aws.run_args(f"sqlite:///{db}", "--threshold-duration", "1")
    args[args.index("--event-bus") + 1] = "quiet"
    started = time.monotonic()
    run = EdpRun(args, tmp_path / "run.log")
    edp_runs.append(run)
    aws.send(load_event("s3_notification_put"))
    run.wait_for_line("stored 1 message(s)", timeout=20)
    polling_after = time.monotonic() - started
    deadline = time.monotonic() + 120
    while published_count(db) < 10_000 and time.monotonic() < deadline:
        time.sleep(0.5)
    drained_after = time.monotonic() - started
    print(
        f"10,000 pending: polling after {polling_after:.1f} s, drained after {drained_after:.1f} s"
    )
    run.process.send_signal(signal.SIGTERM)
    assert run.wait(timeout=20) == 0, run.stderr()
    assert polling_after < 10, run.stderr()
    assert published_count(db) >= 10_000, (
        f"{published_count(db)} published after {drained_after:.0f} s"
    )


@pytest.mark.slow
def test_sigterm_is_honoured_promptly_while_the_bus_is_down(
    moto_endpoint: str, tmp_path: Path, edp_runs: list[EdpRun]
) -> None:
    aws = build_pipeline(moto_endpoint)
    db = tmp_path / "edp.sqlite"
    events = boto3.client("events", region_name=REGION, endpoint_url=moto_endpoint)
    events.create_event_bus(Name="doomed")
    args = aws.run_args(f"sqlite:///{db}", "--threshold-duration", "1")
    args[args.index("--event-bus") + 1] = "doomed"
    run = EdpRun(args, tmp_path / "run.log")
    edp_runs.append(run)
    # The bus goes down after the start-up check found it: every PutEvents entry fails from then.
    run.wait_for_line("polling ", timeout=30)
    events.delete_event_bus(Name="doomed")
    store = open_store(f"sqlite:///{db}")  # a second writer, as the Lambda could be
    backlog(store, 600)
    store.close()
    run.wait_for_line("not accepted by EventBridge", timeout=30)
    time.sleep(1.0)  # in the middle of retries
    sent = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 0, run.stderr()
    took = time.monotonic() - sent
    print(f"bus down, 600 pending: stopped {took:.1f} s after SIGTERM")
    # --poll-wait 1, plus one PutEvents attempt (fast here: the bus answers with errors).
    assert took < 1 + 2.5, f"{took:.1f} s to stop:\n{run.stderr()}"
    assert published_count(db) == 0
