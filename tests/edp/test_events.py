"""Input shapes, envelopes, key decoding and bad input (SEMANTICS.md section 2)."""

from __future__ import annotations

import json

import pytest

from edp.errors import BadEventError
from edp.events import MAX_KEY_BYTES, parse_message
from tests.helpers import eb_event, load_event, s3_record

INSTRUMENT_KEY = "sequencer-1/exp 42/run+1/reads R1.fastq.gz"


@pytest.mark.parametrize(
    ("fixture", "keys"),
    [
        ("eventbridge_object_created", [("created", INSTRUMENT_KEY)]),
        ("eventbridge_object_deleted", [("deleted", INSTRUMENT_KEY)]),
        (
            "s3_notification_put",
            [
                ("created", "sequencer-1/exp-7/sample sheet.csv"),
                ("created", "sequencer-1/exp-7/échantillon #1.bam"),
            ],
        ),
        ("s3_notification_delete", [("deleted", "sequencer-1/exp-7/sample sheet.csv")]),
        (
            "lambda_sqs_batch",
            [
                ("created", INSTRUMENT_KEY),
                ("created", "sequencer-1/exp-7/sample sheet.csv"),
                ("created", "sequencer-1/exp-7/échantillon #1.bam"),
            ],
        ),
        (
            "lambda_sqs_of_sns",
            [
                ("created", "sequencer-1/exp-7/sample sheet.csv"),
                ("created", "sequencer-1/exp-7/échantillon #1.bam"),
            ],
        ),
        (
            "sns_notification_s3",
            [
                ("created", "sequencer-1/exp-7/sample sheet.csv"),
                ("created", "sequencer-1/exp-7/échantillon #1.bam"),
            ],
        ),
        ("lambda_sns_event", [("created", INSTRUMENT_KEY)]),
    ],
)
def test_every_shape_and_envelope_is_recognised(fixture: str, keys: list[tuple[str, str]]) -> None:
    parsed = parse_message(json.dumps(load_event(fixture)))
    assert [(e.kind, e.key) for e in parsed.events] == keys
    assert all(e.bucket == "instrument-bucket" for e in parsed.events)


def test_fields_are_carried_from_eventbridge() -> None:
    (event,) = parse_message(load_event("eventbridge_object_created")).events
    assert event.size == 5 and event.etag == "b1946ac92492d2347c6235b4d2611184"
    assert event.version_id == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
    assert event.sequencer == "00617F08299329D189"
    assert event.event_id == "17793124-05d4-b198-2fde-7ededc63b103"
    assert event.event_time.isoformat() == "2021-11-12T00:00:00+00:00"


def test_sqs_message_as_received_by_a_service_is_recognised() -> None:
    message = {"MessageId": "m-1", "ReceiptHandle": "r", "Body": json.dumps(eb_event("a/b/c d"))}
    assert [e.key for e in parse_message(message).events] == ["a/b/c d"]


def test_test_events_and_other_types_are_ignored_and_counted() -> None:
    assert dict(parse_message(load_event("s3_test_event")).ignored) == {"test-event": 1}
    assert dict(parse_message(load_event("eventbridge_object_restore")).ignored) == {
        "ignored-type": 1
    }
    tagging = {**s3_record("a/b/c"), "eventName": "ObjectTagging:Put"}
    assert dict(parse_message({"Records": [tagging]}).ignored) == {"ignored-type": 1}


def test_plus_is_a_space_and_percent_2b_a_plus() -> None:
    (event,) = parse_message(eb_event("a/b/x+y z", encode=True)).events
    assert event.key == "a/b/x+y z"
    (raw,) = parse_message({"Records": [s3_record("a/b/%41 +")]}).events
    assert raw.key == "a/b/%41 +"


def test_eventbridge_decoding_can_be_turned_off_for_emulators() -> None:
    unencoded = eb_event("a/b/x+y", encode=False)
    assert parse_message(unencoded, eventbridge_keys_encoded=False).events[0].key == "a/b/x+y"
    assert parse_message(unencoded).events[0].key == "a/b/x y"
    # S3 notifications are always decoded.
    record = {"Records": [s3_record("a/b/x y")]}
    assert parse_message(record, eventbridge_keys_encoded=False).events[0].key == "a/b/x y"


def test_unicode_and_maximum_length_keys() -> None:
    longest = "a/b/" + "é" * ((MAX_KEY_BYTES - 4) // 2)
    assert len(longest.encode()) == MAX_KEY_BYTES
    assert parse_message(eb_event(longest)).events[0].key == longest
    with pytest.raises(BadEventError, match="1025 bytes, longer than S3's 1024-byte limit"):
        parse_message(eb_event(longest + "x"))
    emoji = "lab/🧪 run/データ.csv"
    assert parse_message(eb_event(emoji)).events[0].key == emoji


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("42", "expected a JSON object, got int"),
        ('{"hello": "world"}', "unknown event shape"),
        ({"Records": "nope"}, "Records: expected a list"),
        ({"Records": [{"eventSource": "aws:kinesis"}]}, "unknown record"),
        (
            {"source": "aws.s3", "detail-type": "Object Created", "time": "2022-12-08T20:00:00Z"},
            "missing detail",
        ),
        (
            {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "time": "2022-12-08T20:00:00Z",
                "detail": {"object": {"key": "a/b/c"}},
            },
            "missing bucket",
        ),
        (
            {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "time": "2022-12-08T20:00:00Z",
                "detail": {"bucket": {"name": "b"}, "object": {}},
            },
            "missing key",
        ),
        (
            {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "time": "2022-12-08T20:00:00Z",
                "detail": {"bucket": {"name": "b"}, "object": {"key": 7}},
            },
            "key: expected a non-empty string",
        ),
        (
            {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "time": "yesterday",
                "detail": {"bucket": {"name": "b"}, "object": {"key": "a/b/c"}},
            },
            "not an RFC 3339 time",
        ),
        (
            {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "time": "2022-12-08T20:00:00Z",
                "detail": {"bucket": {"name": "b"}, "object": {"key": "a/b/c", "size": "big"}},
            },
            "size: expected a whole number",
        ),
        ({"Records": [{**s3_record("a/b/c"), "eventTime": None}]}, "eventTime: missing"),
        ({"Type": "Notification", "Message": "{oops"}, "Message: not JSON"),
        (
            {"Records": [{"messageId": "1", "eventSource": "aws:sqs", "body": 5}]},
            "body: expected a JSON string",
        ),
    ],
)
def test_bad_input_is_rejected_with_an_error_naming_what_is_wrong(
    message: object, error: str
) -> None:
    with pytest.raises(BadEventError, match=error):
        parse_message(message)  # type: ignore[arg-type]
