"""The outbox under a slow bus and crashes: chunks marked as accepted, deadlines kept, no storm.

Virtual time: the store is real (SQLite), the bus is a stand-in that takes 1.2 s (of the test's
clock) per PutEvents call, and the Lambda ``emit_event`` is invoked every 60 s with a 50 s timeout;
an invocation still running at its timeout is killed, as Lambda does.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edp import handlers
from edp.clock import FixedClock
from edp.core import RoutedEvent, Rules
from edp.emitter import Emitter
from edp.events import ObjectEvent
from edp.publisher import CLAIM_BUDGET, LEASE_MARGIN, Publisher, publish_pending
from edp.settings import Settings
from edp.store import BatchStore, open_store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TIMEOUT = 50.0  # the template's Lambda timeout, seconds
SCHEDULE = 60.0  # emit_event runs every minute
CALL_TIME = 1.2  # a slow or throttled bus: seconds per PutEvents call


class Killed(BaseException):
    """The Lambda reached its timeout: the process ends wherever it is."""


class SlowBus:
    """PutEvents taking CALL_TIME seconds of the virtual clock; counts deliveries per batch."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.delivered: Counter[str] = Counter()
        self.kill_at: datetime | None = None
        self.calls = 0
        self.fail_after: int | None = None  # calls that succeed before the process dies

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        import json

        self.calls += 1
        self.clock.advance(CALL_TIME)
        for entry in Entries:  # accepted by the bus, whatever happens to the caller next
            self.delivered[json.loads(entry["Detail"])["batch_id"]] += 1
        if self.kill_at is not None and self.clock() >= self.kill_at:
            raise Killed
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Killed
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in Entries]}


@dataclass
class Context:
    """A Lambda context whose remaining time runs on the virtual clock."""

    clock: FixedClock
    ends: datetime
    function_name: str = "edp-emit"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:edp-emit"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends - self.clock()).total_seconds() * 1000))


def backlog(store: BatchStore, size: int) -> None:
    """``size`` closed, unpublished batches (one file each, count threshold 1)."""
    events = [
        RoutedEvent(ObjectEvent("lab", f"p{n}/run/f.csv", "created", T0), f"p{n}/run/", T0)
        for n in range(size)
    ]
    assert len(store.ingest(events, Rules(threshold_count=1)).emissions) == size


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = open_store(f"sqlite:///{tmp_path / 'edp.sqlite'}")
    yield opened
    opened.close()


def test_a_600_batch_backlog_drains_through_a_slow_bus_with_no_storm(store: BatchStore) -> None:
    backlog(store, 600)
    clock = FixedClock(T0)
    bus = SlowBus(clock)
    settings = Settings(database_url="memory://")
    handlers._runtime = handlers.Runtime(
        settings, store, Emitter(settings, store), Publisher(lambda: bus, "bus"), clock
    )
    invocations = kills = 0
    try:
        start = T0
        while store.pending_count() and invocations < 30:
            clock.now = start
            ends = start + timedelta(seconds=TIMEOUT)
            bus.kill_at = ends
            invocations += 1
            try:
                handlers.emit_event({}, Context(clock, ends))
            except Killed:
                kills += 1
            start += timedelta(seconds=SCHEDULE)
    finally:
        handlers._runtime = None
    assert store.pending_count() == 0, f"not drained after {invocations} invocations"
    assert set(bus.delivered) == {e.batch_id for e in store.published()}
    assert len(bus.delivered) == 600
    assert max(bus.delivered.values()) <= 2
    # 600 batches = 60 calls of 1.2 s; about 40 s of each 50 s invocation publishes.
    print(f"{invocations} invocations, {kills} killed, most copies {max(bus.delivered.values())}")
    assert invocations <= 3 and kills == 0


@pytest.mark.parametrize("dies_after", [0, 1, 7, 23])
def test_a_crash_re_sends_at_most_the_chunk_in_flight(store: BatchStore, dies_after: int) -> None:
    backlog(store, 250)
    clock = FixedClock(T0)
    bus = SlowBus(clock)
    bus.fail_after = dies_after
    with pytest.raises(Killed):
        publish_pending(store, Publisher(lambda: bus, "bus"), clock)
    assert len(bus.delivered) == 10 * (dies_after + 1)
    # The restarted emitter waits out the dead one's lease, then sends the rest.
    bus.fail_after = None
    clock.advance((CLAIM_BUDGET + LEASE_MARGIN).total_seconds())
    report = publish_pending(store, Publisher(lambda: bus, "bus"), clock)
    while report.deferred:
        report = publish_pending(store, Publisher(lambda: bus, "bus"), clock)
    assert store.pending_count() == 0 and len(bus.delivered) == 250
    twice = [batch for batch, n in bus.delivered.items() if n > 1]
    assert len(twice) == 10 and max(bus.delivered.values()) == 2


def test_a_claim_outlives_the_time_allowed_to_publish_it(store: BatchStore) -> None:
    backlog(store, 300)
    clock = FixedClock(T0)
    bus = SlowBus(clock)
    deadline = T0 + timedelta(seconds=20)
    report = publish_pending(store, Publisher(lambda: bus, "bus"), clock, deadline=deadline)
    # It stopped at the deadline (the call in flight then finishes), gave the rest back...
    assert clock() <= deadline + timedelta(seconds=CALL_TIME)
    assert len(report.published) == len(bus.delivered) < 300 and report.deferred > 0
    assert store.pending_count() == 300 - len(report.published)
    # ...which another emitter may take at once; what it published was never claimable meanwhile.
    again = store.claim_pending(clock(), timedelta(seconds=1), limit=1000)
    assert {e.batch_id for e in again}.isdisjoint(bus.delivered)
    assert len(again) == 300 - len(report.published)
