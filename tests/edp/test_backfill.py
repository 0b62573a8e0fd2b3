"""`edp backfill` on moto: the emitter's prefixes, stable batch ids, resume after a stop, rate."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from edp import cli
from edp.backfill import (
    BackfillError,
    Progress,
    RateLimiter,
    describe_plan,
    run_backfill,
)
from edp.clock import FixedClock, rfc3339
from edp.emitter import Emitter, build_scope
from edp.publisher import Publisher
from edp.settings import Settings
from edp.simulate import simulate
from edp.store import open_store
from edp.store.memory import MemoryStore
from tests.helpers import eb_event, jsonl

BUS = "edp-bus"
BUCKET = "lab-bucket"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

# Nested, ignored, shallow, registry, folder-marker and URL-awkward keys.
KEYS = [
    "instr/exp-1/run/a.csv",
    "instr/exp-1/b.csv",
    "instr/exp-2/c.csv",
    "instr/exp-2/deeper/still/d.csv",
    "instr/file.csv",  # too shallow at depth 2
    "top.csv",  # too shallow
    "instr/exp-3/",  # folder marker
    ".quilt/named_packages/lab/pkg/latest",  # Quilt's registry
    "raw/x/y.csv",  # ignored by raw/*
    "scratch/a/b.tmp",  # ignored by *.tmp
    "lab a/exp+1/ü ñ%20.csv",  # spaces, plus, unicode, a literal %20
    "lab a/exp+1/x?y=1&z#.csv",
    "lab a//empty-segment.csv",  # empty segment: prefix "lab a//"
    "plate/P1/well-01.csv",
    "plate/P1/well-02.csv",
    "plate/P2/well-01.csv",
]
IGNORE = ("raw/*", "*.tmp")


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """A bucket holding KEYS, and a bus whose package-objects-ready events land in a queue."""
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for index, key in enumerate(KEYS):
            s3.put_object(Bucket=BUCKET, Key=key, Body=f"object {index}".encode())
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        events.create_event_bus(Name=BUS)
        queue_url = sqs.create_queue(QueueName="ready")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="ready",
            EventBusName=BUS,
            EventPattern=json.dumps({"source": ["com.quiltdata.edp"]}),
        )
        events.put_targets(Rule="ready", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
        yield {"s3": s3, "events": events, "sqs": sqs, "queue_url": queue_url}


def received(aws: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        messages = (
            aws["sqs"]
            .receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)
            .get("Messages", [])
        )
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            aws["sqs"].delete_message(
                QueueUrl=aws["queue_url"], ReceiptHandle=message["ReceiptHandle"]
            )


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "buckets": (BUCKET,),
        "ignore_patterns": IGNORE,
        "event_bus": BUS,
        "database_url": "memory://",
    }
    values.update(overrides)
    return Settings(**values)


def publisher(aws: dict[str, Any], sleeps: list[float] | None = None) -> Publisher:
    return Publisher(lambda: aws["events"], BUS, sleep=(sleeps or []).append)


def emitter_prefixes(config: Settings) -> dict[str, int]:
    """Feed KEYS as S3 events through `edp simulate` and return {prefix: count} it emits."""
    text = jsonl(*(eb_event(key, i, bucket=BUCKET) for i, key in enumerate(KEYS)))
    out, err = io.StringIO(), io.StringIO()
    big = Settings(**{**config.__dict__, "threshold_count": 10_000})
    simulate(text, Emitter(big, MemoryStore()), out, err)
    rejects = [line for line in err.getvalue().splitlines() if not line.startswith("edp simulate:")]
    assert rejects == []
    emitted = [json.loads(line)["detail"] for line in out.getvalue().splitlines()]
    return {d["prefix"]: d["count"] for d in emitted}


def test_a_bucket_gives_exactly_the_prefixes_the_emitter_would_batch(
    aws: dict[str, Any],
) -> None:
    config = settings()
    # Pages of 2 keys and 3 threads: pagination and concurrency cannot change the result.
    plan, _ = run_backfill(
        f"s3://{BUCKET}",
        build_scope(config),
        s3=aws["s3"],
        store=None,
        publisher=None,
        dry_run=True,
        concurrency=3,
        page_size=2,
    )
    assert {e.prefix: e.count for e in plan.batches} == emitter_prefixes(config)
    assert {e.prefix for e in plan.batches} == {
        "instr/exp-1/",
        "instr/exp-2/",
        "lab a/exp+1/",
        "lab a//",
        "plate/P1/",
        "plate/P2/",
    }
    assert plan.dropped == {
        "too-shallow": 2,
        "folder-marker": 1,
        "quilt-registry": 1,
        "ignored": 2,
    }
    assert plan.listed == len(KEYS)
    assert all(e.trigger == "backfill" for e in plan.batches)


def test_depth_three_and_a_prefix_uri_restrict_the_listing(aws: dict[str, Any]) -> None:
    config = settings(prefix_depth=3)
    plan, _ = run_backfill(
        f"s3://{BUCKET}/instr/", build_scope(config), s3=aws["s3"], store=None,
        publisher=None, dry_run=True,
    )  # fmt: skip
    assert {e.prefix: e.count for e in plan.batches} == {
        "instr/exp-1/run/": 1,
        "instr/exp-2/deeper/": 1,
    }
    assert plan.dropped["too-shallow"] == 3


def test_published_events_carry_counts_times_and_stable_ids(aws: dict[str, Any]) -> None:
    config = settings()
    store = MemoryStore()
    plan, report = run_backfill(
        f"s3://{BUCKET}",
        build_scope(config),
        s3=aws["s3"],
        store=store,
        publisher=publisher(aws),
        clock=FixedClock(NOW),
    )
    assert report is not None and report.published == len(plan.batches) == 6
    details = {e["detail"]["prefix"]: e for e in received(aws)}
    assert set(details) == {e.prefix for e in plan.batches}
    one = details["plate/P1/"]
    assert one["detail-type"] == "package-objects-ready"
    assert one["resources"] == [f"arn:aws:s3:::{BUCKET}"]
    assert one["detail"]["count"] == 2 and one["detail"]["trigger"] == "backfill"
    stamps = [
        o["LastModified"]
        for o in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="plate/P1/")["Contents"]
    ]
    assert one["detail"]["first_event_time"] == rfc3339(min(stamps))
    assert one["detail"]["last_event_time"] == rfc3339(max(stamps))

    # Same listing, same ids, also from a fresh store (a consumer sees the same batch_id).
    again, _ = run_backfill(
        f"s3://{BUCKET}", build_scope(config), s3=aws["s3"], store=None, publisher=None,
        dry_run=True,
    )  # fmt: skip
    assert [e.batch_id for e in again.batches] == [e.batch_id for e in plan.batches]
    # A changed object changes its prefix's id and no other.
    aws["s3"].put_object(Bucket=BUCKET, Key="plate/P1/well-02.csv", Body=b"rewritten")
    changed, _ = run_backfill(
        f"s3://{BUCKET}", build_scope(config), s3=aws["s3"], store=None, publisher=None,
        dry_run=True,
    )  # fmt: skip
    differ = {
        a.prefix
        for a, b in zip(plan.batches, changed.batches, strict=True)
        if a.batch_id != b.batch_id
    }
    assert differ == {"plate/P1/"}


def test_a_rerun_sends_nothing_already_published(aws: dict[str, Any]) -> None:
    config = settings()
    store = MemoryStore()
    args: dict[str, Any] = {"s3": aws["s3"], "store": store, "publisher": publisher(aws)}
    run_backfill(f"s3://{BUCKET}", build_scope(config), **args)
    assert len(received(aws)) == 6
    aws["s3"].put_object(Bucket=BUCKET, Key="plate/P2/well-02.csv", Body=b"new")
    _, report = run_backfill(f"s3://{BUCKET}", build_scope(config), **args)
    assert report is not None and (report.published, report.already) == (1, 5)
    [event] = received(aws)
    assert event["detail"]["prefix"] == "plate/P2/" and event["detail"]["count"] == 2


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_without_sending_any_prefix_twice(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    config = settings(database_url=f"sqlite:///{tmp_path}/edp.sqlite")
    waits: list[float] = []

    def stop_on_third_pause(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise Interrupt  # Ctrl-C while waiting for the rate limit

    limiter = RateLimiter(1, clock=lambda: 0.0, sleep=stop_on_third_pause)
    store = open_store(config.database_url)
    with pytest.raises(Interrupt):
        run_backfill(
            f"s3://{BUCKET}",
            build_scope(config),
            s3=aws["s3"],
            store=store,
            publisher=publisher(aws),
            limiter=limiter,
        )
    store.close()
    first = [e["detail"]["prefix"] for e in received(aws)]
    assert len(first) == 3  # one a second: three sent before the stop, a fourth enqueued

    store = open_store(config.database_url)  # a new process, the same store
    plan, report = run_backfill(
        f"s3://{BUCKET}", build_scope(config), s3=aws["s3"], store=store, publisher=publisher(aws)
    )
    second = [e["detail"]["prefix"] for e in received(aws)]
    store.close()
    assert sorted(first + second) == sorted(e.prefix for e in plan.batches)  # none twice, none lost
    assert report is not None and report.already == 4 and report.published == 3


def test_the_rate_caps_events_per_second(aws: dict[str, Any]) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2, clock=lambda: now[0], sleep=sleep)
    _, report = run_backfill(
        f"s3://{BUCKET}",
        build_scope(settings()),
        s3=aws["s3"],
        store=MemoryStore(),
        publisher=publisher(aws),
        limiter=limiter,
    )
    assert report is not None and report.published == 6
    # Six events at two per second: chunks of 2 at t=0, 1, 2 -> the last starts 2 s after the first.
    assert sleeps == [1.0, 1.0] and now[0] == pytest.approx(2.0)
    assert len(received(aws)) == 6


def test_modified_since_and_until_select_by_last_modified(aws: dict[str, Any]) -> None:
    stamps = {
        o["Key"]: o["LastModified"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]
    }
    middle = sorted(stamps.values())[len(stamps) // 2]
    plan, _ = run_backfill(
        f"s3://{BUCKET}", build_scope(settings()), s3=aws["s3"], store=None, publisher=None,
        dry_run=True, modified_since=middle + timedelta(days=1),
    )  # fmt: skip
    assert plan.batches == [] and plan.dropped["modified-time"] == len(KEYS)
    plan, _ = run_backfill(
        f"s3://{BUCKET}", build_scope(settings()), s3=aws["s3"], store=None, publisher=None,
        dry_run=True, modified_until=middle - timedelta(days=1),
    )  # fmt: skip
    assert plan.batches == []


def test_an_unwatched_bucket_and_a_bad_uri_are_clear_errors(aws: dict[str, Any]) -> None:
    with pytest.raises(BackfillError, match="not a watched bucket"):
        run_backfill("s3://other-bucket", build_scope(settings()), s3=aws["s3"], store=None,
                     publisher=None, dry_run=True)  # fmt: skip
    with pytest.raises(BackfillError, match="rate"):
        RateLimiter(0)


def test_the_cli_dry_run_prints_the_plan_and_publishes_nothing(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/edp.sqlite"
    argv = ["backfill", f"s3://{BUCKET}", "--bucket", BUCKET, "--ignore", ",".join(IGNORE)]
    assert cli.main([*argv, "--dry-run", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "plate/P1/\t2\t" in out and "6 prefix(es), 10 object(s) of 16 listed" in out
    assert received(aws) == []
    assert cli.main([*argv, "--db", db, "--event-bus", BUS]) == 0
    assert "6 published, 0 already" in capsys.readouterr().out
    assert len(received(aws)) == 6
    assert cli.main([*argv, "--db", db, "--event-bus", BUS, "--modified-since", "nope"]) == 1
    assert "--modified-since: 'nope' is not a date" in capsys.readouterr().err


def test_progress_shows_counts_and_an_eta_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    ticks = iter([0.0, 10.0, 20.0])
    progress = Progress(out, clock=lambda: next(ticks))
    progress.show("listing", 1, 3, "folders, 500 objects", force=True)
    assert "listing [########................] 1/3 folders, 500 objects ETA 20s" in out.getvalue()
    quiet = io.StringIO()
    Progress(quiet).show("listing", 1, 3, "x", force=True)
    assert quiet.getvalue() == ""


def test_describe_plan_totals(aws: dict[str, Any]) -> None:
    plan, _ = run_backfill(f"s3://{BUCKET}", build_scope(settings()), s3=aws["s3"],
                           store=None, publisher=None, dry_run=True)  # fmt: skip
    out = io.StringIO()
    describe_plan(plan, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 7 and lines[-1].startswith(f"s3://{BUCKET}: 6 prefix(es)")


def test_rules_give_backfill_the_prefixes_and_rule_names_the_emitter_uses(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    from edp.rules_file import load_rules

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- {name: deep, match: instr/, depth: 3}\n"
        "- {name: plates, match: plate/, depth: 1}\n"
        "- {name: no-lab, match: 'lab a/', ignore: true}\n",
        encoding="utf-8",
    )
    config = settings(rules=str(rules))
    ruleset = load_rules(str(rules), config)
    plan, _ = run_backfill(
        f"s3://{BUCKET}",
        build_scope(config, ruleset),
        s3=aws["s3"],
        store=MemoryStore(),
        publisher=Publisher(lambda: aws["events"], BUS, rule_of=ruleset.name_for),
    )
    expected = emitter_prefixes(config)
    assert (
        {e.prefix: e.count for e in plan.batches}
        == expected
        == {
            "instr/exp-1/run/": 1,
            "instr/exp-2/deeper/": 1,
            "plate/": 3,
        }
    )
    rules_seen = {e["detail"]["prefix"]: e["detail"]["rule"] for e in received(aws)}
    assert rules_seen == {
        "instr/exp-1/run/": "deep",
        "instr/exp-2/deeper/": "deep",
        "plate/": "plates",
    }


def test_the_backfill_lambda_publishes_the_watched_bucket_and_resumes(
    aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edp import handlers

    monkeypatch.setenv("EDP_BUCKET_NAME", BUCKET)
    monkeypatch.setenv("EDP_BUCKET_IGNORE_PREFIXES", ",".join(IGNORE))
    monkeypatch.setenv("EDP_EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("EDP_DATABASE_URL", f"sqlite:///{tmp_path}/edp.sqlite")
    handlers.reset()
    handlers.runtime(lambda: handlers.build_runtime(FixedClock(NOW)))
    try:
        scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
        first = handlers.backfill({**scheduled, "dry_run": True}, LambdaContext())
        assert first["results"][0]["prefixes"] == 6 and received(aws) == []
        second = handlers.backfill(scheduled, LambdaContext())
        assert second["results"][0]["published"] == 6
        assert len(received(aws)) == 6
        third = handlers.backfill({"uris": f"s3://{BUCKET}/plate/", "rate": 5}, LambdaContext())
        assert third["results"][0] | {"uri": ""} == {
            "uri": "",
            "prefixes": 2,
            "objects": 3,
            "listed": 3,
            "list_requests": 3,
            "published": 0,
            "already": 2,
        }
        assert received(aws) == []
    finally:
        handlers.reset()


class LambdaContext:
    function_name = "edp-backfill"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:edp-backfill"
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"
