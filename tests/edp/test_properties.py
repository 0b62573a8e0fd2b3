"""Property tests: invariants of the batching rules on random event streams."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edp.emitter import Emitter
from edp.settings import Settings
from edp.simulate import simulate
from edp.store import open_store
from tests.helpers import eb_event, jsonl

step = st.tuples(
    st.integers(0, 3),  # prefix
    st.integers(0, 4),  # key within the prefix
    st.sampled_from(["created", "created", "created", "deleted"]),
    st.integers(-30, 200),  # seconds since the previous event (negative: arrives late)
    st.integers(0, 3),  # 0: no sequencer, else a sequencer bucket
    st.integers(0, 3),  # 1: re-deliver this event at once; 2: re-deliver one from 4 steps back, now
)
# A short dedupe window, so identities expire in the middle of streams (and of store chunks).
RULES: dict[str, Any] = {"threshold_count": 3, "threshold_duration": 120, "dedupe_window": 150}


def build_stream(steps: list[tuple[int, int, str, int, int, int]]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    now = 0
    for counter, (prefix, key, kind, delta, seq, dup) in enumerate(steps, start=1):
        now = max(0, now + delta)
        sequencer = f"{counter:08X}" if seq else None
        event = eb_event(
            f"lab/p{prefix}/f{key}.csv",
            now,
            kind=kind,
            sequencer=sequencer,
            event_id=f"ev-{counter}",
        )
        events.append(event)
        if dup == 1:
            events.append(event)
        elif dup == 2 and len(events) > 4:
            events.append({**events[-5], "time": event["time"]})
    return events


def run(events: list[dict[str, Any]], url: str, chunk: int | None = None) -> list[dict[str, Any]]:
    import edp.simulate as sim

    store = open_store(url)
    out, err = io.StringIO(), io.StringIO()
    old = sim.CHUNK_EVENTS
    if chunk is not None:
        sim.CHUNK_EVENTS = chunk
    try:
        assert (
            simulate(jsonl(*events), Emitter(Settings(database_url=url, **RULES), store), out, err)
            == 0
        )
        assert store.open_batches() == []
        counters = store.counters()
    finally:
        sim.CHUNK_EVENTS = old
        store.close()
    emitted = [json.loads(line) for line in out.getvalue().splitlines()]
    return [{"counters": counters}, *emitted]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=60))
def test_invariants_and_backend_equivalence(
    steps: list[tuple[int, int, str, int, int, int]],
) -> None:
    events = build_stream(steps)
    memory = run(events, "memory://")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = run(events, f"sqlite:///{Path(tmp) / 's.db'}", chunk=7)
    # The same stream gives the same output through the pure core and through SQLite (chunked).
    assert sqlite == memory
    counters, emitted = memory[0]["counters"], memory[1:]
    # No event counted twice: every delivery is accepted, a duplicate or stale, exactly once.
    assert counters.get("accepted", 0) + counters.get("duplicate", 0) + counters.get(
        "stale", 0
    ) == len(events)
    # Every batch that changed is emitted exactly once by the end of the stream.
    ids = [e["detail"]["batch_id"] for e in emitted]
    assert len(ids) == len(set(ids))
    assert sum(v for k, v in counters.items() if k.startswith("emitted:")) == len(emitted)
    assert counters.get("accepted", 0) == 0 or emitted
    # Emission times never go backwards, and same-instant emissions are in (bucket, prefix) order.
    order = [(e["time"], e["detail"]["bucket"], e["detail"]["prefix"]) for e in emitted]
    assert [o[0] for o in order] == sorted(o[0] for o in order)
    # A count can never exceed the distinct keys of the prefix, nor the count threshold.
    for event in emitted:
        assert 0 <= event["detail"]["count"] <= min(5, RULES["threshold_count"])
        if event["detail"]["trigger"] == "count":
            assert event["detail"]["count"] == RULES["threshold_count"]
