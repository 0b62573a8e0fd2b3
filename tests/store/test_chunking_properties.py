"""Property: the same stream gives the same result whatever the chunk boundaries, on every store.

A stream with re-deliveries (at once, and later: inside and past a short dedupe window) is played
in one chunk and in random chunks, each chunk one store transaction followed by a sweep at its
last event, as `edp simulate` and the services do. Emissions (ids, counts, triggers, times) and
counters must be identical: a batch closed inside a chunk starts its dedupe window right there,
as one closed between chunks does.

The default example count keeps the suite fast; ``EDP_PROPERTY_EXAMPLES=2000`` runs it long.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edp.core import Emission, RoutedEvent, Rules, emission_order
from edp.events import ObjectEvent
from edp.store import BatchStore, open_store

T0 = datetime(2024, 8, 1, tzinfo=UTC)
RULES = Rules(
    threshold_count=3,
    threshold_duration=timedelta(seconds=120),
    dedupe_window=timedelta(seconds=150),
)
EXAMPLES = int(os.environ.get("EDP_PROPERTY_EXAMPLES", "40"))

step = st.tuples(
    st.integers(0, 3),  # prefix
    st.integers(0, 4),  # key within the prefix
    st.sampled_from(["created", "created", "created", "deleted"]),
    st.integers(0, 200),  # seconds since the previous event
    st.integers(0, 3),  # 0: no sequencer (the event id tells deliveries apart)
    st.integers(0, 3),  # 1: re-delivered at once; 2: one from 4 steps back re-delivered now
)
Step = tuple[int, int, str, int, int, int]


def build_stream(steps: list[Step], bucket: str, start: datetime = T0) -> list[RoutedEvent]:
    events: list[RoutedEvent] = []
    now = start
    for counter, (prefix, key, kind, delta, seq, dup) in enumerate(steps, start=1):
        now += timedelta(seconds=delta)
        event = ObjectEvent(
            bucket,
            f"lab/p{prefix}/f{key}.csv",
            kind,  # type: ignore[arg-type]
            now,
            sequencer=f"{counter:08X}" if seq else None,
            event_id=f"ev-{counter}",
        )
        routed = RoutedEvent(event, f"lab/p{prefix}/", now)
        events.append(routed)
        if dup == 1:
            events.append(routed)
        elif dup == 2 and len(events) > 4:
            events.append(RoutedEvent(events[-5].event, events[-5].prefix, now))
    return events


def play(store: BatchStore, events: list[RoutedEvent], cuts: list[int]) -> list[Emission]:
    emitted: list[Emission] = []
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        chunk = events[start:end]
        emitted += store.ingest(chunk, RULES).emissions
        emitted += store.close_due(chunk[-1].arrived, RULES)
    emitted += store.close_due(events[-1].arrived + timedelta(days=1), RULES)
    return sorted(emitted, key=emission_order)


def counters_of(store: BatchStore, before: dict[str, int]) -> dict[str, int]:
    after = store.counters()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.sqlite"
    else:
        yield request.getfixturevalue("pg_url")


# The 19-event stream of the fault trial: 17 accepted / 4 batches in one chunk, 16 / 3 in chunks
# of 7, because a batch closed in a chunk did not start its dedupe window until the chunk ended.
TRIAL: list[Step] = [
    (0, 0, "created", 0, 0, 0),
    (0, 1, "created", 10, 0, 0),
    (0, 2, "created", 10, 0, 2),
    (0, 3, "created", 10, 0, 0),
    (0, 4, "created", 10, 0, 0),
    (0, 0, "created", 10, 0, 2),
    (1, 0, "created", 160, 0, 0),
    (0, 1, "created", 10, 0, 2),
    (1, 1, "created", 10, 0, 2),
    (1, 2, "created", 10, 0, 2),
    (2, 0, "created", 10, 0, 0),
    (2, 1, "created", 10, 0, 2),
    (2, 2, "created", 10, 0, 2),
    (3, 0, "created", 10, 0, 2),
    (3, 1, "created", 10, 0, 0),
]


# Found by the property test: an identity seen again after its dedupe window ended joined a new
# batch, but kept the old window's end loaded from the store, so a third delivery in the same
# chunk was accepted again (only when the earlier batch had closed in an earlier chunk).
SEEN_AGAIN: list[Step] = [
    *[(0, 0, "created", 0, 0, 0)] * 3,
    *[(0, 0, "created", 0, 0, 1)] * 3,
    (0, 1, "created", 0, 0, 0),
    (0, 2, "created", 0, 0, 1),
    (0, 0, "created", 0, 0, 0),
    (0, 0, "created", 150, 0, 2),
    *[(0, 0, "created", 0, 0, 0)] * 3,
    (0, 0, "created", 0, 0, 2),
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(steps=TRIAL, cuts=[7, 14, 21])
@example(steps=SEEN_AGAIN, cuts=[11])
@given(
    steps=st.lists(step, min_size=1, max_size=50),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_results_do_not_depend_on_chunk_boundaries(
    url: str, steps: list[Step], cuts: list[int]
) -> None:
    # One store per test (PostgreSQL schemas are per test): each example uses its own bucket, and
    # starts two days after the previous one (a store's ingest clock never goes backwards).
    bucket = f"b{uuid.uuid4().hex[:10]}"
    start = T0 + timedelta(days=2 * next(examples))
    events = build_stream(steps, bucket, start)
    reference = open_store("memory://")
    expected = play(reference, events, [])
    expected_counters = reference.counters()

    store = stores.setdefault(url, open_store(url))
    before = store.counters()
    assert play(store, events, cuts) == expected
    assert counters_of(store, before) == expected_counters
    # Every delivery is counted once: accepted, duplicate or stale.
    counted = sum(expected_counters.get(k, 0) for k in ("accepted", "duplicate", "stale"))
    assert counted == len(events)


stores: dict[str, BatchStore] = {}
examples = itertools.count()


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    for store in stores.values():
        store.close()
    stores.clear()
