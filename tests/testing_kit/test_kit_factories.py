"""Tests of the testing kit's event factories: every shape parses to the event that was asked for."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.events import ReadyEvent, parse_ready_events
from consumers.testing import (
    event_template_names,
    load_event,
    package_objects_ready,
    s3_object_event,
    s3_sequencer,
    wrap,
)
from edp.core import RoutedEvent, Rules
from edp.events import parse_message
from edp.store import open_store

ENVELOPES: list[str | tuple[str, ...]] = ["eventbridge", "sqs", "sns", "lambda-sqs", "lambda-sns"]
NESTED: list[str | tuple[str, ...]] = [
    ("sns", "sqs"),
    ("sns", "lambda-sqs"),
    ("sqs", "sns", "lambda-sqs"),
]
KEYS = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
).map(lambda text: f"instrument/run-1/{text}")


@pytest.mark.parametrize("envelope", ENVELOPES + NESTED)
def test_every_envelope_of_a_ready_event_parses_to_the_same_event(envelope) -> None:
    event = package_objects_ready(
        "lab-bucket", "instrument/run-1/", envelope=envelope, count=4, trigger="count"
    )

    assert parse_ready_events(event) == [
        ReadyEvent(
            bucket="lab-bucket",
            prefix="instrument/run-1/",
            count=4,
            trigger="count",
            batch_id=package_objects_ready("lab-bucket", "instrument/run-1/")["detail"]["batch_id"],
            first_event_time="2022-12-08T20:01:34Z",
            last_event_time="2022-12-08T20:01:34Z",
        )
    ]


def test_a_ready_event_has_the_emitters_full_shape() -> None:
    event = package_objects_ready("lab-bucket", "instrument/run-1/", time="2024-01-02T03:04:05Z")

    assert event["source"] == "com.quiltdata.edp"
    assert event["detail-type"] == "package-objects-ready"
    assert event["resources"] == ["arn:aws:s3:::lab-bucket"]
    assert event["time"] == "2024-01-02T03:04:05Z"
    assert set(event) == set(load_event("package_objects_ready"))
    assert set(event["detail"]) == {
        "version",
        "bucket",
        "prefix",
        "count",
        "trigger",
        "batch_id",
        "first_event_time",
        "last_event_time",
    }


def test_extras_set_to_none_give_quilts_three_field_detail() -> None:
    event = package_objects_ready(
        "b-1",
        "a/b/",
        count=None,
        trigger=None,
        batch_id=None,
        first_event_time=None,
        last_event_time=None,
    )

    assert event["detail"] == {"version": "0.1", "bucket": "b-1", "prefix": "a/b/"}


def test_the_same_call_gives_the_same_event_and_another_prefix_another_id() -> None:
    first = package_objects_ready("b-1", "a/b/", envelope="lambda-sqs")

    assert package_objects_ready("b-1", "a/b/", envelope="lambda-sqs") == first
    assert (
        package_objects_ready("b-1", "a/c/")["detail"]["batch_id"]
        != package_objects_ready("b-1", "a/b/")["detail"]["batch_id"]
    )


def test_sqs_wrappers_carry_the_md5_of_their_body_as_sqs_does() -> None:
    message = wrap(package_objects_ready("b-1", "a/b/"), "sqs")
    record = wrap(package_objects_ready("b-1", "a/b/"), "lambda-sqs")["Records"][0]

    assert message["MD5OfBody"] == hashlib.md5(message["Body"].encode()).hexdigest()
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"


def test_an_sns_subject_is_left_out_unless_given() -> None:
    plain = wrap(package_objects_ready("b-1", "a/b/"), "sns")
    titled = wrap(package_objects_ready("b-1", "a/b/"), "sns", subject="ready")

    assert "Subject" not in plain
    assert titled["Subject"] == "ready"
    assert plain["Type"] == "Notification"


def test_an_unknown_envelope_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown envelope 'kinesis'"):
        package_objects_ready("b-1", "a/b/", envelope="kinesis")


@pytest.mark.parametrize("shape", ["eventbridge", "s3"])
@pytest.mark.parametrize("kind", ["created", "deleted"])
@pytest.mark.parametrize("envelope", [None, "sqs", "sns", "lambda-sqs", "lambda-sns"])
def test_s3_object_events_are_read_by_the_emitter_as_asked(kind, shape, envelope) -> None:
    event = s3_object_event(
        "lab-bucket",
        "instrument/run 1/a+b é.csv",
        kind=kind,
        shape=shape,
        envelope=envelope,
        size=77,
        version_id="v-1",
        sequencer="00ABC",
        time="2024-01-02T03:04:05Z",
    )

    (parsed,) = parse_message(event).events

    assert (parsed.bucket, parsed.key, parsed.kind) == (
        "lab-bucket",
        "instrument/run 1/a+b é.csv",
        kind,
    )
    assert (parsed.version_id, parsed.sequencer) == ("v-1", "00ABC")
    assert parsed.size == (77 if kind == "created" else None)
    assert parsed.event_time.isoformat().startswith("2024-01-02T03:04:05")


def test_s3_sequencers_begin_with_the_events_epoch_seconds() -> None:
    assert s3_sequencer("2022-08-02T21:43:36Z", 0xDC407460) == "0062E99A88DC407460"
    assert s3_sequencer("2022-08-02T21:43:36") == "0062E99A8800000000"  # no zone: UTC
    default = s3_object_event("lab", "run/a.csv", time="2022-08-02T21:43:36Z")
    assert default["detail"]["object"]["sequencer"].startswith("0062E99A88")


@pytest.mark.parametrize("shape", ["eventbridge", "s3"])
def test_a_later_write_to_one_key_is_never_stale_by_default(shape) -> None:
    """The default sequencers order writes by time, as AWS's do (random ones made half the
    later writes of a key look stale to the emitter)."""
    store = open_store("memory://")
    accepted = 0
    for second in range(20):
        event = s3_object_event(
            "lab", "run/a.csv", shape=shape, time=f"2024-01-02T03:04:{second:02d}Z"
        )
        (parsed,) = parse_message(event).events
        routed = RoutedEvent(parsed, "run/", parsed.event_time)
        before = store.counters().get("accepted", 0)
        store.ingest([routed], Rules())
        accepted += store.counters().get("accepted", 0) - before
    assert accepted == 20 and store.counters().get("stale", 0) == 0


@pytest.mark.parametrize("shape", ["eventbridge", "s3"])
def test_keys_are_url_encoded_in_both_s3_shapes_as_aws_does(shape) -> None:
    event = s3_object_event("b-1", "dir/a b+c é.txt", shape=shape)

    key = (
        event["detail"]["object"]["key"]
        if shape == "eventbridge"
        else event["Records"][0]["s3"]["object"]["key"]
    )
    assert key == "dir/a+b%2Bc+%C3%A9.txt"


@given(key=KEYS)
def test_any_key_survives_encoding_and_the_emitters_decoding(key: str) -> None:
    (parsed,) = parse_message(s3_object_event("b-1", key)).events

    assert parsed.key == key


def test_an_unversioned_object_event_has_no_version_id() -> None:
    event = s3_object_event("b-1", "a/b/c.txt")

    assert "version-id" not in event["detail"]["object"]
    assert event["detail-type"] == "Object Created"
    assert event["source"] == "aws.s3"


def test_every_shipped_template_is_json_and_loads_by_name() -> None:
    names = event_template_names()

    assert "package_objects_ready" in names
    assert "s3_notification_created" in names
    for name in names:
        assert json.dumps(load_event(name))


def test_an_unknown_template_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"known templates: .*package_objects_ready"):
        load_event("nope")
