"""Parallel writers and emitters on one PostgreSQL database: nothing lost, doubled or deadlocked.

8 writer threads and 4 emitter threads, each with its own store object (its own connection),
share one database. Two checks:

* ``test_parallel_run_equals_the_single_threaded_run`` - 50,000 events in 20 rounds. Within a
  round every event arrives at the same instant and each prefix's events go to one writer, in
  order (as an SQS FIFO queue grouped by prefix would deliver them); rounds are separated by a
  barrier. Emitters sweep and publish all the time, concurrently with the writers. Under those
  conditions the order in which writers and emitters interleave cannot change the result, so the
  published batches (ids, counts, triggers, times) and the counters must equal those of the same
  rounds played on one thread. What differs between writers - which prefixes they hold - is what
  the locking must get right.
* ``test_writers_sharing_prefixes_lose_and_double_nothing`` - writers that share every prefix, in
  arbitrary interleavings: batch boundaries then depend on timing, so only the order-insensitive
  facts are compared: every event accepted exactly once, every re-delivery counted as a duplicate,
  the emitted counts add up to the number of distinct files, every batch published exactly once.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from edp.core import Emission, RoutedEvent, Rules, emission_order
from edp.events import Kind, ObjectEvent
from edp.store import BatchStore, open_store
from edp.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

T0 = datetime(2024, 6, 1, tzinfo=UTC)
ROUND = timedelta(seconds=60)
RULES = Rules(
    threshold_count=20,
    threshold_duration=timedelta(seconds=150),  # a prefix quiet for 3 rounds is emitted
    dedupe_window=timedelta(hours=6),
)
WRITERS = 8
EMITTERS = 4
CHUNK = 250
LEASE = timedelta(days=1)  # longer than the whole run: a claim is never taken over


class Clock:
    """The virtual time the emitters sweep at, moved by the main thread between rounds."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.writers_done = threading.Event()
        self.stop = threading.Event()  # the test is over (or failed): emitters return at once


