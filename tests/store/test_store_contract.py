"""The BatchStore contract: one suite, run against the memory, SQLite and PostgreSQL backends.

Every method of the interface and every batching rule as it shows through a store: batches open
and close, counts, deletes, duplicates inside the dedupe window and after it, stale sequencers,
the outbox (claim, lease, release, publish), restart survival, the schema version and counters.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edp.core import Emission, RoutedEvent, Rules
from edp.events import Kind, ObjectEvent
from edp.store import BatchStore, open_store
from edp.store.base import SCHEMA_VERSION

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BUCKET = "lab-bucket"
RULES = Rules(
    threshold_count=3,
    threshold_duration=timedelta(seconds=60),
    marker_patterns=(re.compile(r"_SUCCESS\Z"),),
    dedupe_window=timedelta(hours=1),
)

OpenStore = Callable[[], BatchStore]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    key: str,
    seconds: float,
    kind: Kind = "created",
    *,
    sequencer: str | None = None,
    event_id: str | None = None,
    bucket: str = BUCKET,
) -> RoutedEvent:
    """A routed event arriving at T0+seconds; the prefix is the key's first two segments."""
    if sequencer is None and event_id is None:
        event_id = f"{kind}:{key}:{seconds}"
    moment = at(seconds)
    obj = ObjectEvent(
        bucket=bucket,
        key=key,
        kind=kind,
        event_time=moment,
        sequencer=sequencer,
        event_id=event_id,
    )
    prefix = "/".join(key.split("/")[:2]) + "/"
    return RoutedEvent(obj, prefix, moment)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.param)


