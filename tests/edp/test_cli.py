"""The `edp` command line: settings validation, simulate (contract section 6), status."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edp.cli import main
from tests.helpers import eb_event, jsonl, s3_record, subcommand


def run_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    for name in [k for k, v in full_env.items() if v == "<unset>"]:
        del full_env[name]
    return subprocess.run(
        [sys.executable, "-m", "edp.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        (["--prefix-depth", "0"], {}, "BucketPrefixDepth"),
        (["--threshold-count", "-1"], {}, "BucketThresholdEventCount"),
        (["--threshold-duration", "1.5"], {}, "BucketThresholdDuration"),
        (["--bucket", "Bad_Bucket"], {}, "BucketName"),
        ([], {"EDP_BUCKET_NAME": "ok-bucket,x"}, "BucketName"),
        (["--db", "mysql://u:secret@h/db"], {}, "DatabaseUrl"),
        ([], {"EDP_EVENTBRIDGE_KEYS_ENCODED": "perhaps"}, "EventBridgeKeysEncoded"),
    ],
)
def test_a_bad_setting_is_one_clear_line_and_exit_2(
    flags: list[str], env: dict[str, str], named: str
) -> None:
    result = run_cli("simulate", *flags, stdin="", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.stderr
    assert "secret" not in result.stderr


def test_simulate_prints_full_eventbridge_events_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = jsonl(
        eb_event("lab/exp-2/a.csv", 0),
        eb_event("lab/exp-1/a.csv", 0),
        {"Records": [s3_record("lab/exp-1/b c.csv", 1), s3_record("lab/exp-1/c.csv", 2)]},
    )
    path = _write(stream)
    assert main(["simulate", str(path), "--threshold-duration", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["detail"]["prefix"] for e in events] == ["lab/exp-2/", "lab/exp-1/"]
    first = events[0]
    assert set(first) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert (
        first["source"] == "com.quiltdata.edp" and first["detail-type"] == "package-objects-ready"
    )
    assert first["time"] == "2022-12-08T20:01:00Z" and events[1]["time"] == "2022-12-08T20:01:02Z"
    assert first["resources"] == ["arn:aws:s3:::bkt"]
    assert first["detail"]["version"] == "0.1" and first["detail"]["bucket"] == "bkt"
    assert events[1]["detail"]["count"] == 3 and events[1]["detail"]["trigger"] == "duration"


def test_simulate_accepts_a_json_array_and_stdin() -> None:
    stream = json.dumps([eb_event("a/b/c", 0), eb_event("a/b/d", 1)], indent=2)
    result = run_cli("simulate", "-", "--threshold-count", "2", stdin=stream)
    assert result.returncode == 0, result.stderr
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert event["detail"]["trigger"] == "count" and event["time"] == "2022-12-08T20:00:01Z"


def test_simulate_reports_bad_lines_with_their_number_and_keeps_the_rest() -> None:
    stream = jsonl(eb_event("a/b/1", 0)) + "{broken\n" + jsonl({"what": 1}, eb_event("a/b/2", 1))
    result = run_cli("simulate", "-", stdin=stream)
    assert result.returncode == 1
    assert "line 2: " in result.stderr and "not JSON" in result.stderr
    assert "line 3: " in result.stderr and "unknown event shape" in result.stderr
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert event["detail"]["count"] == 2


def test_simulate_is_identical_in_one_chunk_or_many(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = jsonl(*[eb_event(f"p{i % 7}/x/{i}", i * 13) for i in range(300)])
    path = _write(stream)
    args = ["simulate", str(path), "--threshold-duration", "40", "--threshold-count", "9"]
    main(args)
    whole = capsys.readouterr().out
    monkeypatch.setattr("edp.simulate.CHUNK_EVENTS", 1)
    main(args)
    assert capsys.readouterr().out == whole and whole.count("\n") > 30


def test_status_shows_open_batches_and_counters(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    stream = jsonl(
        eb_event("a/b/1", 0),
        eb_event("x.csv", 0),
        eb_event("a/b/1", 1, sequencer="01"),
        eb_event("a/b/1", 2, sequencer="01"),
    )
    # A huge duration keeps the batch open after the stream ends... until "after the last event".
    run_cli("simulate", "-", "--db", db, "--threshold-duration", "99999999", stdin=stream)
    table = run_cli("status", "--db", db)
    assert table.returncode == 0
    assert "Open batches: 0" in table.stdout and "dropped (too-shallow)" in table.stdout
    data = json.loads(run_cli("status", "--db", db, "--json").stdout)
    assert data["counters"] == {
        "accepted": 2,
        "duplicate": 1,
        "dropped:too-shallow": 1,
        "emitted:duration": 1,
    }
    assert data["pending_publish"] == 0


def test_status_lists_an_open_batch(tmp_path: Path) -> None:
    from edp.emitter import Emitter
    from edp.events import parse_message
    from edp.settings import Settings
    from edp.store import open_store

    db = f"sqlite:///{tmp_path}/s.db"
    store = open_store(db)
    Emitter(Settings(database_url=db), store).ingest(
        [parse_message(eb_event("lab/run-9/a.csv", 0))], arrived=None
    )
    store.close()
    result = run_cli("status", "--db", db)
    assert "lab/run-9/" in result.stdout and "DUE IN" in result.stdout
    (batch,) = json.loads(run_cli("status", "--db", db, "--json").stdout)["open_batches"]
    assert batch["files"] == 1 and batch["due_at"] == "2022-12-08T20:05:00.000Z"


def test_every_command_has_help() -> None:
    for command in ([], ["simulate"], ["run"], ["status"], ["demo"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0 and "usage: edp" in result.stdout


def _write(text: str) -> Path:
    import tempfile

    with tempfile.NamedTemporaryFile(
        "w", suffix=".jsonl", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
    return Path(handle.name)


def test_aws_configuration_problems_are_one_clear_error_not_a_traceback(tmp_path: Path) -> None:
    env = {"AWS_DEFAULT_REGION": "<unset>", "AWS_REGION": "<unset>"}
    result = run_cli(
        "run", "--queue-url", "http://127.0.0.1:9/q", "--db", f"sqlite:///{tmp_path}/s.db", env=env
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "edp: error: AWS: You must specify a region." in result.stderr


def test_an_unusable_store_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("simulate", "-", "--db", f"sqlite:///{blocker}/x.db", stdin="")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot open SQLite store" in result.stderr
    assert f"{blocker} is a file, not a folder" in result.stderr and result.stderr.count("\n") == 1


# --- status reads, never writes ---------------------------------------------------------------


def test_status_on_a_missing_sqlite_store_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "edp.sqlite"
    result = run_cli("status", "--db", f"sqlite:///{missing}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and f"no SQLite store at {missing}" in result.stderr
    assert not (tmp_path / "typo").exists()


def test_status_on_a_file_that_is_not_a_store_fails(tmp_path: Path) -> None:
    other = tmp_path / "notes.sqlite"
    other.write_bytes(b"")
    result = run_cli("status", "--db", f"sqlite:///{other}")
    assert result.returncode == 1 and "is not an edp store" in result.stderr
    assert other.read_bytes() == b""


def test_status_names_the_store_and_does_not_write_to_it(tmp_path: Path) -> None:
    db_path = tmp_path / "s.db"
    db = f"sqlite:///{db_path}"
    run_cli("simulate", "-", "--db", db, stdin=jsonl(eb_event("a/b/1", 0)))

    # (SQLite's WAL index files, -shm and -wal, may appear: they are how a reader shares the
    # file with a writer, and hold no data.)
    def state() -> tuple[bytes, list[str]]:
        names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-shm", "-wal")))
        return db_path.read_bytes(), names

    before = state()
    result = run_cli("status", "--db", db)
    assert result.returncode == 0 and result.stdout.startswith(f"Store: {db}\n")
    assert json.loads(run_cli("status", "--db", db, "--json").stdout)["store"] == db
    assert state() == before


def test_status_lists_batches_waiting_to_publish_with_attempts_and_last_error(
    tmp_path: Path,
) -> None:
    from edp.emitter import Emitter
    from edp.events import parse_message
    from edp.settings import Settings
    from edp.store import open_store

    db = f"sqlite:///{tmp_path}/s.db"
    store = open_store(db)
    emitter = Emitter(Settings(database_url=db, threshold_count=1), store)
    (closed,) = emitter.ingest(
        [parse_message(eb_event("lab/run-9/a.csv", 0))], arrived=None
    ).emissions
    store.record_failures(
        {closed.batch_id: "ResourceNotFoundException: Event bus edp does not exist."},
        closed.emitted_at,
    )
    store.close()
    result = run_cli("status", "--db", db)
    assert "waiting to publish: 1" in result.stdout
    assert "ATTEMPTS" in result.stdout and "Event bus edp does not exist" in result.stdout
    (waiting,) = json.loads(run_cli("status", "--db", db, "--json").stdout)["waiting_to_publish"]
    assert waiting["prefix"] == "lab/run-9/" and waiting["attempts"] == 1
    assert waiting["last_error"].startswith("ResourceNotFoundException")


def test_status_ignores_batching_settings_it_does_not_use(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    run_cli("simulate", "-", "--db", db, stdin=jsonl(eb_event("a/b/1", 0)))
    result = run_cli("status", "--db", db, env={"EDP_BUCKET_PREFIX_DEPTH": "0"})
    assert result.returncode == 0, result.stderr


def test_aws_hints_name_only_flags_the_command_has(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import botocore.exceptions

    import edp.status

    def no_region(*args: object, **kwargs: object) -> int:
        raise botocore.exceptions.NoRegionError()

    monkeypatch.setattr(edp.status, "show_status", no_region)
    assert main(["status", "--db", f"sqlite:///{tmp_path}/s.db"]) == 1
    err = capsys.readouterr().err
    assert "edp: error: AWS: You must specify a region." in err
    assert "--region" not in err and "--endpoint-url" not in err and "AWS_ENDPOINT_URL" in err


def test_the_aws_hint_of_each_command_names_only_its_flags() -> None:
    from edp.cli import aws_hint, build_parser

    parser = build_parser()
    for command in ("run", "redrive", "demo", "status", "simulate"):
        options = {
            option
            for action in subcommand(parser, command)._actions
            for option in action.option_strings
        }
        named = set(re.findall(r"--[a-z-]+", aws_hint(command)))
        assert named <= options, (command, named - options)
