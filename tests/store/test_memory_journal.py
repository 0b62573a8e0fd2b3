"""The memory store applies the rules to its own maps and journals every write: a chunk that fails
at any point must leave every map exactly as it was (not only what the contract test can see).

Property: a random stream is played in chunks; one chunk fails at a random event (a marker pattern
that raises on that event's file name). The store's internal state after the failure must equal,
map for map, its state before the chunk; and the store must then give the same output as a store
that never saw the failed chunk.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edp.core import RoutedEvent, Rules
from edp.events import ObjectEvent
from edp.store.memory import MemoryStore

T0 = datetime(2024, 8, 1, tzinfo=UTC)
RULES = Rules(
    threshold_count=3,
    threshold_duration=timedelta(seconds=120),
    dedupe_window=timedelta(seconds=150),
)


class _FailOn:
    """A marker pattern that raises on one file name, and matches "_DONE"."""

    def __init__(self, name: str) -> None:
        self.name = name

    def match(self, name: str) -> bool:
        if name == self.name:
            raise RuntimeError("the rules failed")
        return name == "_DONE"


def _state(store: MemoryStore) -> dict[str, Any]:
    """Every map of the store, copied (the due heap may keep extra entries: they are lower bounds
    that the store corrects when they reach the top, so only its valid entries count)."""
    state = {k: copy.deepcopy(v) for k, v in vars(store).items() if k not in ("_lock", "_due")}
    state["_next_due"] = store.next_due()
    return state


step = st.tuples(
    st.integers(0, 2),  # prefix
    st.sampled_from(["f0", "f1", "f2", "_DONE"]),
    st.sampled_from(["created", "created", "deleted"]),
    st.integers(0, 100),  # seconds since the previous event
    st.integers(0, 2),  # 0: no sequencer
)


def _stream(steps: list[tuple[int, str, str, int, int]], start: int) -> list[RoutedEvent]:
    events = []
    now = T0
    for n, (prefix, name, kind, delta, seq) in enumerate(steps, start=start):
        now += timedelta(seconds=delta)
        event = ObjectEvent(
            "bkt",
            f"lab/p{prefix}/{name}.csv" if name != "_DONE" else f"lab/p{prefix}/_DONE",
            kind,  # type: ignore[arg-type]
            now,
            sequencer=f"{n:06X}" if seq else None,
            event_id=f"ev-{n % 7}",  # re-used ids: some events are duplicates
        )
        events.append(RoutedEvent(event, f"lab/p{prefix}/", now))
    return events


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(step, max_size=25),
    failing=st.lists(step, min_size=1, max_size=25),
    fail_at=st.integers(0, 24),
)
def test_a_failed_chunk_leaves_every_map_as_it_was(
    before: list[tuple[int, str, str, int, int]],
    failing: list[tuple[int, str, str, int, int]],
    fail_at: int,
) -> None:
    history = _stream(before, 0)
    chunk = _stream(failing, len(before))
    # The chunk's events come after the history's (the ingest clock never goes backwards).
    offset = (history[-1].arrived - T0) if history else timedelta(0)
    chunk = [RoutedEvent(r.event, r.prefix, r.arrived + offset) for r in chunk]
    victim = chunk[fail_at % len(chunk)]
    boom = dataclasses.replace(victim.event, key=victim.prefix + "boom.csv")
    chunk[fail_at % len(chunk)] = RoutedEvent(boom, victim.prefix, victim.arrived)
    rules = dataclasses.replace(RULES, marker_patterns=(_FailOn("boom.csv"),))  # type: ignore[arg-type]

    store, untouched = MemoryStore(), MemoryStore()
    for one in (store, untouched):
        if history:
            one.ingest(history, rules)
    state = _state(store)
    try:
        store.ingest(chunk, rules)
    except RuntimeError:
        pass
    else:  # the failing event was a duplicate or stale: the rules never looked at its name
        return
    assert _state(store) == state
    # And it goes on as if the chunk had never come.
    rest = [r for r in chunk if r.event is not boom]
    if rest:
        assert store.ingest(rest, rules) == untouched.ingest(rest, rules)
    later = chunk[-1].arrived + timedelta(days=1)
    assert store.close_due(later, rules) == untouched.close_due(later, rules)
    assert store.counters() == untouched.counters()
