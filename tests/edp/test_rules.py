"""Every batching rule of SEMANTICS.md sections 3-4, with fixed times, on the memory and SQLite stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edp.core import Emission
from edp.emitter import Emitter
from edp.events import parse_message
from edp.settings import Settings
from edp.store import open_store
from tests.helpers import at, eb_event


class Harness:
    """Feeds events one at a time, sweeping due batches first, like `edp simulate` does."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        self.emitted: list[Emission] = []

    def feed(self, *events: dict[str, Any]) -> list[Emission]:
        new: list[Emission] = []
        for event in events:
            parsed = parse_message(event)
            moment = parsed.events[0].event_time
            new += self.emitter.close_due(moment)
            new += self.emitter.ingest([parsed], arrived=None).emissions
        self.emitted += new
        return new

    def sweep(self, seconds: float) -> list[Emission]:
        new = self.emitter.close_due(at(seconds))
        self.emitted += new
        return new

    @property
    def counters(self) -> dict[str, int]:
        return self.emitter.store.counters()


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    stores: list[Any] = []

    def factory(**settings: Any) -> Harness:
        url = (
            "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/s{len(stores)}.db"
        )
        store = open_store(url)
        stores.append(store)
        return Harness(Emitter(Settings(database_url=url, **settings), store))

    yield factory
    for store in stores:
        store.close()


def test_count_trigger_fires_at_the_event_that_reaches_the_threshold(make: Any) -> None:
    h = make(threshold_count=3)
    assert h.feed(eb_event("i/e/a", 0), eb_event("i/e/b", 1)) == []
    (emission,) = h.feed(eb_event("i/e/c", 2))
    assert (emission.trigger, emission.count, emission.prefix) == ("count", 3, "i/e/")
    assert emission.emitted_at == at(2)
    assert emission.first_event_time == at(0) and emission.last_event_time == at(2)
    assert h.emitter.store.open_batches() == []


def test_duration_trigger_fires_exactly_at_last_activity_plus_duration(make: Any) -> None:
    h = make(threshold_duration=300)
    h.feed(eb_event("i/e/a", 0), eb_event("i/e/b", 100))
    assert h.sweep(399.999) == []
    (emission,) = h.sweep(10_000)
    assert (emission.trigger, emission.count, emission.emitted_at) == ("duration", 2, at(400))


