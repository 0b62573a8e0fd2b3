"""Factories of real-shaped events (EDP, S3, SQS, SNS, Lambda) for consumer tests.

Every factory starts from a JSON template shipped in ``consumers/testing/events/``
(copies of what AWS really sends), fills in the fields a test cares about and
wraps the result in the requested envelope. Ids are derived from the content,
so the same call always gives the same event (fixture files stay diffable).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal
from urllib.parse import quote_plus

Envelope = Literal["eventbridge", "sqs", "sns", "lambda-sqs", "lambda-sns"]

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DEFAULT_TIME = "2022-12-08T20:01:34Z"
_ID_NAMESPACE = uuid.UUID("0b5c2d1e-6f0a-4b7e-9a43-7c1f00edc0de")
WRAPPERS: tuple[str, ...] = ("sqs", "sns", "lambda-sqs", "lambda-sns")


@cache
def _template_text(name: str) -> str:
    return (resources.files("consumers.testing") / "events" / f"{name}.json").read_text("utf-8")


def event_template_names() -> list[str]:
    """Names of the JSON templates shipped with the kit (without ``.json``)."""
    folder = resources.files("consumers.testing") / "events"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of the shipped JSON template ``name`` (e.g. ``"package_objects_ready"``)."""
    try:
        return json.loads(_template_text(name))
    except FileNotFoundError as err:
        raise ValueError(
            f"no event template {name!r}; known templates: {', '.join(event_template_names())}"
        ) from err


def _stable_id(*parts: object) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, json.dumps(parts, sort_keys=True, default=str)))


def _body_text(event: Mapping[str, Any] | str) -> str:
    return event if isinstance(event, str) else json.dumps(event)


def wrap(
    event: Mapping[str, Any] | str,
    envelope: str | Iterable[str],
    *,
    topic_arn: str = f"arn:aws:sns:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:edp-events",
    queue_arn: str = f"arn:aws:sqs:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:edp-consumer-queue",
    subject: str | None = None,
) -> dict[str, Any]:
    """Wrap ``event`` as AWS delivers it through SQS or SNS.

    ``envelope`` is one of ``"sqs"`` (an SQS message as ``ReceiveMessage`` returns
    it), ``"sns"`` (an SNS notification, as an SQS subscriber receives it),
    ``"lambda-sqs"`` / ``"lambda-sns"`` (the event Lambda receives from an SQS
    queue / SNS topic), or a sequence of them applied innermost first:
    ``("sns", "lambda-sqs")`` is an SNS notification delivered to a queue that
    triggers a Lambda.
    """
    layers = [envelope] if isinstance(envelope, str) else list(envelope)
    wrapped: Mapping[str, Any] | str = event
    for layer in layers:
        wrapped = _wrap_once(wrapped, layer, topic_arn, queue_arn, subject)
    if isinstance(wrapped, str):
        raise ValueError("wrap() needs at least one envelope")
    return dict(wrapped)


def _wrap_once(
    event: Mapping[str, Any] | str,
    layer: str,
    topic_arn: str,
    queue_arn: str,
    subject: str | None,
) -> dict[str, Any]:
    body = _body_text(event)
    message_id = _stable_id(layer, body)
    md5 = hashlib.md5(body.encode("utf-8")).hexdigest()
    region = topic_arn.split(":")[3] if layer.endswith("sns") else queue_arn.split(":")[3]
    if layer == "sqs":
        message = load_event("sqs_message")
        message.update(MessageId=message_id, MD5OfBody=md5, Body=body)
        return message
    if layer == "lambda-sqs":
        lambda_event = load_event("lambda_sqs_event")
        record = lambda_event["Records"][0]
        record.update(
            messageId=message_id,
            md5OfBody=md5,
            body=body,
            eventSourceARN=queue_arn,
            awsRegion=region,
        )
        return lambda_event
    if layer == "sns":
        notification = load_event("sns_notification")
        notification.update(MessageId=message_id, TopicArn=topic_arn, Message=body)
        _set_subject(notification, subject)
        notification["UnsubscribeURL"] = _unsubscribe_url(topic_arn)
        return notification
    if layer == "lambda-sns":
        lambda_event = load_event("lambda_sns_event")
        record = lambda_event["Records"][0]
        record["EventSubscriptionArn"] = f"{topic_arn}:{_stable_id('subscription', topic_arn)}"
        record["Sns"].update(
            MessageId=message_id,
            TopicArn=topic_arn,
            Message=body,
            Subject=subject,
            UnsubscribeUrl=_unsubscribe_url(topic_arn),
        )
        return lambda_event
    raise ValueError(f"unknown envelope {layer!r}; use one of {', '.join(WRAPPERS)}")


def _set_subject(notification: dict[str, Any], subject: str | None) -> None:
    # SNS leaves "Subject" out of the notification when the publisher gave none.
    if subject is None:
        notification.pop("Subject", None)
    else:
        notification["Subject"] = subject


def _unsubscribe_url(topic_arn: str) -> str:
    region = topic_arn.split(":")[3]
    subscription = f"{topic_arn}:{_stable_id('subscription', topic_arn)}"
    return f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription}"


def _finish(event: dict[str, Any], envelope: str | Iterable[str] | None) -> dict[str, Any]:
    if envelope is None or envelope == "eventbridge":
        return event
    layers = [envelope] if isinstance(envelope, str) else list(envelope)
    if layers and layers[0] == "eventbridge":
        layers = layers[1:]
    return wrap(event, layers) if layers else event


