"""One envelope module (edp_common.envelopes) for the emitter's and the consumers' parsers: the
same SQS/SNS/Records unwrapping, depth limit and wording on both sides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumers.errors import BadEventError as ConsumerBadEvent
from consumers.events import parse_ready_events
from edp.errors import BadEventError as EmitterBadEvent
from edp.events import parse_message
from edp_common.envelopes import MAX_ENVELOPE_DEPTH, is_sqs_batch


def wrapped(inner: Any, times: int) -> Any:
    for _ in range(times):
        inner = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(inner)}
    return inner


def both_refuse(payload: Any) -> tuple[str, str]:
    with pytest.raises(EmitterBadEvent) as emitter:
        parse_message(payload)
    with pytest.raises(ConsumerBadEvent) as consumer:
        parse_ready_events(payload)
    return str(emitter.value), str(consumer.value)


READY = {
    "source": "com.quiltdata.edp",
    "detail-type": "package-objects-ready",
    "detail": {"version": "0.1", "bucket": "b-1", "prefix": "a/"},
}


def test_both_sides_take_the_same_depth_and_refuse_one_more() -> None:
    assert parse_ready_events(wrapped(READY, MAX_ENVELOPE_DEPTH))[0].bucket == "b-1"
    s3 = {"Records": [{"eventSource": "aws:s3", "s3": {}}]}
    emitter, consumer = both_refuse(wrapped(s3, MAX_ENVELOPE_DEPTH + 1))
    assert f"envelopes nested more than {MAX_ENVELOPE_DEPTH} deep" in emitter
    assert f"envelopes nested more than {MAX_ENVELOPE_DEPTH} deep" in consumer


@pytest.mark.parametrize(
    ("body", "wording"),
    [
        ("not json {", "not JSON ("),
        ("[" * 5000 + "]" * 5000, "JSON nested too deeply to be an event"),
        (12, "expected a JSON string, got int"),
    ],
)
def test_a_broken_sqs_body_is_worded_the_same_on_both_sides(body: Any, wording: str) -> None:
    payload = {"Records": [{"eventSource": "aws:sqs", "messageId": "m-1", "body": body}]}
    emitter, consumer = both_refuse(payload)
    assert "Records[0].body" in emitter and "Records[0].body" in consumer
    assert wording in emitter and wording in consumer


def test_what_is_an_sqs_batch() -> None:
    assert is_sqs_batch({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]})
    assert not is_sqs_batch({"Records": [{"eventSource": "aws:s3"}]})
    assert not is_sqs_batch({"Records": []})
    assert not is_sqs_batch([{"eventSource": "aws:sqs"}])