def test_rewriting_a_key_does_not_add_to_the_count_but_extends_the_batch(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(eb_event("i/e/a", 0), eb_event("i/e/a", 5))
    (emission,) = h.sweep(100)
    assert emission.count == 1 and emission.emitted_at == at(15)


def test_deletes_are_netted_out_of_the_created_set(make: Any) -> None:
    h = make(threshold_count=2, threshold_duration=10)
    h.feed(eb_event("i/e/a", 0), eb_event("i/e/a", 1, kind="deleted"), eb_event("i/e/b", 2))
    (emission,) = h.sweep(100)
    assert (emission.count, emission.trigger, emission.emitted_at) == (1, "duration", at(12))


def test_a_batch_of_only_deletes_is_emitted_with_count_zero(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(eb_event("i/e/old.csv", 0, kind="deleted"))
    (emission,) = h.sweep(60)
    assert (emission.count, emission.trigger) == (0, "duration")


def test_duplicate_changes_nothing_not_even_last_activity(make: Any) -> None:
    h = make(threshold_duration=10)
    first = eb_event("i/e/a", 0, sequencer="0A", version_id="v1")
    h.feed(first, {**first, "time": "2022-12-08T20:00:08Z"})
    (emission,) = h.sweep(100)
    assert emission.emitted_at == at(10) and emission.count == 1
    assert h.counters["duplicate"] == 1 and h.counters["accepted"] == 1


def test_duplicate_by_event_id_when_no_version_or_sequencer(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(eb_event("i/e/a", 0, event_id="x"), eb_event("i/e/a", 1, event_id="x"))
    h.feed(eb_event("i/e/a", 2), eb_event("i/e/a", 3))  # no id at all: each counts as new
    assert h.counters["duplicate"] == 1 and h.counters["accepted"] == 3


def test_duplicates_are_recognised_for_the_window_after_emission_then_forgotten(make: Any) -> None:
    h = make(threshold_duration=10, dedupe_window=3600)
    event = eb_event("i/e/a", 0, sequencer="01")
    h.feed(event)
    assert len(h.sweep(20)) == 1
    late = {**event, "time": "2022-12-08T20:30:00Z"}
    h.feed(late)
    assert h.emitter.store.open_batches() == [] and h.counters["duplicate"] == 1
    h.emitter.store.purge(at(10 + 3600), timedelta(seconds=3600))
    later = {**event, "time": "2022-12-08T21:30:11Z"}
    h.feed(later)
    assert len(h.emitter.store.open_batches()) == 1


def test_stale_sequencer_changes_nothing(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(eb_event("i/e/a", 0, kind="deleted", sequencer="00617F0837B4B6E7A0"))
    h.feed(eb_event("i/e/a", 1, sequencer="00617F08299329D189"))  # older put arrives late
    (emission,) = h.sweep(100)
    assert emission.count == 0 and emission.emitted_at == at(10)
    assert h.counters["stale"] == 1


def test_sequencers_compare_after_right_padding_with_zeros(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(eb_event("i/e/a", 0, sequencer="0A1"))
    h.feed(eb_event("i/e/a", 1, kind="deleted", sequencer="0a"))  # "0A0" < "0A1": stale
    assert h.counters["stale"] == 1
    h.feed(eb_event("i/e/a", 2, kind="deleted", sequencer="0A10"))  # equal after padding: applied
    assert h.counters.get("stale") == 1


def test_ingest_clock_never_goes_backwards(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(eb_event("i/e/a", 100), eb_event("i/e/b", 50))  # late event applied at 100
    (emission,) = h.sweep(1000)
    assert emission.emitted_at == at(110)
    assert emission.last_event_time == at(50)


def test_a_due_batch_is_emitted_before_the_next_event_opens_a_new_one(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(eb_event("i/e/a", 0))
    emitted = h.feed(eb_event("i/e/b", 10))  # due at exactly 10: emitted first
    assert [(e.count, e.emitted_at) for e in emitted] == [(1, at(10))]
    (second,) = h.sweep(100)
    assert second.count == 1 and second.batch_id != emitted[0].batch_id


def test_due_batch_of_the_same_prefix_is_closed_inside_one_ingest(make: Any) -> None:
    h = make(threshold_duration=10)
    parsed = [parse_message(eb_event("i/e/a", 0)), parse_message(eb_event("i/e/b", 30))]
    outcome = h.emitter.ingest(parsed, arrived=None)
    assert [(e.count, e.emitted_at) for e in outcome.emissions] == [(1, at(10))]


def test_marker_file_emits_right_after_it_is_applied(make: Any) -> None:
    h = make(marker_files=("_SUCCESS", "manifest.*"))
    h.feed(eb_event("i/e/a.csv", 0))
    (emission,) = h.feed(eb_event("i/e/sub/_SUCCESS", 3))
    assert (emission.trigger, emission.count, emission.emitted_at) == ("marker", 2, at(3))
    assert h.feed(eb_event("i/f/manifest.json", 4))[0].trigger == "marker"


def test_markers_are_off_by_default(make: Any) -> None:
    h = make()
    assert h.feed(eb_event("i/e/_SUCCESS", 0)) == []


def test_max_age_emits_a_batch_that_never_goes_quiet(make: Any) -> None:
    h = make(threshold_duration=60, max_age=100, threshold_count=1000)
    for second in range(0, 100, 30):
        h.feed(eb_event(f"i/e/{second}", second))
    emitted = h.feed(eb_event("i/e/late", 101))
    assert [(e.trigger, e.count, e.emitted_at) for e in emitted] == [("max-age", 4, at(100))]


def test_prefixes_and_buckets_batch_separately_and_order_by_bucket_then_prefix(make: Any) -> None:
    h = make(threshold_duration=10)
    h.feed(
        eb_event("z/1/a", 0, bucket="bkt-b"),
        eb_event("z/1/a", 0),
        eb_event("a/1/a", 0),
    )
    emitted = h.sweep(100)
    assert [(e.bucket, e.prefix) for e in emitted] == [
        ("bkt", "a/1/"),
        ("bkt", "z/1/"),
        ("bkt-b", "z/1/"),
    ]
    assert {e.emitted_at for e in emitted} == {at(10)}


def test_batch_ids_are_deterministic_across_stores(make: Any) -> None:
    first, second = make(threshold_count=2), make(threshold_count=2)
    stream = [eb_event("i/e/a", 0), eb_event("i/e/b", 1)]
    assert first.feed(*stream)[0].batch_id == second.feed(*stream)[0].batch_id


def test_scope_drops_are_counted_by_reason(make: Any) -> None:
    h = make(buckets=("bkt",), ignore_patterns=("raw/*", "scratch"))
    h.feed(
        eb_event("i/e/a", 0, bucket="other"),
        eb_event("i/e/", 0),
        eb_event(".quilt/packages/x", 0),
        eb_event("raw/deep/x.csv", 0),
        eb_event("scratch-pad/x/y", 0),
        eb_event("shallow.csv", 0),
        eb_event("i/e/ok", 0),
    )
    counters = h.counters
    assert {k: v for k, v in counters.items() if k.startswith("dropped:")} == {
        "dropped:bucket": 1,
        "dropped:folder-marker": 1,
        "dropped:quilt-registry": 1,
        "dropped:ignored": 2,
        "dropped:too-shallow": 1,
    }
    assert counters["accepted"] == 1
