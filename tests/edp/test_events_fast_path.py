"""The parser's fast path for the common S3 events gives exactly what the general path gives.

For generated EventBridge events and S3 notification records with awkward fields (non-ASCII,
NUL, lone surrogates, empty, overlong, encoded keys, odd sizes and times), the result with the
fast path equals the result without it: the same ObjectEvents, or the same one-line error.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edp.events as events
from edp.errors import BadEventError
from tests.helpers import load_event

text = st.one_of(
    st.sampled_from(["", "a", "exp+1/run%2B2/x y.csv", "caf\u00e9", "nul\x00", "sur\ud800", "%ZZ"]),
    st.text(max_size=12),
    st.text(alphabet="ab/%+2B", min_size=1, max_size=1030),
)
maybe_text = st.one_of(st.none(), text, st.integers(), st.booleans())
size = st.one_of(
    st.none(), st.integers(min_value=-2, max_value=2**64), st.booleans(), st.floats(), text
)
stamp = st.one_of(
    st.sampled_from(
        [
            "2022-12-08T20:00:00Z",
            "2022-12-08T20:00:00.123Z",
            "2022-12-08T21:00:00+01:00",
            "0001-01-01T00:00:00+01:00",
            "1969-12-31T23:59:59Z",
            "not a time",
            "",
        ]
    ),
    st.none(),
    st.integers(min_value=-10, max_value=2**40),
    st.floats(),
)


def outcome(message: Any, encoded: bool, *, fast: bool) -> Any:
    saved = events._eventbridge_fast, events._s3_record_fast
    if not fast:
        events._eventbridge_fast = lambda obj, encoded: None
        events._s3_record_fast = lambda record: None
    try:
        parsed = events.parse_message(message, eventbridge_keys_encoded=encoded)
        return [(e, e.identity()) for e in parsed.events], dict(parsed.ignored)
    except BadEventError as err:
        return str(err)
    finally:
        events._eventbridge_fast, events._s3_record_fast = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["Object Created", "Object Deleted", "Object Restore Completed"]),
    bucket=text,
    key=text,
    fields=st.tuples(maybe_text, maybe_text, maybe_text, maybe_text),
    size=size,
    when=stamp,
    encoded=st.booleans(),
)
def test_eventbridge_fast_and_general_paths_agree(
    kind: str,
    bucket: str,
    key: str,
    fields: tuple[Any, Any, Any, Any],
    size: Any,
    when: Any,
    encoded: bool,
) -> None:
    message = load_event("eventbridge_object_created")
    message["detail-type"], message["time"], message["id"] = kind, when, fields[3]
    message["detail"]["bucket"]["name"] = bucket
    target = message["detail"]["object"]
    target.update(key=key, size=size, etag=fields[0])
    target["version-id"], target["sequencer"] = fields[1], fields[2]
    assert outcome(message, encoded, fast=True) == outcome(message, encoded, fast=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", "ObjectRestore:Post", 7]),
    bucket=text,
    key=text,
    fields=st.tuples(maybe_text, maybe_text, maybe_text, maybe_text),
    size=size,
    when=stamp,
    response=st.sampled_from(["dict", "none", "list"]),
)
def test_s3_record_fast_and_general_paths_agree(
    name: Any,
    bucket: str,
    key: str,
    fields: tuple[Any, Any, Any, Any],
    size: Any,
    when: Any,
    response: str,
) -> None:
    message = load_event("s3_notification_put")
    record = message["Records"][0]
    record.update(eventName=name, eventTime=when)
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["object"].update(
        key=key, size=size, eTag=fields[0], versionId=fields[1], sequencer=fields[2]
    )
    if response == "dict":
        record["responseElements"] = {"x-amz-request-id": fields[3]}
    elif response == "none":
        record.pop("responseElements", None)
    else:
        record["responseElements"] = [fields[3]]
    assert outcome(message, True, fast=True) == outcome(message, True, fast=False)


@pytest.mark.parametrize(
    "name",
    [
        "eventbridge_object_created",
        "eventbridge_object_deleted",
        "s3_notification_put",
        "s3_notification_delete",
        "lambda_sqs_batch",
        "lambda_sns_event",
        "lambda_sqs_of_sns",
        "sns_notification_s3",
    ],
)
def test_every_fixture_parses_the_same_on_both_paths(name: str) -> None:
    message = load_event(name)
    fast = outcome(message, True, fast=True)
    assert fast == outcome(message, True, fast=False) and fast[0]
