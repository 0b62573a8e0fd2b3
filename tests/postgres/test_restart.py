"""PostgreSQL restarts in the middle of a stream: the store reconnects, nothing is lost or doubled.

The test starts its own throwaway cluster (``initdb`` into a temporary folder, a free port),
restarts that one, and removes it: it never touches a server it did not start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edp.core import Emission, RoutedEvent, Rules, emission_order
from edp.events import ObjectEvent
from edp.store import BatchStore, open_store
from edp.store.postgres import PostgresStore
from tests.pgcluster import throwaway_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

T0 = datetime(2024, 8, 1, tzinfo=UTC)
RULES = Rules(threshold_count=10, threshold_duration=timedelta(seconds=30))
CHUNK = 100


def stream(size: int) -> list[RoutedEvent]:
    return [
        RoutedEvent(
            ObjectEvent("lab", f"p{n % 37}/run/{n}.dat", "created", T0, sequencer=f"{n + 1:010X}"),
            f"p{n % 37}/run/",
            T0 + timedelta(milliseconds=20 * n),
        )
        for n in range(size)
    ]


def play(
    store: BatchStore,
    events: list[RoutedEvent],
    between: Callable[[int], None] = lambda chunk: None,
) -> list[Emission]:
    emitted: list[Emission] = []
    for number, start in enumerate(range(0, len(events), CHUNK)):
        between(number)
        part = events[start : start + CHUNK]
        emitted += store.ingest(part, RULES).emissions
        emitted += store.close_due(part[-1].arrived, RULES)
        claimed = store.claim_pending(part[-1].arrived, timedelta(minutes=5))
        store.mark_published([e.batch_id for e in claimed], part[-1].arrived)
    end = events[-1].arrived + timedelta(hours=1)
    emitted += store.close_due(end, RULES)
    store.mark_published([e.batch_id for e in store.claim_pending(end, timedelta(minutes=5))], end)
    return sorted(emitted, key=emission_order)


def test_a_server_restart_mid_stream_loses_and_doubles_nothing() -> None:
    events = stream(8_000)
    reference = open_store("memory://")
    expected = play(reference, events)

    with throwaway_cluster() as cluster:
        store = PostgresStore(cluster.url)
        restarted = threading.Event()

        def restart() -> None:
            cluster.restart()
            restarted.set()

        thread = threading.Thread(target=restart)

        def between(chunk: int) -> None:
            if chunk == 10:  # the restart starts while chunks keep coming...
                thread.start()
            elif 10 < chunk < 60:
                time.sleep(0.01)
            elif chunk == 60:  # ...and the rest of the stream comes after it, whatever the speed
                restarted.wait(timeout=120)

        try:
            emitted = play(store, events, between)
            thread.join(timeout=120)
            assert restarted.is_set(), "the restart did not finish during the stream"
            assert store.reconnects >= 1, "the stream finished before the restart hit it"
            assert emitted == expected
            assert store.published() == expected
            assert store.counters() == reference.counters()
            assert store.pending_count() == 0 and store.open_batches() == []
        finally:
            if thread.is_alive():
                thread.join(timeout=120)
            store.close()


def test_the_throwaway_cluster_is_gone_afterwards() -> None:
    with throwaway_cluster() as cluster:
        psycopg.connect(cluster.url, connect_timeout=5).close()
        data, port = cluster.data, cluster.port
        assert port != 5432
    assert not data.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.url, connect_timeout=2).close()
