"""bench/ingest.py keeps working: a tiny run on SQLite prints its table and a verdict per target.

The figures themselves are not checked here (benchmarks print numbers; see docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ingest", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest"] = module
    spec.loader.exec_module(module)
    return module


def test_a_small_run_prints_every_row_and_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    status = bench.main(
        [
            "--events",
            "3000",
            "--prefixes",
            "50",
            "--per-event-sample",
            "200",
            "--sweep-open",
            "2000",
            "--sweep-due",
            "10",
        ]
    )
    out = capsys.readouterr().out
    assert status in (0, 1)
    for text in (
        "ours: BatchStore.ingest",
        "(a) the same rows",
        "(b) the same rows",
        "emit sweep: 2,000 open batches, 10 due",
        "timed on the first 200 events",
    ):
        assert text in out
    assert out.count("PASS") + out.count("FAIL") == 2  # no verdict against one tx per event


def test_the_bare_rows_are_the_rows_the_store_keeps() -> None:
    bench = load_bench()
    events = bench.make_events(40, 4)
    rows = bench.bare_rows(events)
    assert len(rows["members"]) == len(rows["seen"]) == len(rows["sequencers"]) == 40
    assert len(rows["batches"]) == 4
    assert len({identity for identity, _ in rows["seen"]}) == 40


def test_the_ceiling_does_the_writes_the_store_does(tmp_path: Path) -> None:
    """Batches close in both (members deleted, dedupe expiry, outbox rows, counters)."""
    import sqlite3

    from edp.store import open_store

    bench = load_bench()
    events = bench.make_events(3000, 50)  # 60 files per prefix: each closes 3 batches
    store = open_store(f"sqlite:///{tmp_path}/store.sqlite")
    bench.ingest_all(store, events, 1000)
    store.close()
    bench.bare_sqlite(f"sqlite:///{tmp_path}/bare.sqlite", events, 1000)

    def tables(name: str) -> dict[str, object]:
        with sqlite3.connect(tmp_path / name) as db:
            return {
                "members": db.execute("SELECT COUNT(*) FROM members").fetchone(),
                "seen": db.execute(
                    "SELECT COUNT(*), COUNT(c.expires_at) FROM seen s "
                    "LEFT JOIN closed c ON c.batch_id = s.batch_id"
                ).fetchone(),
                "closed": db.execute("SELECT COUNT(*) FROM closed").fetchone(),
                "sequencers": db.execute("SELECT COUNT(*) FROM sequencers").fetchone(),
                "batches": db.execute("SELECT COUNT(*) FROM batches").fetchone(),
                "outbox": db.execute("SELECT COUNT(*), SUM(count) FROM outbox").fetchone(),
                "counters": db.execute("SELECT * FROM counters ORDER BY name").fetchall(),
            }

    stored = tables("store.sqlite")
    assert stored["outbox"] == (150, 3000) and stored["seen"] == (3000, 3000)
    assert stored["closed"] == (150,)
    assert tables("bare.sqlite") == stored