def make_rounds(events: int, rounds: int, prefixes: int, seed: int) -> list[list[RoutedEvent]]:
    """Rounds of events; each event's ``arrived`` is its round's instant."""
    rng = random.Random(seed)
    places = [(f"bucket-{p % 2}", f"inst-{p}/run/") for p in range(prefixes)]
    latest: dict[tuple[str, str], int] = {}
    history: dict[tuple[str, str], list[ObjectEvent]] = {}
    result: list[list[RoutedEvent]] = []
    per_round = events // rounds
    for r in range(rounds):
        moment = T0 + r * ROUND
        # Each round only some prefixes are busy, so others go quiet and close by duration.
        busy = rng.sample(places, k=prefixes // 3)
        batch: list[RoutedEvent] = []
        for n in range(per_round):
            bucket, prefix = busy[n % len(busy)]
            past = history.setdefault((bucket, prefix), [])
            roll = rng.random()
            if past and roll < 0.08:  # a re-delivery
                obj = rng.choice(past)
            elif past and roll < 0.11:  # an older sequencer for a known key: stale
                old = rng.choice(past)
                obj = ObjectEvent(
                    bucket, old.key, "deleted", moment, sequencer=f"{0:012X}", event_id=None
                )
            else:
                key = f"{prefix}f{rng.randrange(40)}.dat"
                kind: Kind = "deleted" if roll > 0.9 else "created"
                seq = latest[(bucket, key)] = latest.get((bucket, key), 0) + 1
                obj = ObjectEvent(bucket, key, kind, moment, sequencer=f"{seq:012X}")
                past.append(obj)
            batch.append(RoutedEvent(obj, prefix, moment))
        result.append(batch)
    return result


def single_threaded(rounds: list[list[RoutedEvent]], end: datetime) -> tuple[list, dict]:
    store = open_store("memory://")
    emitted: list[Emission] = []
    for batch in rounds:
        for start in range(0, len(batch), CHUNK):
            emitted += store.ingest(batch[start : start + CHUNK], RULES).emissions
        emitted += store.close_due(batch[0].arrived, RULES)
    emitted += store.close_due(end, RULES)
    return sorted(emitted, key=emission_order), store.counters()


def emitter_loop(
    store: BatchStore, clock: Clock, published: list[str], failures: list[BaseException]
) -> None:
    try:
        while not clock.stop.is_set():
            now = clock.now
            closed = store.close_due(now, RULES, limit=25)
            claimed = store.claim_pending(now, LEASE, limit=25)
            if claimed:
                store.mark_published([e.batch_id for e in claimed], now)
                published.extend(e.batch_id for e in claimed)
            if not closed and not claimed:
                if (
                    clock.writers_done.is_set()
                    and store.next_due() is None
                    and store.pending_count() == 0
                ):
                    return
                time.sleep(0.002)
    except BaseException as err:
        failures.append(err)


def stop_and_close(
    clock: Clock, threads: list[threading.Thread], stores: list[PostgresStore]
) -> None:
    """Stop the emitter threads before closing their stores, also when the test failed."""
    clock.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()


def run_threads(targets: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads


def test_parallel_run_equals_the_single_threaded_run(pg_url: str) -> None:
    rounds = make_rounds(events=50_000, rounds=20, prefixes=600, seed=3)
    end = rounds[-1][0].arrived + timedelta(hours=2)
    expected, expected_counters = single_threaded(rounds, end)
    assert len(expected) > 1000  # the stream exercises count and duration closes...
    assert {e.trigger for e in expected} == {"count", "duration"}
    assert expected_counters["duplicate"] > 1000 and expected_counters["stale"] > 100

    writers = [PostgresStore(pg_url) for _ in range(WRITERS)]
    emitters = [PostgresStore(pg_url) for _ in range(EMITTERS)]
    clock = Clock(T0)
    failures: list[BaseException] = []
    published: list[list[str]] = [[] for _ in emitters]
    emitter_threads = run_threads(
        [
            partial(emitter_loop, s, clock, p, failures)
            for s, p in zip(emitters, published, strict=True)
        ]
    )
    try:
        for batch in rounds:
            clock.now = batch[0].arrived
            shares: list[list[RoutedEvent]] = [[] for _ in writers]
            for routed in batch:  # a prefix always goes to the same writer, in order
                shares[hash((routed.event.bucket, routed.prefix)) % WRITERS].append(routed)

            def write(store: BatchStore, share: list[RoutedEvent]) -> None:
                try:
                    for start in range(0, len(share), CHUNK):
                        store.ingest(share[start : start + CHUNK], RULES)
                except BaseException as err:
                    failures.append(err)

            threads = run_threads(
                [partial(write, s, sh) for s, sh in zip(writers, shares, strict=True)]
            )
            for thread in threads:  # the barrier between rounds
                thread.join(timeout=120)
            assert not failures, failures
        clock.now = end
        clock.writers_done.set()
        for thread in emitter_threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "an emitter did not finish: deadlock?"
        assert not failures, failures

        check = writers[0]
        every_publish = [batch_id for part in published for batch_id in part]
        assert len(every_publish) == len(set(every_publish)), "a batch was published twice"
        assert sorted(every_publish) == sorted(e.batch_id for e in expected)
        assert check.published() == expected
        assert check.counters() == expected_counters
        assert check.open_batches() == [] and check.pending_count() == 0
        # The emitters did the sweeping concurrently: more than one of them closed batches.
        assert sum(1 for part in published if part) > 1
        assert sum(s.rollback_retries for s in writers + emitters) == 0, "deadlocks were retried"
    finally:
        stop_and_close(clock, emitter_threads, writers + emitters)


def test_writers_sharing_prefixes_lose_and_double_nothing(pg_url: str) -> None:
    rng = random.Random(11)
    files = [(f"shared-{n % 30}/x/", f"file-{n}.bin") for n in range(12_000)]
    originals = [
        ObjectEvent("lab", prefix + name, "created", T0, event_id=f"req-{n}")
        for n, (prefix, name) in enumerate(files)
    ]
    redelivered = rng.sample(originals, k=3_000)
    stream = originals + redelivered
    rng.shuffle(stream)
    shares: list[list[RoutedEvent]] = [[] for _ in range(WRITERS)]
    for n, obj in enumerate(stream):  # any writer may get any prefix
        moment = T0 + timedelta(milliseconds=n)
        shares[rng.randrange(WRITERS)].append(
            RoutedEvent(obj, obj.key.rsplit("/", 1)[0] + "/", moment)
        )

    writers = [PostgresStore(pg_url) for _ in range(WRITERS)]
    emitters = [PostgresStore(pg_url) for _ in range(EMITTERS)]
    clock = Clock(T0 + timedelta(hours=1))  # far enough that anything not full is due
    failures: list[BaseException] = []
    published: list[list[str]] = [[] for _ in emitters]

    def write(store: BatchStore, share: list[RoutedEvent]) -> None:
        try:
            for start in range(0, len(share), 100):
                store.ingest(share[start : start + 100], RULES)
        except BaseException as err:
            failures.append(err)

    emitter_threads: list[threading.Thread] = []
    try:
        threads = run_threads(
            [partial(write, s, sh) for s, sh in zip(writers, shares, strict=True)]
        )
        emitter_threads = run_threads(
            [
                partial(emitter_loop, s, clock, p, failures)
                for s, p in zip(emitters, published, strict=True)
            ]
        )
        for thread in threads:
            thread.join(timeout=120)
        clock.writers_done.set()
        for thread in emitter_threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "an emitter did not finish: deadlock?"
        assert not failures, failures

        check = writers[0]
        counters = check.counters()
        assert counters["accepted"] == len(originals)
        assert counters["duplicate"] == len(redelivered)
        emissions = check.published()
        assert sum(e.count for e in emissions) == len(originals)
        per_prefix: Counter[str] = Counter()
        for e in emissions:
            per_prefix[e.prefix] += e.count
        assert per_prefix == Counter(prefix for prefix, _ in files)
        every_publish = [batch_id for part in published for batch_id in part]
        assert sorted(every_publish) == sorted(e.batch_id for e in emissions)
        assert len(set(every_publish)) == len(every_publish)
        assert check.open_batches() == [] and check.pending_count() == 0
        assert sum(s.rollback_retries for s in writers + emitters) == 0, "deadlocks were retried"
    finally:
        stop_and_close(clock, emitter_threads, writers + emitters)


def test_claims_whose_lease_ran_out_are_taken_over_and_nothing_is_lost(pg_url: str) -> None:
    """Emitters that publish slower than their (short) lease: other emitters take their claims
    over. Every batch still reaches the bus, a batch is re-sent only after its lease ran out, and
    the store ends with nothing pending."""
    setup = PostgresStore(pg_url)
    events = [
        RoutedEvent(
            ObjectEvent("lab", f"p{n}/x/f", "created", T0, event_id=f"e{n}"), f"p{n}/x/", T0
        )
        for n in range(400)
    ]
    expected = {e.batch_id for e in setup.ingest(events, Rules(threshold_count=1)).emissions}
    setup.close()
    lease = timedelta(milliseconds=30)
    sends: list[tuple[str, int, datetime, datetime]] = []  # (batch_id, emitter, claimed, sent)
    lock = threading.Lock()
    failures: list[BaseException] = []
    stop = threading.Event()

    def emitter(number: int, store: BatchStore) -> None:
        try:
            while not stop.is_set():
                claimed_at = datetime.now(UTC)
                claimed = store.claim_pending(claimed_at, lease, limit=10)
                if not claimed:
                    if store.pending_count() == 0:
                        return
                    time.sleep(0.005)
                    continue
                # Publishing takes longer than the lease half of the time.
                time.sleep(0.05 if number % 2 else 0.01)
                sent = datetime.now(UTC)
                with lock:
                    sends.extend((e.batch_id, number, claimed_at, sent) for e in claimed)
                store.mark_published([e.batch_id for e in claimed], sent)
        except BaseException as err:
            failures.append(err)

    stores = [PostgresStore(pg_url) for _ in range(EMITTERS)]
    threads = run_threads([partial(emitter, n, s) for n, s in enumerate(stores)])
    try:
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive()
        assert not failures, failures
        assert {batch_id for batch_id, *_ in sends} == expected
        per_batch: dict[str, list[tuple[int, datetime, datetime]]] = {}
        for batch_id, number, claimed_at, sent in sends:
            per_batch.setdefault(batch_id, []).append((number, claimed_at, sent))
        taken_over = {b: s for b, s in per_batch.items() if len({n for n, _, _ in s}) > 1}
        assert taken_over, "no claim was taken over: the leases never ran out"
        for copies in taken_over.values():
            copies.sort(key=lambda c: c[1])
            # The second emitter claimed it only after the first one's lease had ended.
            for (_, first_claim, _), (_, second_claim, _) in itertools.pairwise(copies):
                assert second_claim >= first_claim + lease
        assert stores[0].pending_count() == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for store in stores:
            store.close()
