"""EDP_EVENT_IDS_RELIABLE: emulators that repeat one sequencer and id for distinct writes."""

from __future__ import annotations

from typing import Any

from edp.emitter import Emitter
from edp.events import parse_message
from edp.settings import Settings
from edp.store.memory import MemoryStore
from tests.helpers import eb_event


def moto_like_writes() -> list[dict[str, object]]:
    """Three distinct writes, as moto reports them: same id, sequencer and version-id 'null'."""
    same: dict[str, Any] = {
        "sequencer": "0055AED6DCD90281E5",
        "version_id": "null",
        "event_id": "moto-id",
    }
    return [
        eb_event("lab/run-1/a.csv", 0, **same),
        eb_event("lab/run-1/a.csv", 30, **same),
        eb_event("lab/run-1/b.csv", 60, **same),
    ]


def ingest_all(settings: Settings) -> tuple[dict[str, int], str]:
    store = MemoryStore()
    emitter = Emitter(settings, store)
    for raw in moto_like_writes():
        emitter.ingest([parse_message(raw)], arrived=None)
    (batch,) = store.open_batches()
    return store.counters(), batch.last_activity.isoformat()


def test_by_default_identical_ids_are_duplicates_as_on_aws() -> None:
    counters, _ = ingest_all(Settings(database_url="memory://"))
    assert counters["accepted"] == 2 and counters["duplicate"] == 1


def test_unreliable_ids_make_every_write_count() -> None:
    counters, last = ingest_all(Settings(database_url="memory://", event_ids_reliable=False))
    assert counters["accepted"] == 3 and "duplicate" not in counters
    assert last == "2022-12-08T20:01:00+00:00"  # the quiet timer moved with every write


def test_the_setting_comes_from_the_env_var_or_the_flag() -> None:
    assert not Settings.from_sources(env={"EDP_EVENT_IDS_RELIABLE": "false"}).event_ids_reliable
    assert Settings.from_sources(env={}).event_ids_reliable
    from edp.cli import build_parser, settings_from_args

    args = build_parser().parse_args(["simulate", "--event-ids-unreliable"])
    assert not settings_from_args(args).event_ids_reliable
