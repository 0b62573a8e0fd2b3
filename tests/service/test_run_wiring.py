"""`edp run`'s wiring: start-up checks, log lines (levels, JSON), --max-runtime, bad flags."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from edp.cli import main
from edp.run import DeadlineQueue
from tests.helpers import load_event
from tests.service.service_aws import REGION, Pipeline, build_pipeline

# `edp run` end to end, on moto's SQS, EventBridge and SNS.
pytestmark = pytest.mark.integration


@pytest.fixture
def aws() -> Iterator[Pipeline]:
    with mock_aws():
        yield build_pipeline(visibility_timeout=0, max_receive_count=1)


def run(aws: Pipeline, tmp_path: Path, *extra: str) -> int:
    args = ["run", "--queue-url", aws.input_url, "--region", REGION, "--poll-wait", "0"]
    args += ["--db", f"sqlite:///{tmp_path / 'run.sqlite'}", "--event-bus", aws.bus]
    return main([*args, "--max-runtime", "1.5", *extra])


def test_start_up_checks_say_what_they_found_one_line_each(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = aws.client("sns").create_topic(Name="edp-copies")["TopicArn"]
    assert run(aws, tmp_path, "--sns-topic-arn", topic) == 0
    err = capsys.readouterr().err
    assert (
        f"INFO edp run: start-up check: queue {aws.input_url} can be read (dead-letter queue arn:"
        in err
    )
    assert f"INFO edp run: start-up check: event bus {aws.bus} exists" in err
    assert f"INFO edp run: start-up check: SNS topic {topic} exists" in err


def test_a_missing_bus_stops_edp_run_at_start_with_one_line(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.send(load_event("eventbridge_object_created"))
    code = run(aws, tmp_path, "--event-bus", "no-such-bus")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("edp: error:")]
    assert "event bus no-such-bus cannot be used" in line and "--event-bus" in line
    assert aws.queue_depth(aws.input_url) == 1  # nothing was taken off the queue


def test_a_missing_topic_stops_edp_run_at_start(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    assert run(aws, tmp_path, "--sns-topic-arn", missing) == 1
    assert f"edp: error: SNS topic {missing} cannot be used" in capsys.readouterr().err


def test_log_format_json_gives_powertools_shaped_lines(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.send(load_event("eventbridge_object_created"), "not JSON {")
    assert run(aws, tmp_path, "--log-format", "json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines and all(
        {"level", "location", "message", "timestamp", "service"} <= line.keys() for line in lines
    )
    assert {line["service"] for line in lines} == {"edp"}
    levels = {line["level"] for line in lines}
    assert {"INFO", "WARNING"} <= levels  # the rejected message is a warning
    assert any(line["message"].startswith("stopped after") for line in lines)


def test_log_level_warning_hides_progress_lines(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.send("not JSON {")
    assert run(aws, tmp_path, "--log-level", "warning") == 0
    err = capsys.readouterr().err
    assert "WARNING edp run: rejected message" in err and " INFO " not in err


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_max_runtime_must_be_positive(
    aws: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code = main(["run", "--queue-url", aws.input_url, "--max-runtime", value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"invalid setting --max-runtime: {float(value)!r} is not allowed" in err


def test_max_runtime_is_not_stretched_by_a_long_poll(aws: Pipeline, tmp_path: Path) -> None:
    started = time.monotonic()
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["--queue-url", aws.input_url, "--region", REGION, "--event-bus", aws.bus, "--db", db]
    code = main(["run", *args, "--poll-wait", "10", "--max-runtime", "1"])
    assert code == 0
    # Before: the last long poll ran its full 10 s (max-runtime 12 took 20.1 s).
    assert time.monotonic() - started < 3.5


def test_the_deadline_queue_shortens_only_the_wait() -> None:
    calls: list[dict[str, object]] = []

    class Sqs:
        def receive_message(self, **kwargs: object) -> dict[str, object]:
            calls.append(kwargs)
            return {}

        def delete_message_batch(self, **kwargs: object) -> str:
            return "passed through"

    now = [100.0]
    queue = DeadlineQueue(Sqs(), deadline=103.5, monotonic=lambda: now[0])
    queue.receive_message(QueueUrl="q", WaitTimeSeconds=10)
    now[0] = 104.0
    queue.receive_message(QueueUrl="q", WaitTimeSeconds=10)
    queue.receive_message(QueueUrl="q", WaitTimeSeconds=0)
    assert [c["WaitTimeSeconds"] for c in calls] == [4, 0, 0]
    assert queue.delete_message_batch(QueueUrl="q") == "passed through"


@pytest.mark.parametrize("command", ["run", "redrive", "demo"])
def test_an_invalid_endpoint_url_is_one_clear_line(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [command, "--endpoint-url", "not-a-url"]
    if command == "run":
        args += ["--queue-url", "http://127.0.0.1:9/q"]
    if command == "redrive":
        args += ["--from", "http://127.0.0.1:9/dlq"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "invalid setting --endpoint-url: 'not-a-url' is not allowed" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from edp import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"edp {__version__}\n"


def test_a_refused_publish_is_recorded_for_status(aws: Pipeline, tmp_path: Path) -> None:
    """The bus refuses: the batch stays in the outbox with its attempts and the bus's error."""
    from datetime import UTC, datetime

    from edp.emitter import Emitter
    from edp.events import parse_message
    from edp.publisher import Publisher, publish_pending
    from edp.settings import Settings
    from edp.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    emitter = Emitter(Settings(database_url="memory://", threshold_count=1), store)
    emitter.ingest([parse_message(load_event("eventbridge_object_created"))], arrived=None)
    publisher = Publisher(
        lambda: aws.client("events"), "no-such-bus", sleep=lambda seconds: None, max_attempts=2
    )
    for _ in range(2):
        report = publish_pending(store, publisher, lambda: datetime.now(UTC))
        assert report.failed
    (waiting,) = store.pending()
    assert waiting.attempts == 2
    assert waiting.last_error is not None and "no-such-bus" in waiting.last_error
    store.close()
