"""Hostile input: whatever one message holds, it is rejected alone and the good ones are stored.

Every message goes through the edge (``edp.events.parse_message``): it either comes out as events
every store can keep and every rule can compute with, or is rejected with one line naming the bad
field. The three entry points (the Lambda ``store_in_db``, ``edp run``'s ``Service.poll_once`` and
``edp simulate``) give the same verdict on every store (memory, SQLite, PostgreSQL).
"""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from edp import handlers
from edp.clock import FixedClock
from edp.core import Changes, RoutedEvent, Rules
from edp.emitter import Emitter
from edp.errors import BadEventError, StoreError
from edp.events import parse_message
from edp.publisher import Publisher
from edp.service import Service
from edp.settings import Settings
from edp.simulate import simulate
from edp.store import BatchStore, open_store
from edp.store.memory import MemoryStore

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BUCKET = "lab"
# Thresholds no test stream reaches: nothing is published while the messages are stored.
SETTINGS: dict[str, Any] = {"threshold_count": 1000, "threshold_duration": 3600}


def good_event(
    prefix: str, key: str = "f.csv", time: Any = "2026-03-02T08:59:00Z"
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": time,
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": f"{prefix}{key}", "size": 1}},
    }


def with_object(prefix: str, **fields: Any) -> dict[str, Any]:
    event = good_event(prefix)
    event["detail"]["object"].update(fields)
    return event


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# The messages the fault trial found crashing a whole batch, with the field each reason names.
HOSTILE: dict[str, tuple[str, str]] = {
    "epoch 1e15": (json.dumps(good_event("x/y/", time=1e15)), "message.time"),
    "year 9999": (json.dumps(good_event("x/y/", time="9999-12-31T23:59:59Z")), "message.time"),
    "UTC offset overflow": (
        json.dumps(good_event("x/y/", time="0001-01-01T00:00:00+05:00")),
        "message.time",
    ),
    "10,000-deep JSON": (deep(10_000), "message"),
    "10,000-deep object": ('{"a":' * 10_000 + "1" + "}" * 10_000, "message"),
    "lone surrogate key": (
        json.dumps(with_object("x/y/", key="x/y/\ud800.csv")),
        "message.detail.object.key",
    ),
    "NUL in key": (json.dumps(with_object("x/y/", key="x/y/a\x00b")), "message.detail.object.key"),
    "encoded NUL in key": (
        json.dumps(with_object("x/y/", key="x/y/a%00b")),
        "message.detail.object.key",
    ),
    "NUL in bucket": (
        json.dumps(
            {
                **good_event("x/y/"),
                "detail": {"bucket": {"name": "l\x00b"}, "object": {"key": "x/y/z"}},
            }
        ),
        "message.detail.bucket.name",
    ),
    "huge key": (json.dumps(with_object("x/y/", key="k" * 300_000)), "message.detail.object.key"),
    "huge etag": (
        json.dumps(with_object("x/y/", etag="e" * 300_000)),
        "message.detail.object.etag",
    ),
    "huge size": (json.dumps(with_object("x/y/", size=10**30)), "message.detail.object.size"),
    "NaN time": (json.dumps(good_event("x/y/", time=float("nan"))), "message.time"),
    "huge integer": ("1" * 5000, "message"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_message_is_rejected_with_one_line_naming_the_field(name: str) -> None:
    body, path = HOSTILE[name]
    with pytest.raises(BadEventError) as caught:
        parse_message(body)
    reason = str(caught.value)
    assert reason.startswith(path + ":") and "\n" not in reason and len(reason) < 200, reason


# --- the three entry points ---------------------------------------------------------------
EntryPoint = Callable[[BatchStore, list[str]], set[int]]


@dataclass
class LambdaContext:
    function_name: str = "edp-store"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:edp-store"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"


def via_store_in_db(store: BatchStore, bodies: list[str]) -> set[int]:
    """The Lambda: the indexes of the messages in batchItemFailures."""
    config = Settings(database_url="memory://", **SETTINGS)
    runtime = handlers.Runtime(
        config, store, Emitter(config, store), Publisher(lambda: None, "bus"), FixedClock(NOW)
    )
    records = [
        {"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body, "eventSource": "aws:sqs"}
        for i, body in enumerate(bodies)
    ]
    handlers._runtime = runtime
    try:
        response = handlers.store_in_db({"Records": records}, LambdaContext())
    finally:
        handlers._runtime = None  # the store belongs to the test
    return {int(f["itemIdentifier"][1:]) for f in response["batchItemFailures"]}


def via_poll_once(store: BatchStore, bodies: list[str]) -> set[int]:
    """`edp run`: the indexes of the messages left on the queue (for its dead-letter queue)."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="in", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
        for i, body in enumerate(bodies):
            sqs.send_message(
                QueueUrl=url,
                MessageBody=body,
                MessageAttributes={"index": {"DataType": "Number", "StringValue": str(i)}},
            )
        service = Service(
            Settings(database_url="memory://", **SETTINGS),
            store,
            queue_url=url,
            sqs_client=lambda: sqs,
            events_client=lambda: None,
            clock=FixedClock(NOW),
            poll_wait=0,
        )
        assert service.poll_once() == len(bodies)
        left = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        return {int(m["MessageAttributes"]["index"]["StringValue"]) for m in left}


def via_simulate(store: BatchStore, bodies: list[str]) -> set[int]:
    """`edp simulate`: the indexes of the lines reported as bad (exit 1 exactly when any)."""
    out, err = io.StringIO(), io.StringIO()
    emitter = Emitter(Settings(database_url="memory://", **SETTINGS), store)
    code = simulate("\n".join(bodies) + "\n", emitter, out, err)
    *lines, summary = err.getvalue().splitlines()  # the last line sums the run up
    assert summary.startswith("edp simulate: ")
    assert all(line.startswith("line ") for line in lines), lines
    rejected = {int(line.split(":", 1)[0].split()[1]) - 1 for line in lines}
    assert code == (1 if rejected else 0)
    # JSON lines end at "\n" only: a printed field may hold U+0085 or U+2028, which
    # str.splitlines() would also split at.
    for line in out.getvalue().split("\n")[:-1]:
        json.loads(line)  # every emission printed whole
    return rejected


ENTRY_POINTS: dict[str, EntryPoint] = {
    "store_in_db": via_store_in_db,
    "poll_once": via_poll_once,
    "simulate": via_simulate,
}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchStore]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        url = request.getfixturevalue("pg_url")
    opened = open_store(url)
    yield opened
    opened.close()


def stored_prefixes(store: BatchStore) -> set[str]:
    return {b.prefix for b in store.open_batches()} | {e.prefix for e in store.published()}


def check(store: BatchStore, entry: EntryPoint, messages: list[tuple[bool, str]]) -> None:
    """Good messages (True) are all stored; the rejected ones are exactly the edge's verdict."""
    run = uuid.uuid4().hex[:8]
    bodies, good = [], []
    for index, (is_good, body) in enumerate(messages):
        if is_good:
            prefix = f"r{run}/g{index}/"
            good.append(prefix)
            body = json.dumps(good_event(prefix))
        bodies.append(body)
    expected = set()
    for index, body in enumerate(bodies):
        try:
            parse_message(body)
        except BadEventError:
            expected.add(index)
    rejected = entry(store, bodies)
    assert rejected == expected
    assert set(good) <= stored_prefixes(store)


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_the_fault_trial_messages_each_fail_alone(store: BatchStore, entry: str) -> None:
    # Each hostile message of the trial in a receive of ten with nine good ones.
    for body, _ in HOSTILE.values():
        check(store, ENTRY_POINTS[entry], [(True, "")] * 4 + [(False, body)] + [(True, "")] * 5)


# --- the property: random hostile messages mixed with good ones ----------------------------
any_char = st.characters(exclude_categories=[])  # every category, surrogates and controls too
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(any_char, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(any_char, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
extreme_times = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.text(any_char, max_size=30),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+23:59", "1969-12-31T23:59:59Z"]),
)


@st.composite
def hostile(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["json", "time", "key", "bucket", "deep", "huge", "fields"]))
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "deep":
        depth = draw(st.integers(100, 20_000))
        return draw(st.sampled_from([deep(depth), '{"a":' * depth + "0" + "}" * depth]))
    event = good_event(f"h/{draw(st.integers(0, 10**6))}/")
    if kind == "time":
        event["time"] = draw(extreme_times)
    elif kind == "key":
        event["detail"]["object"]["key"] = draw(st.text(any_char, min_size=1, max_size=40))
    elif kind == "bucket":
        event["detail"]["bucket"]["name"] = draw(st.text(any_char, max_size=20))
    elif kind == "huge":
        field = draw(st.sampled_from(["key", "etag", "sequencer", "version-id"]))
        event["detail"]["object"][field] = "x" * draw(st.integers(500, 200_000))
    else:
        field = draw(st.sampled_from(["size", "etag", "sequencer", "version-id"]))
        event["detail"]["object"][field] = draw(json_values)
    return json.dumps(event)


mixes = st.lists(st.tuples(st.booleans(), st.just("") | hostile()), min_size=1, max_size=10)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=mixes)
def test_hostile_messages_never_take_good_ones_with_them(
    store: BatchStore, entry: str, messages: list[tuple[bool, str]]
) -> None:
    check(store, ENTRY_POINTS[entry], [(good or not body, body) for good, body in messages])


class RefusingStore(MemoryStore):
    """A store that refuses any transaction holding a key with 'refuse' in it (as a database
    might refuse a value the edge let through)."""

    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        if any("refuse" in r.event.key for r in events):
            raise StoreError("value refused by the database")
        return super()._apply(events, rules, dropped)


@pytest.mark.parametrize("entry", ["store_in_db", "poll_once"])
def test_a_message_the_store_refuses_fails_alone(entry: str) -> None:
    store = RefusingStore()
    bodies = [json.dumps(good_event(f"ok/{i}/")) for i in range(9)]
    bodies.insert(3, json.dumps(good_event("refuse/it/")))
    assert ENTRY_POINTS[entry](store, bodies) == {3}
    assert {f"ok/{i}/" for i in range(9)} == stored_prefixes(store)


def test_simulate_survives_a_deep_array_on_its_first_line() -> None:
    # A first line starting with "[" is first tried as one JSON array for the whole input.
    store = open_store("memory://")
    bodies = [deep(10_000), json.dumps(good_event("ok/1/"))]
    assert via_simulate(store, bodies) == {0}
    assert stored_prefixes(store) == {"ok/1/"}
