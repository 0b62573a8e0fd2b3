"""`edp run`'s poll loop: several receives stored in one transaction, then deleted; the emitter
thread woken only when an ingest closed a batch or brought the next due time forward."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from edp.clock import FixedClock
from edp.core import Changes, RoutedEvent, Rules
from edp.errors import StoreError
from edp.service import Service
from edp.settings import Settings
from edp.store.memory import MemoryStore
from tests.helpers import eb_event
from tests.service.service_aws import Pipeline, build_pipeline

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


class CountingStore(MemoryStore):
    """A memory store that counts its ingest transactions and can be told to fail them."""

    def __init__(self) -> None:
        super().__init__()
        self.transactions = 0
        self.fail = False

    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        if self.fail:
            raise StoreError("the database is down")
        self.transactions += 1
        return super()._apply(events, rules, dropped)


@pytest.fixture
def aws() -> Iterator[Pipeline]:
    with mock_aws():
        yield build_pipeline(visibility_timeout=30)


def make_service(aws: Pipeline, store: MemoryStore, **overrides: Any) -> Service:
    settings = Settings.from_sources(
        env={}, database_url="memory://", event_bus=aws.bus, **overrides
    )
    return Service(
        settings,
        store,
        queue_url=aws.input_url,
        sqs_client=lambda: aws.client("sqs"),
        events_client=lambda: aws.client("events"),
        clock=FixedClock(T0),
        poll_wait=0,
        sleep=lambda seconds: None,
    )


def send_batch(aws: Pipeline, bodies: list[dict[str, Any]]) -> None:
    sqs = aws.client("sqs")
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(n), "MessageBody": json.dumps(body)}
            for n, body in enumerate(bodies[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=aws.input_url, Entries=entries)


def test_several_full_receives_go_into_one_store_transaction(aws: Pipeline) -> None:
    send_batch(aws, [eb_event(f"lab/run-{n % 5}/f{n}.csv", n) for n in range(45)])
    store = CountingStore()
    service = make_service(aws, store, threshold_count=1000)
    assert service.poll_once() == 45
    assert store.transactions == 1
    assert store.counters()["accepted"] == 45
    assert service.stats.deleted == 45 and aws.queue_depth(aws.input_url) == 0


def test_nothing_is_deleted_when_the_coalesced_transaction_fails(aws: Pipeline) -> None:
    send_batch(aws, [eb_event(f"lab/run-1/f{n}.csv", n) for n in range(25)])
    store = CountingStore()
    store.fail = True
    service = make_service(aws, store)
    with pytest.raises(StoreError):
        service.poll_once()
    assert service.stats.deleted == 0 and aws.queue_depth(aws.input_url) == 25
    assert store.open_batches() == []


def test_the_emitter_is_woken_only_for_work_before_its_planned_sweep(aws: Pipeline) -> None:
    store = MemoryStore()
    service = make_service(aws, store, threshold_count=3, threshold_duration=300)
    wake = service._wake  # the emitter thread's alarm

    # It plans to sweep in 10 minutes: a batch due in 5 minutes moves that forward.
    service._next_sweep_at = T0 + timedelta(minutes=10)
    send_batch(aws, [eb_event("lab/run-1/a.csv", 0)])
    service.poll_once()
    assert wake.is_set()

    # It plans to sweep before the batches fall due: more files for them change nothing.
    wake.clear()
    service._next_sweep_at = T0 + timedelta(seconds=1)
    send_batch(aws, [eb_event("lab/run-1/b.csv", 1), eb_event("lab/run-2/a.csv", 2)])
    service.poll_once()
    assert not wake.is_set()

    # A batch closed by count has to be published: wake.
    send_batch(aws, [eb_event("lab/run-1/c.csv", 3)])
    service.poll_once()
    assert wake.is_set() and store.pending_count() == 1

    # While it sweeps (no plan yet), anything stored wakes it again afterwards.
    wake.clear()
    service._next_sweep_at = None
    send_batch(aws, [eb_event("lab/run-3/a.csv", 4)])
    service.poll_once()
    assert wake.is_set()