def package_objects_ready(
    bucket: str,
    prefix: str,
    *,
    envelope: Envelope | Iterable[str] = "eventbridge",
    time: str = DEFAULT_TIME,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    **extras: Any,
) -> dict[str, Any]:
    """A ``package-objects-ready`` event for ``s3://bucket/prefix``, as the emitter publishes it.

    The detail holds Quilt's fields (``version``, ``bucket``, ``prefix``) and the
    emitter's additions (``count``, ``trigger``, ``batch_id``,
    ``first_event_time``, ``last_event_time``). ``extras`` override or add detail
    fields; an extra set to ``None`` removes that field, so
    ``package_objects_ready(b, p, count=None, trigger=None, batch_id=None,
    first_event_time=None, last_event_time=None)`` is the event of Quilt's EDP.
    """
    event = load_event("package_objects_ready")
    detail = event["detail"]
    detail.update(bucket=bucket, prefix=prefix, batch_id=_stable_id("batch", bucket, prefix, time))
    detail.update(first_event_time=time, last_event_time=time)
    for name, value in extras.items():
        if value is None:
            detail.pop(name, None)
        else:
            detail[name] = value
    event.update(
        id=_stable_id("ready", detail),
        time=time,
        region=region,
        account=account,
        resources=[f"arn:aws:s3:::{bucket}"],
    )
    return _finish(event, envelope)


def aws_encoded_key(key: str) -> str:
    """``key`` encoded the way S3 events carry it (form encoding: space is ``+``)."""
    return quote_plus(key, safe="/")


def s3_sequencer(moment: datetime | str, counter: int = 0) -> str:
    """A sequencer in S3's shape: the event's time in epoch seconds as 10 hex digits, then a
    counter as 8 (18 upper-case hex digits, like ``0062E99A88DC407460``). A later event gets a
    greater sequencer, as on AWS, so a later write to a key is never taken for a stale one, and
    one folder's dedupe identities sort by time in the emitter's stores. ``moment``: a datetime
    or an ISO 8601 text such as ``2022-12-08T19:56:30Z`` (UTC when it has no time zone)."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{int(when.timestamp()):010X}{counter % 2**32:08X}"


def s3_object_event(
    bucket: str,
    key: str,
    *,
    kind: Literal["created", "deleted"] = "created",
    shape: Literal["eventbridge", "s3"] = "eventbridge",
    envelope: str | Iterable[str] | None = None,
    size: int = 1024,
    etag: str | None = None,
    version_id: str | None = None,
    sequencer: str | None = None,
    time: str = "2022-12-08T19:56:30Z",
    event_id: str | None = None,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
) -> dict[str, Any]:
    """An S3 object event for ``s3://bucket/key``.

    ``shape="eventbridge"`` gives the EventBridge event (``Object Created`` /
    ``Object Deleted``); ``shape="s3"`` gives an S3 event notification
    (``{"Records": [...]}``). The key is URL-encoded in both shapes, as AWS does.
    ``version_id=None`` leaves the version id out (an unversioned bucket);
    ``etag`` defaults to a value derived from the key; ``sequencer`` to
    :func:`s3_sequencer` of ``time`` with a counter derived from the event.
    """
    if kind not in ("created", "deleted"):
        raise ValueError(f"kind must be 'created' or 'deleted', not {kind!r}")
    if shape not in ("eventbridge", "s3"):
        raise ValueError(f"shape must be 'eventbridge' or 's3', not {shape!r}")
    encoded = aws_encoded_key(key)
    etag = etag or hashlib.md5(f"{bucket}/{key}".encode()).hexdigest()
    if not sequencer:
        digest = hashlib.sha1(f"{kind}{bucket}/{key}{time}".encode()).hexdigest().upper()
        try:
            sequencer = s3_sequencer(time, int(digest[:8], 16))
        except ValueError:  # a time that is not ISO 8601 (a test of bad input): digits only
            sequencer = digest[:18]
    if shape == "eventbridge":
        event = load_event(f"s3_object_{kind}_eventbridge")
        obj: dict[str, Any] = {"key": encoded}
        if kind == "created":
            obj.update(size=size, etag=etag)
        if version_id is not None:
            obj["version-id"] = version_id
        obj["sequencer"] = sequencer
        event["detail"]["bucket"]["name"] = bucket
        event["detail"]["object"] = obj
        event["detail"]["requester"] = account
        event.update(
            id=event_id or _stable_id("s3", bucket, key, kind, time, sequencer),
            time=time,
            region=region,
            account=account,
            resources=[f"arn:aws:s3:::{bucket}"],
        )
    else:
        event = load_event(f"s3_notification_{kind}")
        record = event["Records"][0]
        s3_obj: dict[str, Any] = {"key": encoded}
        if kind == "created":
            s3_obj.update(size=size, eTag=etag)
        if version_id is not None:
            s3_obj["versionId"] = version_id
        s3_obj["sequencer"] = sequencer
        record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
        record["s3"]["object"] = s3_obj
        record.update(eventTime=_with_millis(time), awsRegion=region)
        if event_id is not None:
            record["responseElements"]["x-amz-request-id"] = event_id
    return _finish(event, envelope)


def _with_millis(time: str) -> str:
    # S3 notifications carry milliseconds ("...:30.000Z"); EventBridge uses whole seconds.
    if time.endswith("Z") and "." not in time:
        return time[:-1] + ".000Z"
    return time
