"""Fixtures for the `edp run` tests: a moto server on 127.0.0.1 and a way to run `edp run` for real."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from consumers.testing.aws import MotoServer, running_moto_server
from tests.service.service_processes import EdpRun


@pytest.fixture(scope="session")
def service_moto() -> Iterator[MotoServer]:
    with running_moto_server() as server:
        yield server


@pytest.fixture
def moto_endpoint(service_moto: MotoServer) -> str:
    """A moto server shared by this test and the `edp run` processes it starts, emptied first
    (moto keeps its state in the process, across servers)."""
    service_moto.reset()
    return service_moto.url


@pytest.fixture
def edp_runs() -> Iterator[list[EdpRun]]:
    """Collects the runs a test starts, and kills any still alive when it ends."""
    runs: list[EdpRun] = []
    yield runs
    for run in runs:
        run.kill()


@pytest.fixture
def bus_arrivals(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """batch_id -> wall times at which PutEvents carrying it reached the (in-process) moto bus.

    Measured on arrival, before moto delivers to targets: moto builds a JSONPath parser for each
    rule target on every event (0.3-0.7 s here), which real EventBridge does not make us wait for.
    """
    from moto.events.models import EventsBackend

    arrivals: dict[str, list[float]] = {}
    original = EventsBackend.put_events

    def recording(self: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = time.time()
        for entry in events:
            try:
                batch_id = json.loads(entry.get("Detail") or "{}").get("batch_id")
            except ValueError:
                batch_id = None
            if batch_id:
                arrivals.setdefault(batch_id, []).append(now)
        return original(self, events)

    monkeypatch.setattr(EventsBackend, "put_events", recording)
    return arrivals
