"""Parsing package-objects-ready events from every envelope AWS delivers them in."""

from __future__ import annotations

import json

import pytest

from consumers.errors import BadEventError
from consumers.events import ReadyEvent, parse_ready_event, parse_ready_events
from tests.helpers import load_event

EXPECTED = ReadyEvent(
    bucket="instrument-bucket",
    prefix="genome-lab/exp-0042/",
    version="0.1",
    count=3,
    trigger="duration",
    batch_id="b7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5",
    first_event_time="2022-12-08T19:55:01Z",
    last_event_time="2022-12-08T19:56:34Z",
)


def test_an_eventbridge_ready_event_is_read_with_its_extras() -> None:
    assert parse_ready_event(load_event("ready_eventbridge")) == EXPECTED


def test_quilts_three_field_ready_event_is_read_without_extras() -> None:
    event = parse_ready_event(load_event("ready_eventbridge_quilt_example"))
    assert event == ReadyEvent(
        bucket="bucket-name", prefix="prefix-path-1/prefix-path-2/", version="0.1"
    )
    assert event.count is None and event.batch_id is None


@pytest.mark.parametrize("name", ["ready_sns_notification", "ready_lambda_sns"])
def test_a_ready_event_in_either_sns_envelope_is_read(name: str) -> None:
    assert parse_ready_events(load_event(name)) == [EXPECTED]


def test_sqs_message_body_of_an_sns_notification_as_text_and_bytes() -> None:
    text = json.dumps(load_event("ready_sns_notification"))
    assert parse_ready_event(text) == EXPECTED
    assert parse_ready_event(text.encode()) == EXPECTED


def test_a_boto3_received_message_and_a_bare_detail_are_read() -> None:
    eventbridge = load_event("ready_eventbridge")
    assert parse_ready_event({"MessageId": "1", "Body": json.dumps(eventbridge)}) == EXPECTED
    assert parse_ready_event(eventbridge["detail"]) == EXPECTED


def test_lambda_sqs_batch_reports_the_bad_record_by_position() -> None:
    records = load_event("ready_lambda_sqs")["Records"]
    assert parse_ready_events({"Records": records[:2]}) == [EXPECTED, EXPECTED]
    with pytest.raises(
        BadEventError, match=r"Records\[2\]\.body\.detail: missing required field 'prefix'"
    ):
        parse_ready_events({"Records": records})


def test_prefix_without_trailing_slash_is_read_as_a_folder() -> None:
    assert parse_ready_event({"version": "0.1", "bucket": "b-1", "prefix": "a/b"}).prefix == "a/b/"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "expected a JSON object, got list"),
        ({"hello": "world"}, "not a package-objects-ready event"),
        ({"Records": []}, "non-empty list"),
        ({"Records": [{"eventSource": "aws:s3"}]}, "this is an S3 object event"),
        ({"Records": [{"eventSource": "aws:sqs"}]}, "neither an SQS record"),
        ({"version": "0.1", "bucket": "b-1"}, "missing required field 'prefix'"),
        ({"version": "0.1", "bucket": "", "prefix": "a/"}, "bucket: expected a non-empty string"),
        (
            {"version": 1, "bucket": "b-1", "prefix": "a/"},
            "version: expected a non-empty string, got 1",
        ),
        ({"version": "0.1", "bucket": "b-1", "prefix": "/a/"}, "must not start with '/'"),
        (
            {"version": "0.1", "bucket": "b-1", "prefix": "a/", "count": -1},
            "count: expected a non-negative",
        ),
        (
            {"version": "0.1", "bucket": "b-1", "prefix": "a/", "count": True},
            "count: expected a non-negative",
        ),
        (
            {"version": "0.1", "bucket": "b-1", "prefix": "a/", "trigger": 5},
            "trigger: expected a string",
        ),
        (
            {"version": "0.1", "bucket": "b-1", "prefix": "a/", "first_event_time": "yesterday"},
            "first_event_time: not an RFC 3339 time",
        ),
        (
            {"detail-type": "package-objects-ready", "detail": "x"},
            "detail: expected a JSON object, got str",
        ),
    ],
)
def test_bad_payloads_say_what_is_wrong(payload: object, message: str) -> None:
    with pytest.raises(BadEventError, match=message):
        parse_ready_events(payload)  # type: ignore[arg-type]


def test_a_wrong_detail_type_or_a_missing_prefix_is_a_bad_event() -> None:
    with pytest.raises(
        BadEventError, match="detail-type: expected 'package-objects-ready', got 'Object Created'"
    ):
        parse_ready_event(load_event("ready_with_s3_detail_type"))
    with pytest.raises(BadEventError, match="missing required field 'prefix'"):
        parse_ready_event(load_event("ready_without_prefix"))


@pytest.mark.parametrize(
    "name",
    ["s3_notification_put", "eventbridge_object_created", "s3_test_event"],
)
def test_an_s3_object_event_sent_by_mistake_is_named_as_such(name: str) -> None:
    event = load_event(name)
    with pytest.raises(
        BadEventError, match="this is an S3 object event, not package-objects-ready"
    ):
        parse_ready_events(event)
    in_sqs = {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": json.dumps(event)}]}
    with pytest.raises(BadEventError, match=r"Records\[0\]\.body.*this is an S3 object event"):
        parse_ready_events(in_sqs)


@pytest.mark.parametrize("opening", ["[", '{"a": '])
def test_json_nested_10000_deep_is_a_bad_event_not_a_recursion_error(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    deep = opening * 10_000 + "1" + closing * 10_000
    with pytest.raises(BadEventError, match="nested too deeply"):
        parse_ready_events(deep)
    in_sqs = {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": deep}]}
    with pytest.raises(BadEventError, match="nested too deeply"):
        parse_ready_events(in_sqs)


def test_a_batch_of_two_is_refused_where_exactly_one_event_is_expected() -> None:
    records = load_event("ready_lambda_sqs")["Records"][:2]
    with pytest.raises(BadEventError, match="exactly one"):
        parse_ready_event({"Records": records})


def test_envelopes_nested_too_deep_are_refused() -> None:
    payload: object = load_event("ready_eventbridge")
    for _ in range(8):
        payload = {"Type": "Notification", "Message": json.dumps(payload)}
    with pytest.raises(BadEventError, match="nested more than"):
        parse_ready_events(payload)  # type: ignore[arg-type]


def test_events_module_does_not_import_quilt3() -> None:
    import subprocess
    import sys

    code = "import sys, consumers.events, consumers.naming; print('quilt3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
