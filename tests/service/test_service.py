"""The `edp run` service against moto: what is stored, deleted, dead-lettered and published, and when."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from edp.cli import main
from edp.clock import FixedClock
from edp.errors import StoreError
from edp.publisher import CLAIM_LEASE
from edp.service import OVERDUE_RECHECK, RESWEEP_EVERY, Service
from edp.settings import Settings
from edp.store import BatchStore
from edp.store.memory import MemoryStore
from edp.store.sqlite import SqliteStore
from tests.helpers import load_event
from tests.service.service_aws import REGION, Pipeline, build_pipeline, connect_bus

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
BAD_BODY = "this is not JSON {"


@pytest.fixture
def aws() -> Iterator[Pipeline]:
    # Visibility 0 and maxReceiveCount 1: a message left on the queue is visible again at once and
    # moves to the dead-letter queue on its next receive, so the tests need not wait.
    with mock_aws():
        yield build_pipeline(visibility_timeout=0, max_receive_count=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    db = SqliteStore(f"sqlite:///{tmp_path / 'edp.sqlite'}")
    yield db
    db.close()


def make_service(
    aws: Pipeline,
    store: BatchStore,
    clock: Any = None,
    *,
    exclusive_store: bool = False,
    poll_wait: int = 0,
    **overrides: Any,
) -> Service:
    settings = Settings.from_sources(
        env={}, database_url="memory://", event_bus=overrides.pop("event_bus", aws.bus), **overrides
    )
    return Service(
        settings,
        store,
        queue_url=aws.input_url,
        sqs_client=lambda: aws.client("sqs"),
        events_client=lambda: aws.client("events"),
        clock=clock or FixedClock(T0),
        poll_wait=poll_wait,
        exclusive_store=exclusive_store,
        sleep=lambda seconds: None,
    )


def test_stored_messages_are_deleted_and_a_bad_one_is_left_for_the_dead_letter_queue(
    aws: Pipeline, store: SqliteStore
) -> None:
    aws.send(
        load_event("s3_notification_put"),  # two records
        load_event("eventbridge_object_created"),
        BAD_BODY,
        load_event("s3_test_event"),  # understood, nothing to store
    )
    service = make_service(aws, store)

    assert service.poll_once() == 4

    stats = service.stats
    assert (stats.received, stats.stored, stats.deleted, stats.rejected) == (4, 3, 3, 1)
    assert stats.events["accepted"] == 3
    assert store.counters()["accepted"] == 3
    assert {(b.bucket, b.prefix, b.count) for b in store.open_batches()} >= {
        ("instrument-bucket", "sequencer-1/exp-7/", 2)
    }
    # Only the bad message is still on the queue; its next receive moves it to the DLQ.
    assert aws.queue_depth(aws.input_url) == 1
    assert aws.drain(aws.input_url) == []
    assert [m["Body"] for m in aws.drain(aws.dlq_url)] == [BAD_BODY]


def test_a_batch_is_published_when_due_and_not_before(aws: Pipeline, store: SqliteStore) -> None:
    clock = FixedClock(T0)
    service = make_service(aws, store, clock, threshold_duration=300)
    aws.send(load_event("s3_notification_put"))
    service.poll_once()

    clock.advance(299.999)
    service.sweep()
    assert aws.published() == []

    clock.advance(0.001)
    service.sweep()
    service.sweep()  # a second sweep must not send it again
    events = aws.published()

    assert len(events) == 1
    event = events[0]
    assert event["source"] == "com.quiltdata.edp"
    assert event["detail-type"] == "package-objects-ready"
    assert event["resources"] == ["arn:aws:s3:::instrument-bucket"]
    (published,) = store.published()
    assert event["detail"] == {
        "version": "0.1",
        "bucket": "instrument-bucket",
        "prefix": "sequencer-1/exp-7/",
        "count": 2,
        "trigger": "duration",
        "batch_id": published.batch_id,
        "first_event_time": "2022-12-08T20:00:00.123Z",
        "last_event_time": "2022-12-08T20:00:01.456Z",
    }
    assert published.emitted_at == clock.now
    assert service.stats.published == 1 and store.pending_count() == 0


def test_seconds_until_next_sweep_follows_the_next_due_batch(
    aws: Pipeline, store: SqliteStore
) -> None:
    clock = FixedClock(T0)
    service = make_service(aws, store, clock, threshold_duration=3)
    assert service.seconds_until_next_sweep() == RESWEEP_EVERY  # nothing open

    aws.send(load_event("s3_notification_put"))
    service.poll_once()
    clock.advance(0.5)
    assert service.seconds_until_next_sweep() == pytest.approx(2.5)
    clock.advance(2.5)
    assert service.seconds_until_next_sweep() == OVERDUE_RECHECK  # overdue: soon, but no spin


def test_a_failed_store_deletes_nothing(aws: Pipeline) -> None:
    class UnwritableStore(MemoryStore):
        def _apply(self, events: Any, rules: Any, dropped: Any) -> Any:
            raise StoreError("disk full")

    service = make_service(aws, UnwritableStore())
    aws.send(load_event("s3_notification_put"))

    with pytest.raises(StoreError):
        service.poll_once()

    assert aws.queue_depth(aws.input_url) == 1
    assert (service.stats.stored, service.stats.deleted, service.stats.store_failures) == (0, 0, 1)


def test_a_batch_the_bus_refuses_stays_in_the_outbox_until_it_is_accepted(
    aws: Pipeline, store: SqliteStore
) -> None:
    clock = FixedClock(T0)
    service = make_service(aws, store, clock, event_bus="created-later", threshold_count=2)
    aws.send(load_event("s3_notification_put"))  # two files: closed by count at once
    service.poll_once()

    report = service.sweep()  # the bus does not exist yet
    assert report.published == [] and len(report.failed) == 1
    assert store.pending_count() == 1 and service.stats.publish_failures == 1

    events = aws.client("events")
    events.create_event_bus(Name="created-later")
    output_arn = aws.client("sqs").get_queue_attributes(
        QueueUrl=aws.output_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    connect_bus(events, output_arn, bus="created-later")
    service.sweep()

    (event,) = aws.published()
    assert event["detail"]["batch_id"] == report.failed[0]
    assert event["detail"]["trigger"] == "count"
    assert store.pending_count() == 0


def test_count_triggered_batches_go_out_without_waiting_for_a_sweep(
    aws: Pipeline, store: SqliteStore, bus_arrivals: dict[str, list[float]]
) -> None:
    # Real clock and threads: the emitter thread sleeps up to RESWEEP_EVERY unless woken.
    service = make_service(
        aws, store, clock=None, threshold_count=2, threshold_duration=3600, poll_wait=1
    )
    service.clock = lambda: datetime.now(UTC)
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        time.sleep(0.3)  # let the emitter thread go to sleep first
        sent = time.time()
        aws.send(load_event("s3_notification_put"))
        events = aws.published(expect=1, timeout=RESWEEP_EVERY)
    finally:
        service.stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert [e["detail"]["trigger"] for e in events] == ["count"]
    (reached_bus,) = bus_arrivals[events[0]["detail"]["batch_id"]]
    assert reached_bus - sent < 1.0  # not after the emitter thread's RESWEEP_EVERY sleep


def test_stopping_publishes_what_is_due_and_keeps_open_batches(
    aws: Pipeline, store: SqliteStore
) -> None:
    clock = FixedClock(T0)
    service = make_service(aws, store, clock, threshold_duration=60)
    aws.send(load_event("s3_notification_put"))
    service.poll_once()
    clock.advance(30)
    aws.send(load_event("eventbridge_object_created"))
    service.poll_once()
    clock.advance(30)  # the first batch is due now, the second in 30 s

    service.stop.set()
    started = time.monotonic()
    stats = service.run()

    assert time.monotonic() - started < 2
    assert [e["detail"]["prefix"] for e in aws.published()] == ["sequencer-1/exp-7/"]
    assert stats.published == 1
    assert len(store.open_batches()) == 1 and store.pending_count() == 0


@pytest.mark.parametrize("exclusive", [True, False])
def test_a_claim_left_by_a_dead_process(aws: Pipeline, store: SqliteStore, exclusive: bool) -> None:
    clock = FixedClock(T0)
    service = make_service(aws, store, clock, threshold_count=2, exclusive_store=exclusive)
    aws.send(load_event("s3_notification_put"))
    service.poll_once()
    (claimed,) = store.claim_pending(clock(), CLAIM_LEASE)  # the dead process got this far

    service.stop.set()
    service.run()
    if exclusive:
        # Nobody else uses the store: the claim is taken back and the batch sent at once.
        assert [e["detail"]["batch_id"] for e in aws.published()] == [claimed.batch_id]
    else:
        # A shared store: the lease is respected, and the batch goes out once it expires.
        assert aws.published() == []
        clock.advance(CLAIM_LEASE.total_seconds())
        service.sweep(final=True)  # a stopped service publishes only in its final sweep
        assert [e["detail"]["batch_id"] for e in aws.published()] == [claimed.batch_id]


@pytest.mark.integration  # `edp run` end to end
def test_edp_run_publishes_and_stops_after_max_runtime(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.send(load_event("s3_notification_put"))
    db = f"sqlite:///{tmp_path / 'run.sqlite'}"
    code = main(
        [
            "run",
            "--queue-url",
            aws.input_url,
            "--region",
            REGION,
            "--poll-wait",
            "1",
            "--max-runtime",
            "1.5",
            "--threshold-count",
            "2",
            "--event-bus",
            aws.bus,
            "--db",
            db,
        ]
    )
    err = capsys.readouterr().err

    assert code == 0
    assert [e["detail"]["count"] for e in aws.published()] == [2]
    assert "stored 1 message(s): 2 event(s) accepted" in err
    assert "published s3://instrument-bucket/sequencer-1/exp-7/: 2 file(s), trigger count" in err
    assert "stopped after" in err and "1 batch(es) published" in err


@pytest.mark.integration  # `edp run` end to end
def test_edp_run_with_an_unknown_queue_says_so_and_exits_1(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = aws.input_url.rsplit("/", 1)[0] + "/no-such-queue"
    code = main(["run", "--queue-url", missing, "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"edp: error: cannot read queue {missing}" in err
    assert "Traceback" not in err


@pytest.mark.integration  # `edp run` end to end
def test_edp_run_warns_when_the_queue_has_no_dead_letter_queue(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = aws.client("sqs").create_queue(QueueName="no-dlq")["QueueUrl"]
    code = main(
        [
            "run",
            "--queue-url",
            bare,
            "--poll-wait",
            "0",
            "--max-runtime",
            "0.2",
            "--db",
            f"sqlite:///{tmp_path / 'x.sqlite'}",
        ]
    )
    assert code == 0
    assert "has no dead-letter queue" in capsys.readouterr().err


def test_bad_message_is_logged_with_its_reason(
    aws: Pipeline, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    aws.send(json.dumps({"detail-type": "Object Created", "source": "aws.s3", "detail": {}}))
    service = make_service(aws, store)
    with caplog.at_level("WARNING", logger="edp.service"):
        service.poll_once()
    assert "rejected message" in caplog.text
    assert "missing bucket" in caplog.text


def test_short_polling_pauses_between_empty_receives(aws: Pipeline, store: SqliteStore) -> None:
    receives: list[str] = []
    aws.client("sqs").meta.events.register(
        "before-call.sqs.ReceiveMessage", lambda **kwargs: receives.append("receive")
    )
    service = make_service(aws, store, poll_wait=0)
    timer = threading.Timer(0.5, service.stop.set)
    timer.start()
    service.run()
    timer.join()
    assert len(receives) == 1  # not a tight loop of empty receives


@pytest.mark.integration  # `edp run` end to end
def test_edp_run_follows_the_rules_file(aws: Pipeline, store: SqliteStore, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- {name: sequencers, match: 'sequencer-*/', depth: 1, threshold_duration: 60}\n",
        encoding="utf-8",
    )
    clock = FixedClock(T0)
    service = make_service(aws, store, clock, threshold_duration=3600, rules=str(rules))
    aws.send(load_event("s3_notification_put"))
    service.poll_once()
    clock.advance(60)
    service.sweep()
    [event] = aws.published()
    detail = event["detail"]
    # The rule's depth (1) and quiet time (60 s), not the global ones (2 and 3600 s).
    assert (detail["prefix"], detail["count"], detail["trigger"], detail["rule"]) == (
        "sequencer-1/",
        2,
        "duration",
        "sequencers",
    )
