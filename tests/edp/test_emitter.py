"""The emitter's front door: accept (raw messages -> stored, or rejected with a reason) and sweep
(close due -> publish -> purge), and the entry points that only call them."""

from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from edp.clock import FixedClock
from edp.core import Changes, RoutedEvent, Rules
from edp.emitter import Emitter
from edp.errors import StoreError
from edp.publisher import Publisher
from edp.settings import Settings
from edp.store import BatchStore, open_store
from edp.store.memory import MemoryStore
from tests.helpers import at, eb_event

EDP = Path(__file__).resolve().parents[2] / "edp"


class RefusingStore(MemoryStore):
    """Refuses any transaction holding a key with 'refuse' in it."""

    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        if any("refuse" in r.event.key for r in events):
            raise StoreError("value refused by the database")
        return super()._apply(events, rules, dropped)


def test_accept_stores_the_good_messages_and_names_each_reject_with_its_reason() -> None:
    store = RefusingStore()
    emitter = Emitter(Settings(database_url="memory://", threshold_count=2), store)
    messages = [
        ("m1", json.dumps(eb_event("lab/run-1/a.csv", 0))),
        ("m2", "not json"),
        ("m3", json.dumps(eb_event("lab/refuse/b.csv", 1))),
        ("m4", json.dumps(eb_event("lab/run-1/c.csv", 2))),
    ]

    accepted = emitter.accept(messages, arrived=at(5))

    assert accepted.stored == ["m1", "m4"] and accepted.events == 2
    assert [(r.key, r.unstored) for r in accepted.rejects] == [("m2", False), ("m3", True)]
    assert "not JSON" in accepted.rejects[0].reason
    assert accepted.rejects[1].reason == "not stored: value refused by the database"
    assert all("\n" not in r.reason for r in accepted.rejects)
    # The two good ones closed their batch by count: it waits in the outbox.
    assert [e.count for e in accepted.outcome.emissions] == [2]
    assert store.pending_count() == 1 and store.counters()["accepted"] == 2


def test_accept_raises_when_the_store_takes_nothing() -> None:
    emitter = Emitter(Settings(database_url="memory://"), RefusingStore())
    with pytest.raises(StoreError):
        emitter.accept(
            [("m1", eb_event("lab/refuse/a.csv")), ("m2", eb_event("lab/refuse/b.csv"))], None
        )


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_dropped_counters_are_written_in_the_events_own_transaction(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'edp.db'}"
    store: BatchStore = open_store(url)
    settings = Settings(database_url=url, buckets=("bkt",))

    def no_second_transaction(counts: Counter[str]) -> None:
        raise AssertionError("dropped counters written in a transaction of their own")

    monkeypatch.setattr(store, "add_counters", no_second_transaction)
    in_scope = eb_event("lab/run-1/a.csv", 0)
    other_bucket = eb_event("lab/run-1/b.csv", 1, bucket="elsewhere")
    accepted = Emitter(settings, store).accept([(1, in_scope), (2, other_bucket)], at(2))

    assert accepted.stored == [1, 2] and not accepted.rejects
    counters = store.counters()
    assert counters["accepted"] == 1
    assert sum(n for name, n in counters.items() if name.startswith("dropped:")) == 1
    store.close()


@mock_aws
def test_sweep_closes_publishes_and_purges_and_its_report_carries_the_batches() -> None:
    events = boto3.client("events", region_name="us-east-1")
    clock = FixedClock(at(0))
    store = MemoryStore()
    emitter = Emitter(Settings(database_url="memory://", threshold_duration=60), store)
    emitter.accept([(1, eb_event("lab/run-1/a.csv", 0)), (2, eb_event("lab/run-2/a.csv", 0))], None)
    publisher = Publisher(lambda: events, "default", sleep=lambda s: None)

    assert emitter.sweep(publisher, clock).closed == []  # nothing due yet
    clock.advance(61)
    swept = emitter.sweep(publisher, clock)

    assert [e.prefix for e in swept.closed] == ["lab/run-1/", "lab/run-2/"]
    assert (swept.published, swept.failed, swept.purged) == (2, 0, 0)
    assert sorted(b.emission.prefix for b in swept.publish.batches) == ["lab/run-1/", "lab/run-2/"]
    assert all(b.at == clock() for b in swept.publish.batches)
    assert store.pending_count() == 0
    assert sorted(e.batch_id for e in store.published()) == sorted(swept.publish.published)
    assert emitter.sweep(publisher, clock, purge=False).purged is None


# What only the emitter (or a store's own code) may call on a store.
STORE_CALLS = {
    "ingest",
    "close_due",
    "claim_pending",
    "mark_published",
    "release",
    "purge",
    "add_counters",
    "next_due",
    "open_batches",
    "pending_count",
    "transaction",
}
ENTRY_POINTS = ["handlers.py", "service.py", "simulate.py", "run.py"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_entry_points_do_not_reach_past_the_emitter(module: str) -> None:
    tree = ast.parse((EDP / module).read_text(encoding="utf-8"))
    reached = [
        f"line {node.lineno}: .{node.func.attr}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in STORE_CALLS
        and isinstance(node.func.value, ast.Attribute | ast.Name)
        and (getattr(node.func.value, "attr", None) or getattr(node.func.value, "id", None))
        == "store"
    ]
    assert reached == []


def test_the_core_imports_nothing_but_events_and_counter_names() -> None:
    tree = ast.parse((EDP / "core.py").read_text(encoding="utf-8"))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edp")
    }
    imported |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith("edp")
    }
    assert imported <= {"edp.events", "edp.counters"}
