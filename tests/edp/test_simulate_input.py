"""`edp simulate`'s input and bookkeeping: every input shape streamed, the summary line on stderr,
non-UTF-8 bytes reported per line, one store transaction per chunk, its own store in memory and purged as the window moves on."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import edp.simulate as sim
import edp.store as edp_store
from edp.cli import main
from edp.emitter import Emitter
from edp.settings import Settings
from edp.store import BatchStore, open_store
from edp.store.memory import MemoryStore
from edp.store.sqlite import SqliteStore
from tests.helpers import EVENTS, eb_event, jsonl


def edp(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "edp.cli", *args], input=stdin, capture_output=True, timeout=60
    )


def play(source: str | bytes, url: str = "memory://", **settings: Any) -> tuple[str, str, int]:
    store = open_store(url)
    out, err = io.StringIO(), io.StringIO()
    data = io.BytesIO(source if isinstance(source, bytes) else source.encode())
    try:
        status = sim.simulate(
            data, Emitter(Settings(database_url=url, **settings), store), out, err
        )
    finally:
        store.close()
    return out.getvalue(), err.getvalue(), status


def test_the_readme_example_one_pretty_printed_notification_works() -> None:
    result = edp("simulate", str(EVENTS / "s3_notification_put.json"))
    assert result.returncode == 0, result.stderr
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert event["detail"]["prefix"] == "sequencer-1/exp-7/" and event["detail"]["count"] == 2
    assert result.stderr.decode().startswith("edp simulate: 2 events accepted")


def test_pretty_printed_objects_json_lines_and_arrays_give_the_same_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [eb_event(f"p{i % 3}/x/{i}.csv", i * 7) for i in range(60)]
    lines, _, _ = play(jsonl(*events), threshold_count=5)
    pretty = "".join(json.dumps(e, indent=2) + "\n" for e in events)
    assert play(pretty, threshold_count=5)[0] == lines
    monkeypatch.setattr(sim, "READ_SIZE", 17)  # items cut across many reads
    assert play(json.dumps(events, indent=1), threshold_count=5)[0] == lines
    halves = json.dumps(events[:30]) + "\n" + json.dumps(events[30:])
    assert play(halves, threshold_count=5)[0] == lines
    assert lines.count("\n") >= 12


def test_a_bad_item_in_an_array_is_reported_with_its_line() -> None:
    text = (
        "[\n"
        + json.dumps(eb_event("a/b/1.csv", 0))
        + ",\n 12345,\n"
        + json.dumps(eb_event("a/b/2.csv", 1))
        + "\n]\n"
    )
    out, err, status = play(text)
    assert status == 1 and "line 3: message: expected a JSON object, got int" in err
    assert json.loads(out)["detail"]["count"] == 2


def test_a_broken_line_does_not_swallow_the_lines_after_it() -> None:
    text = '{"Records": [\n' + jsonl(eb_event("a/b/1.csv", 0), eb_event("a/b/2.csv", 1))
    out, err, status = play(text)
    assert status == 1 and err.startswith("line 1: message: not JSON")
    assert json.loads(out)["detail"]["count"] == 2


@pytest.mark.parametrize(
    "line",
    [
        b'{"a": [1, "x"]}\n',
        b'{"a": 1}',  # the last line, without its newline
        b'{"a": 1}\r\n',
        b'  {"a": 1}\n',
        b'{"a": 1} \t \n',
        b'{"a": 1}\x0b\n',  # not JSON whitespace
        b'{"a": 1} x\n',
        b'{"a": 1}{"b": 2}\n',
        b"1 2\n",
        b'"text"\n',
        b"[1, 2]\n",
        b"12345\n",
        b'{"a": 1}\n\n',
        b"\xef\xbb\xbf{}\n",  # a byte order mark
        b"[" * 700 + b"]" * 700 + b"\n",  # the scanner alone
        b"[" * 900 + b"]" * 900 + b"\n",  # decode(), as ever
    ],
)
def test_a_json_line_is_read_as_json_loads_reads_it(line: bytes) -> None:
    messages = list(sim.read_messages(io.BytesIO(line)))
    try:
        expected = json.loads(line.decode("utf-8"))
    except ValueError:
        assert [type(value) for _, value in messages] == [sim.BadEventError]
    else:
        assert messages == [(1, expected)]


def test_non_utf8_bytes_are_one_clear_line_per_bad_line_and_exit_1() -> None:
    stream = jsonl(eb_event("a/b/1.csv", 0)).encode() + b'{"key": "caf\xe9"}\n'
    stream += jsonl(eb_event("a/b/2.csv", 1)).encode()
    result = edp("simulate", "-", stdin=stream)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr
    assert "line 2: not UTF-8 text (byte 0xe9 at column 13)" in stderr
    assert json.loads(result.stdout)["detail"]["count"] == 2
    broken_array = b'[{"a": "\xff"}]'
    result = edp("simulate", "-", stdin=broken_array)
    assert result.returncode == 1 and b"line 1: not UTF-8 text" in result.stderr
    assert b"Traceback" not in result.stderr


def test_the_summary_counts_accepted_dropped_by_reason_duplicates_and_emissions() -> None:
    stream = jsonl(
        eb_event("a/b/1.csv", 0, event_id="e1"),
        eb_event("a/b/1.csv", 1, event_id="e1"),
        eb_event("shallow.csv", 2),
        eb_event("x/y/1.csv", 3, bucket="other-bucket"),
        eb_event("c/d/1.csv", 4),
    )
    _, err, status = play(stream, buckets=("bkt",))
    assert status == 0
    assert err.splitlines() == [
        "edp simulate: 2 events accepted, 2 dropped (bucket 1, too-shallow 1), "
        "1 duplicates, 0 stale, 2 emissions"
    ]


def test_one_store_transaction_per_chunk_not_per_emission_time(tmp_path: Path) -> None:
    # 200 prefixes, each emitted at its own instant: formerly one commit per emission time.
    events = [eb_event(f"p{i}/x/1.csv", i) for i in range(200)]
    url = f"sqlite:///{tmp_path}/s.db"
    store = SqliteStore(url)
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(database_url=url, threshold_duration=10)
    assert sim.simulate(jsonl(*events), Emitter(settings, store), out, err) == 0
    store.close()
    assert out.getvalue().count("\n") == 200
    assert len(commits) == 2  # one chunk, then "after the last event"


def test_simulates_own_store_is_in_memory_and_a_named_one_keeps_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def synchronous(store: SqliteStore) -> int:
        return int(store._db.execute("PRAGMA synchronous").fetchone()[0])

    url = f"sqlite:///{tmp_path}/s.db"
    durable, throwaway = SqliteStore(url), open_store(url, durable=False)
    assert isinstance(throwaway, SqliteStore)
    assert (synchronous(durable), synchronous(throwaway)) == (2, 0)  # FULL, OFF
    durable.close()
    throwaway.close()
    opened: dict[str, object] = {}
    real_open = edp_store.open_store

    def recording_open(url: str, **kwargs: object) -> BatchStore:
        store = real_open(url, **kwargs)  # type: ignore[arg-type]
        if isinstance(store, SqliteStore):
            opened[url.rsplit("/", 1)[-1]] = synchronous(store)
        else:
            opened[url] = type(store).__name__
        return store

    monkeypatch.setattr(edp_store, "open_store", recording_open)
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(eb_event("a/b/1.csv", 0)))
    assert main(["simulate", str(source)]) == 0
    assert main(["simulate", str(source), "--db", f"sqlite:///{tmp_path}/mine.db"]) == 0
    # Its own store leaves nothing behind; a --db the user names keeps its durable commits.
    assert opened == {"memory://": "MemoryStore", "mine.db": 2}


def test_a_long_stream_keeps_only_the_dedupe_windows_identities() -> None:
    # 20,000 files, one a second, each its own identity and sequencer, with a 10-minute window:
    # without purging, the store would remember all 20,000 of each.
    events = [eb_event(f"p{i // 50}/x/{i}.csv", i, sequencer=f"{i + 1:08X}") for i in range(20_000)]
    store = MemoryStore()
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(database_url="memory://", dedupe_window=600, threshold_duration=60)
    assert sim.simulate(jsonl(*events), Emitter(settings, store), out, err) == 0
    assert out.getvalue().count("\n") == 1200  # per prefix: 20, 20, then the last 10
    identities, sequencers = store.remembered()
    # About a window of events (600), two at most (a chunk may span up to one), not 20,000.
    assert 0 < identities <= 1200 and 0 < sequencers <= 1200
