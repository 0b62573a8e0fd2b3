"""PostgreSQL restarts in the middle of a stream: the store reconnects, nothing is lost or doubled.

This restarts the shared test server (``pg_ctlcluster ... restart``), so it is short, runs on its
own, and waits for the server to be back before it ends.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from edp.core import Emission, RoutedEvent, Rules, emission_order
from edp.events import ObjectEvent
from edp.store import BatchStore, open_store
from edp.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

T0 = datetime(2024, 8, 1, tzinfo=UTC)
RULES = Rules(threshold_count=10, threshold_duration=timedelta(seconds=30))
CHUNK = 100


def local_cluster(url: str) -> list[str]:
    """The pg_ctlcluster command that restarts the server ``url`` names, or skip."""
    host = urlsplit(url).hostname or "localhost"
    if host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip(f"the server at {host} is not on this machine: cannot restart it")
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        pytest.skip("pg_ctlcluster not installed: cannot restart the server")
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    if not versions:
        pytest.skip("no PostgreSQL cluster under /etc/postgresql")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


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


def test_a_server_restart_mid_stream_loses_and_doubles_nothing(pg_url: str, pg_server: str) -> None:
    command = local_cluster(pg_server)
    events = stream(8_000)
    reference = open_store("memory://")
    expected = play(reference, events)

    store = PostgresStore(pg_url)
    restarted = threading.Event()

    def restart() -> None:
        subprocess.run([*command, "restart"], check=True, capture_output=True, timeout=120)
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
        try:
            wait_until_up(pg_server, seconds=30)
        except psycopg.Error:
            subprocess.run([*command, "start"], check=False, capture_output=True, timeout=120)
            wait_until_up(pg_server)
