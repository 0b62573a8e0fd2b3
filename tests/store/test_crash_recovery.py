"""Crashes at random points, on every persistent store: nothing lost, at most a chunk re-sent each.

An emitter ingests a stream (in chunks, as receives) on top of a backlog of 600 unpublished
batches, sweeps and publishes through a bus, and is "killed" again and again at random points:
before or after any store transaction (a transaction either committed or not: that is what a
SIGKILL leaves too) and before or after any PutEvents call reaches the bus. After each kill a new
emitter opens the store again, waits out the dead one's leases (virtual time) and carries on; the
chunk in flight is delivered again, as SQS re-delivers an undeleted message.

At the end every batch is on the bus with the counts of an uncrashed run, and the copies sent
twice are at most one PutEvents chunk (10) per kill.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edp.clock import FixedClock
from edp.core import Emission, RoutedEvent, Rules, emission_order
from edp.events import ObjectEvent
from edp.publisher import CLAIM_LEASE, PUT_EVENTS_MAX_ENTRIES, Publisher, publish_pending
from edp.store import BatchStore, open_store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RULES = Rules(threshold_count=5, threshold_duration=timedelta(seconds=30))
BACKLOG = 600
CHUNK = 40


class Killed(BaseException):
    """The process died here."""


class Killer:
    """Decides, at every crash point, whether the process dies there."""

    def __init__(self, rng: random.Random, rate: float, budget: int) -> None:
        self.rng, self.rate, self.left = rng, rate, budget
        self.kills = 0

    def point(self) -> None:
        if self.left and self.rng.random() < self.rate:
            self.left -= 1
            self.kills += 1
            raise Killed


class MortalStore:
    """A store whose process may die before or after each transaction."""

    def __init__(self, store: BatchStore, killer: Killer) -> None:
        self._store, self._killer = store, killer

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name not in ("ingest", "close_due", "claim_pending", "mark_published", "release"):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self._killer.point()
            result = method(*args, **kwargs)
            self._killer.point()
            return result

        return call


class Bus:
    """PutEvents that records every delivery; the caller may die before or after a call."""

    def __init__(self, killer: Killer) -> None:
        self.killer = killer
        self.delivered: Counter[str] = Counter()

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.killer.point()
        for entry in Entries:
            self.delivered[json.loads(entry["Detail"])["batch_id"]] += 1
        self.killer.point()
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in Entries]}


def stream(rng: random.Random, size: int) -> list[RoutedEvent]:
    events = []
    for n in range(size):
        prefix = f"s{rng.randrange(60)}/run/"
        moment = T0 + timedelta(seconds=n)
        obj = ObjectEvent("lab", f"{prefix}f{n}.dat", "created", moment, event_id=f"e{n}")
        events.append(RoutedEvent(obj, prefix, moment))
    return events


def backlog(store: BatchStore) -> list[Emission]:
    events = [
        RoutedEvent(
            ObjectEvent("lab", f"b{n}/x/f", "created", T0, event_id=f"b{n}"), f"b{n}/x/", T0
        )
        for n in range(BACKLOG)
    ]
    return store.ingest(events, Rules(threshold_count=1)).emissions


def run(
    reopen: Callable[[], BatchStore],
    events: list[RoutedEvent],
    killer: Killer,
    bus: Bus,
) -> tuple[BatchStore, int]:
    """Play the stream, sweeping after each chunk, restarting after each kill; drain at the end.

    Batches close at the stream's own times (as in the reference run); ``clock`` is the outbox's
    wall clock, which jumps past the leases at each restart.
    """
    clock = FixedClock(T0)
    position, restarts = 0, 0
    store = reopen()
    while True:
        mortal: Any = MortalStore(store, killer)
        try:
            while position < len(events):
                chunk = events[position : position + CHUNK]
                mortal.ingest(chunk, RULES)
                position += len(chunk)  # the receive is deleted once stored
                mortal.close_due(chunk[-1].arrived, RULES)
                publish_pending(mortal, Publisher(lambda: bus, "bus", sleep=lambda s: None), clock)
            mortal.close_due(events[-1].arrived + timedelta(hours=2), RULES)
            report = publish_pending(mortal, Publisher(lambda: bus, "bus"), clock)
            while report.deferred or store.pending_count():
                report = publish_pending(mortal, Publisher(lambda: bus, "bus"), clock)
            return store, restarts
        except Killed:
            restarts += 1
            store.close()
            store = reopen()  # a new process on the same store...
            clock.advance(CLAIM_LEASE.total_seconds())  # ...once the dead one's leases ended


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], BatchStore]]:
    url = (
        f"sqlite:///{tmp_path}/edp.sqlite"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    yield lambda: open_store(url)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_kills_lose_nothing_and_re_send_at_most_a_chunk_each(
    reopen: Callable[[], BatchStore], seed: int
) -> None:
    rng = random.Random(seed)
    events = stream(rng, 1_500)
    reference = open_store("memory://")
    expected = sorted(backlog(reference), key=emission_order)
    for start in range(0, len(events), CHUNK):
        expected += reference.ingest(events[start : start + CHUNK], RULES).emissions
        expected += reference.close_due(events[start : start + CHUNK][-1].arrived, RULES)
    expected += reference.close_due(events[-1].arrived + timedelta(hours=2), RULES)

    first = reopen()
    backlog(first)
    first.close()
    killer = Killer(rng, rate=0.02, budget=25)
    bus = Bus(killer)
    store, restarts = run(reopen, events, killer, bus)
    try:
        assert killer.kills == restarts >= 10
        lost = {e.batch_id for e in expected} - set(bus.delivered)
        assert not lost, f"{len(lost)} batch(es) never reached the bus"
        assert sorted((e.batch_id, e.count, e.trigger) for e in store.published()) == sorted(
            (e.batch_id, e.count, e.trigger) for e in expected
        )
        re_sent = sum(n - 1 for n in bus.delivered.values())
        assert re_sent <= PUT_EVENTS_MAX_ENTRIES * killer.kills, (re_sent, killer.kills)
        assert store.pending_count() == 0 and store.open_batches() == []
    finally:
        store.close()