@pytest.fixture
def reopen(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens a store on the test's own (initially empty) state; call again to 'restart'."""
    if backend == "memory":
        url = "memory://"
    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        url = request.getfixturevalue("pg_url")
    opened: list[BatchStore] = []

    def factory() -> BatchStore:
        store = open_store(url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(reopen: OpenStore) -> BatchStore:
    return reopen()


def persistent(backend: str) -> None:
    if backend == "memory":
        pytest.skip("the memory store keeps nothing across a restart, by design")


def ingest(store: BatchStore, *events: RoutedEvent) -> list[Emission]:
    return store.ingest(list(events), RULES).emissions


# --- schema ---------------------------------------------------------------------------------


def test_a_new_store_is_empty_and_records_its_schema_version(store: BatchStore) -> None:
    assert store.open_batches() == []
    assert store.published() == []
    assert store.pending_count() == 0
    assert store.counters() == {}
    assert store.next_due() is None
    assert store.schema_version() >= SCHEMA_VERSION


def test_opening_twice_keeps_the_schema_and_the_data(backend: str, reopen: OpenStore) -> None:
    persistent(backend)
    first = reopen()
    ingest(first, event("a/b/1.csv", 0))
    version = first.schema_version()
    second = reopen()
    assert second.schema_version() == version
    assert [b.count for b in second.open_batches()] == [1]


# --- batches --------------------------------------------------------------------------------


def test_events_open_one_batch_per_prefix_in_bucket_and_prefix_order(store: BatchStore) -> None:
    assert ingest(store, event("b/x/1.csv", 0), event("a/y/1.csv", 1), event("a/y/2.csv", 2)) == []
    batches = store.open_batches()
    assert [(b.prefix, b.count) for b in batches] == [("a/y/", 2), ("b/x/", 1)]
    ay = batches[0]
    assert ay.first_activity == at(1)
    assert ay.last_activity == at(2)
    assert ay.due_at == at(62)
    assert store.next_due() == at(60)
    assert store.counters() == {"accepted": 3}


def test_the_count_threshold_closes_the_batch_into_the_outbox(store: BatchStore) -> None:
    emitted = ingest(store, *(event(f"a/b/{n}.csv", n) for n in range(4)))
    assert [(e.prefix, e.count, e.trigger, e.emitted_at) for e in emitted] == [
        ("a/b/", 3, "count", at(2))
    ]
    # The fourth event opened the next batch.
    assert [(b.count, b.first_activity) for b in store.open_batches()] == [(1, at(3))]
    assert store.pending_count() == 1
    assert store.counters() == {"accepted": 4, "emitted:count": 1}


def test_a_key_created_again_counts_once_and_a_delete_takes_it_out(store: BatchStore) -> None:
    ingest(
        store,
        event("a/b/1.csv", 0),
        event("a/b/1.csv", 1),  # created again: same key, no new file
        event("a/b/2.csv", 2),
        event("a/b/2.csv", 3, "deleted"),
        event("a/b/gone.csv", 4, "deleted"),  # never created here: only marks the batch changed
    )
    [batch] = store.open_batches()
    assert batch.count == 1
    assert batch.last_activity == at(4)
    assert store.counters() == {"accepted": 5}


def test_a_batch_of_only_deletes_is_emitted_with_count_zero(store: BatchStore) -> None:
    ingest(store, event("a/b/old.csv", 0, "deleted"))
    [emission] = store.close_due(at(60), RULES)
    assert (emission.count, emission.trigger, emission.emitted_at) == (0, "duration", at(60))


def test_close_due_emits_at_exactly_the_due_time_and_only_when_due(store: BatchStore) -> None:
    ingest(store, event("a/b/1.csv", 0), event("c/d/1.csv", 30))
    assert store.close_due(at(59.999), RULES) == []
    [first] = store.close_due(at(75), RULES)
    assert (first.prefix, first.emitted_at, first.trigger) == ("a/b/", at(60), "duration")
    assert store.next_due() == at(90)
    assert [b.prefix for b in store.open_batches()] == ["c/d/"]
    assert store.counters()["emitted:duration"] == 1


def test_close_due_honours_its_limit_oldest_first(store: BatchStore) -> None:
    ingest(store, *(event(f"p{n}/x/1.csv", n) for n in range(5)))
    first = store.close_due(at(1000), RULES, limit=2)
    assert [e.prefix for e in first] == ["p0/x/", "p1/x/"]
    rest = store.close_due(at(1000), RULES)
    assert [e.prefix for e in rest] == ["p2/x/", "p3/x/", "p4/x/"]
    assert store.open_batches() == []


def test_an_event_after_the_due_time_closes_the_old_batch_first(store: BatchStore) -> None:
    ingest(store, event("a/b/1.csv", 0))
    [emission] = ingest(store, event("a/b/2.csv", 100))
    assert (emission.count, emission.emitted_at, emission.trigger) == (1, at(60), "duration")
    [batch] = store.open_batches()
    assert (batch.count, batch.first_activity) == (1, at(100))
    assert batch.batch_id != emission.batch_id


def test_a_marker_file_closes_the_batch_at_once(store: BatchStore) -> None:
    [emission] = ingest(store, event("a/b/1.csv", 0), event("a/b/_SUCCESS", 5))
    assert (emission.count, emission.trigger, emission.emitted_at) == (2, "marker", at(5))


def test_max_age_closes_a_batch_that_never_goes_quiet(store: BatchStore) -> None:
    rules = Rules(
        threshold_count=100,
        threshold_duration=timedelta(seconds=60),
        max_age=timedelta(seconds=100),
    )
    store.ingest([event(f"a/b/{n}.csv", n * 30) for n in range(4)], rules)  # 0..90 s
    [emission] = store.close_due(at(100), rules)
    assert (emission.count, emission.trigger, emission.emitted_at) == (4, "max-age", at(100))


def test_the_ingest_clock_never_goes_backwards(store: BatchStore) -> None:
    ingest(store, event("a/b/1.csv", 100))
    ingest(store, event("c/d/1.csv", 10))  # arrives "earlier": applied at the clock
    batches = {b.prefix: b for b in store.open_batches()}
    assert batches["c/d/"].first_activity == at(100)
    assert batches["c/d/"].first_event_time == at(10)


class _FailingMarker:
    """A marker pattern that fails on one file name: the rules raise halfway through a chunk."""

    def match(self, name: str) -> None:
        if name == "boom.csv":
            raise RuntimeError("the rules failed")


def test_a_failed_ingest_leaves_the_store_as_it_was(store: BatchStore) -> None:
    failing = dataclasses.replace(RULES, marker_patterns=(_FailingMarker(),))  # type: ignore[arg-type]
    ingest(store, event("a/b/1.csv", 0, sequencer="0A"), event("a/b/2.csv", 5))
    before = (store.open_batches(), store.counters(), store.next_due())
    chunk = [
        event("a/b/3.csv", 10),  # the count threshold closes a/b/ ...
        event("c/d/1.csv", 11, sequencer="0B"),  # ... and c/d/ opens
        event("a/b/1.csv", 12, sequencer="0C"),
        event("a/b/boom.csv", 13),
    ]
    with pytest.raises(RuntimeError, match="the rules failed"):
        store.ingest(chunk, failing)
    assert (store.open_batches(), store.counters(), store.next_due()) == before
    assert store.pending_count() == 0
    # Nothing of the failed chunk is remembered: replayed, it is not duplicate nor stale.
    emitted = ingest(store, *chunk[:3])
    assert [(e.prefix, e.count) for e in emitted] == [("a/b/", 3)]
    assert store.counters() == {"accepted": 5, "emitted:count": 1}
    assert [(b.prefix, b.count) for b in store.open_batches()] == [("a/b/", 1), ("c/d/", 1)]


# --- duplicates and stale events ------------------------------------------------------------


def test_a_duplicate_changes_nothing_while_the_batch_is_open(store: BatchStore) -> None:
    original = event("a/b/1.csv", 0, sequencer="0A")
    ingest(store, original)
    again = RoutedEvent(original.event, original.prefix, at(30))
    ingest(store, again)
    [batch] = store.open_batches()
    assert (batch.count, batch.last_activity) == (1, at(0))
    assert store.counters() == {"accepted": 1, "duplicate": 1}


def test_duplicates_are_recognised_for_the_window_after_emission_then_forgotten_by_purge(
    store: BatchStore,
) -> None:
    original = event("a/b/1.csv", 0, event_id="req-1")
    ingest(store, original)
    [emission] = store.close_due(at(60), RULES)
    late = RoutedEvent(original.event, original.prefix, at(60 + 1800))  # inside the hour
    assert ingest(store, late) == []
    assert store.open_batches() == []
    assert store.counters()["duplicate"] == 1
    # Past the window the identity expires; purge forgets it and the event counts again.
    expired_at = emission.emitted_at + RULES.dedupe_window
    assert store.purge(expired_at, RULES.dedupe_window) >= 1
    much_later = RoutedEvent(original.event, original.prefix, expired_at + timedelta(seconds=1))
    ingest(store, much_later)
    assert [b.count for b in store.open_batches()] == [1]
    assert store.counters()["accepted"] == 2


def test_an_expired_identity_is_not_a_duplicate_even_before_purge(store: BatchStore) -> None:
    original = event("a/b/1.csv", 0, event_id="req-1")
    ingest(store, original)
    store.close_due(at(60), RULES)
    later = RoutedEvent(original.event, original.prefix, at(60 + 3600 + 1))
    ingest(store, later)
    assert [b.count for b in store.open_batches()] == [1]


def test_an_event_with_a_lower_sequencer_is_stale(store: BatchStore) -> None:
    ingest(store, event("a/b/1.csv", 0, sequencer="00B"))
    ingest(store, event("a/b/1.csv", 1, "deleted", sequencer="00A"))  # older: ignored
    ingest(store, event("a/b/1.csv", 2, "deleted", sequencer="00b1"))  # newer (case-insensitive)
    [batch] = store.open_batches()
    assert batch.count == 0
    assert store.counters() == {"accepted": 2, "stale": 1}


def test_purge_forgets_sequencers_not_seen_for_the_window(store: BatchStore) -> None:
    ingest(store, event("a/b/1.csv", 0, sequencer="00B"))
    store.close_due(at(60), RULES)
    assert store.purge(at(7200), timedelta(hours=1)) >= 1
    ingest(store, event("a/b/1.csv", 7201, sequencer="00A"))  # no longer known to be stale
    assert store.counters().get("stale", 0) == 0


# --- the outbox -----------------------------------------------------------------------------


def test_claims_lease_release_and_publish(store: BatchStore) -> None:
    ingest(store, event("a/b/1.csv", 0), event("c/d/1.csv", 1))
    closed = store.close_due(at(100), RULES)
    assert len(closed) == 2
    lease = timedelta(seconds=30)
    claimed = store.claim_pending(at(100), lease, limit=1)
    assert [e.prefix for e in claimed] == ["a/b/"]
    assert claimed[0] == closed[0]
    # The first is leased; another emitter gets the second, and nothing more.
    other = store.claim_pending(at(101), lease)
    assert [e.prefix for e in other] == ["c/d/"]
    assert store.claim_pending(at(102), lease) == []
    # A released claim is free at once; an expired lease is free again.
    store.release([other[0].batch_id])
    assert [e.prefix for e in store.claim_pending(at(103), lease)] == ["c/d/"]
    assert [e.prefix for e in store.claim_pending(at(130), lease)] == ["a/b/"]
    store.mark_published([closed[0].batch_id, closed[1].batch_id], at(131))
    assert store.pending_count() == 0
    assert store.published() == closed
    assert store.claim_pending(at(10_000), lease) == []
    store.release([closed[0].batch_id])  # releasing a published batch changes nothing
    assert store.pending_count() == 0


def test_pending_lists_waiting_batches_with_their_failed_attempts(store: BatchStore) -> None:
    ingest(store, event("a/b/1.csv", 0), event("c/d/1.csv", 1))
    closed = store.close_due(at(100), RULES)
    first, second = (e.batch_id for e in closed)
    assert [(p.emission, p.attempts, p.last_error) for p in store.pending()] == [
        (closed[0], 0, None),
        (closed[1], 0, None),
    ]
    store.record_failures(
        {first: "ResourceNotFoundException: Event bus edp does not exist."}, at(101)
    )
    store.record_failures({first: "AccessDeniedException: no"}, at(106))
    waiting = {p.emission.batch_id: p for p in store.pending()}
    assert waiting[first].attempts == 2
    assert waiting[first].last_error == "AccessDeniedException: no"
    assert waiting[first].last_attempt_at == at(106)
    assert waiting[second].attempts == 0 and waiting[second].last_error is None
    assert [p.emission.batch_id for p in store.pending(limit=1)] == [first]
    store.mark_published([first, second], at(107))
    assert store.pending() == []


def test_published_lists_batches_in_emitted_bucket_prefix_order(store: BatchStore) -> None:
    ingest(store, event("b/b/1.csv", 0), event("a/a/1.csv", 0), event("c/c/1.csv", -10))
    closed = store.close_due(at(1000), RULES)
    store.mark_published([e.batch_id for e in reversed(closed)], at(1000))
    assert [e.prefix for e in store.published()] == ["a/a/", "b/b/", "c/c/"]


def test_enqueue_adds_outside_batches_once_pending_or_published(store: BatchStore) -> None:
    made = [
        Emission(f"bf-{i}", BUCKET, f"i/e{i}/", 2, "backfill", at(5), at(0), at(i))
        for i in range(3)
    ]
    assert store.enqueue(made[:2]) == ["bf-0", "bf-1"]
    assert store.pending_count() == 2
    # Already pending: not added again.
    assert store.enqueue(made) == ["bf-2"]
    claimed = store.claim_pending(at(6), timedelta(seconds=30))
    assert sorted(e.batch_id for e in claimed) == ["bf-0", "bf-1", "bf-2"]
    assert {e.batch_id: e for e in claimed}["bf-1"] == made[1]
    store.mark_published(["bf-0", "bf-1", "bf-2"], at(7))
    # Already published: not added, so not published twice.
    assert store.enqueue(made) == []
    assert store.pending_count() == 0
    assert store.counters() == {"emitted:backfill": 3}


# --- counters and restarts ------------------------------------------------------------------


def test_counters_add_up(store: BatchStore) -> None:
    store.add_counters(Counter({"dropped:bucket": 2, "dropped:ignored": 1}))
    store.add_counters(Counter({"dropped:bucket": 3}))
    ingest(store, event("a/b/1.csv", 0))
    assert store.counters() == {"accepted": 1, "dropped:bucket": 5, "dropped:ignored": 1}


def test_state_survives_a_restart(backend: str, reopen: OpenStore) -> None:
    persistent(backend)
    first = reopen()
    original = event("a/b/1.csv", 0, sequencer="05")
    ingest(first, original, event("c/d/1.csv", 1))
    [emission] = ingest(first, *(event(f"e/f/{n}.csv", 2) for n in range(3)))
    before = (first.open_batches(), first.counters(), first.pending_count(), first.next_due())
    first.close()
    second = reopen()
    assert (
        second.open_batches(),
        second.counters(),
        second.pending_count(),
        second.next_due(),
    ) == before
    # The outbox, the dedupe identities and the sequencers came back too.
    assert second.claim_pending(at(5), timedelta(seconds=30)) == [emission]
    ingest(second, RoutedEvent(original.event, original.prefix, at(3)))
    ingest(second, event("a/b/1.csv", 4, "deleted", sequencer="04"))
    assert second.counters()["duplicate"] == 1
    assert second.counters()["stale"] == 1


# --- the same stream gives the same result on every backend ---------------------------------


def random_stream(seed: int, size: int) -> list[RoutedEvent]:
    rng = random.Random(seed)
    events: list[RoutedEvent] = []
    moment = 0.0
    for n in range(size):
        moment += rng.choice([0, 0.5, 1, 5, 20, 90])
        key = f"p{rng.randrange(6)}/x/{rng.randrange(8)}.csv"
        kind: Kind = "deleted" if rng.random() < 0.2 else "created"
        if events and rng.random() < 0.1:  # a re-delivery of an earlier event
            old = rng.choice(events).event
            events.append(RoutedEvent(old, "/".join(old.key.split("/")[:2]) + "/", at(moment)))
            continue
        events.append(event(key, moment, kind, sequencer=f"{n:06X}"))
    return events


def play(store: BatchStore, events: list[RoutedEvent], chunk: int) -> list[Emission]:
    emitted: list[Emission] = []
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        emitted += store.ingest(part, RULES).emissions
        emitted += store.close_due(part[-1].arrived, RULES)
    emitted += store.close_due(at(10**7), RULES)
    return emitted


@pytest.mark.parametrize("chunk", [1, 7, 500])
def test_a_random_stream_matches_the_memory_store(store: BatchStore, chunk: int) -> None:
    events = random_stream(seed=chunk, size=400)
    reference = open_store("memory://")
    expected = play(reference, events, chunk)
    assert play(store, events, chunk) == expected
    assert store.counters() == reference.counters()


def test_a_sweep_reschedules_batches_the_changed_thresholds_no_longer_make_due(
    store: BatchStore,
) -> None:
    ingest(store, event("a/b/1.csv", 0))
    assert store.next_due() == at(60)
    longer = dataclasses.replace(RULES, threshold_duration=timedelta(seconds=600))
    # Restarted with a longer duration: not due at the old time, and the store says when it is.
    assert store.close_due(at(61), longer) == []
    assert store.next_due() == at(600)
    [emission] = store.close_due(at(600), longer)
    assert (emission.emitted_at, emission.trigger) == (at(600), "duration")
