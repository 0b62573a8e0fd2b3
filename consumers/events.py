"""Typed ``package-objects-ready`` events, parsed from any envelope AWS delivers them in.

Light on purpose: no quilt3 or boto3 import, so any code can parse events cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.errors import BadEventError
from edp_common.envelopes import check_depth, load_json, opened, records
from edp_common.errors import EnvelopeError

READY_DETAIL_TYPE = "package-objects-ready"
# S3 object events sent to a consumer by mistake (its rule or subscription matches the bucket's
# own events): named as such, so the fix (route package-objects-ready instead) is obvious.
S3_EVENTBRIDGE_SOURCE = "aws.s3"
S3_NOTIFICATION_SOURCE = "aws:s3"
S3_TEST_EVENT = "s3:TestEvent"
NOT_READY_BUT_S3 = (
    "this is an S3 object event, not package-objects-ready: send the consumer the emitter's "
    "events (source com.quiltdata.edp), not the bucket's own"
)


@dataclass(frozen=True)
class ReadyEvent:
    """One ``package-objects-ready`` detail: Quilt's three fields plus the emitter's optional extras."""

    bucket: str
    prefix: str
    version: str = "0.1"
    count: int | None = None
    trigger: str | None = None
    batch_id: str | None = None
    first_event_time: str | None = None
    last_event_time: str | None = None

    @property
    def s3_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_ready_event(payload: Mapping[str, Any] | str | bytes) -> ReadyEvent:
    """Parse a payload that must hold exactly one ``package-objects-ready`` event."""
    events = parse_ready_events(payload)
    if len(events) != 1:
        raise BadEventError(
            f"expected exactly one package-objects-ready event, found {len(events)}"
        )
    return events[0]


def parse_ready_events(payload: Mapping[str, Any] | str | bytes) -> list[ReadyEvent]:
    """Parse every ``package-objects-ready`` event in ``payload``.

    Accepted: an EventBridge event, its bare ``detail``, an SQS message (``Body``) or its body,
    an SNS notification (``Type: Notification``), a Lambda SQS event or a Lambda SNS event,
    nested in one another. Raises :class:`BadEventError` naming what is wrong and where.
    """
    try:
        return _parse(payload, where="event", depth=0)
    except EnvelopeError as err:
        raise BadEventError(str(err)) from err


def _parse(payload: Any, *, where: str, depth: int) -> list[ReadyEvent]:
    check_depth(depth, where)
    payload = load_json(payload, where)
    if not isinstance(payload, Mapping):
        raise BadEventError(f"{where}: expected a JSON object, got {_type_name(payload)}")
    found = records(payload, where)
    if found is not None:
        if not found:
            raise BadEventError(f"{where}.Records: expected a non-empty list")
        events: list[ReadyEvent] = []
        for index, record in enumerate(found):
            events.extend(_parse_record(record, where=f"{where}.Records[{index}]", depth=depth))
        return events
    inner = opened(payload, where)
    if inner is not None:
        carried, path = inner
        return _parse(carried, where=path, depth=depth + 1)
    if payload.get("source") == S3_EVENTBRIDGE_SOURCE or payload.get("Event") == S3_TEST_EVENT:
        raise BadEventError(f"{where}: {NOT_READY_BUT_S3}")
    if "detail" in payload or "detail-type" in payload:
        detail_type = payload.get("detail-type")
        if detail_type != READY_DETAIL_TYPE:
            raise BadEventError(
                f"{where}.detail-type: expected {READY_DETAIL_TYPE!r}, got {detail_type!r}"
            )
        return [_parse_detail(payload.get("detail"), where=f"{where}.detail")]
    if "bucket" in payload or "prefix" in payload:
        return [_parse_detail(payload, where=where)]
    raise BadEventError(
        f"{where}: not a package-objects-ready event nor an SQS/SNS envelope "
        f"(keys: {sorted(payload)[:8]})"
    )


def _parse_record(record: Any, *, where: str, depth: int) -> list[ReadyEvent]:
    if not isinstance(record, Mapping):
        raise BadEventError(f"{where}: expected a JSON object, got {_type_name(record)}")
    inner = opened(record, where)
    if inner is not None:  # a Lambda SQS or SNS record
        carried, path = inner
        return _parse(carried, where=path, depth=depth + 1)
    if record.get("eventSource") == S3_NOTIFICATION_SOURCE or "s3" in record:
        raise BadEventError(f"{where}: {NOT_READY_BUT_S3}")
    raise BadEventError(f"{where}: neither an SQS record (body) nor an SNS record (Sns.Message)")


def _parse_detail(detail: Any, *, where: str) -> ReadyEvent:
    if not isinstance(detail, Mapping):
        raise BadEventError(f"{where}: expected a JSON object, got {_type_name(detail)}")
    version = _required_string(detail, "version", where)
    bucket = _required_string(detail, "bucket", where)
    prefix = _required_string(detail, "prefix", where)
    if prefix.startswith("/"):
        raise BadEventError(f"{where}.prefix: must not start with '/', got {prefix!r}")
    if not prefix.endswith("/"):
        # Quilt's events always end the prefix with '/'; without it a listing of "a/b"
        # would also match "a/bc/...", so the folder reading is the only safe one.
        prefix += "/"
    count = detail.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise BadEventError(f"{where}.count: expected a non-negative integer, got {count!r}")
    return ReadyEvent(
        bucket=bucket,
        prefix=prefix,
        version=version,
        count=count,
        trigger=_optional_string(detail, "trigger", where),
        batch_id=_optional_string(detail, "batch_id", where),
        first_event_time=_optional_time(detail, "first_event_time", where),
        last_event_time=_optional_time(detail, "last_event_time", where),
    )


def _required_string(detail: Mapping[str, Any], key: str, where: str) -> str:
    if key not in detail:
        raise BadEventError(f"{where}: missing required field {key!r}")
    value = detail[key]
    if not isinstance(value, str) or not value:
        raise BadEventError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _optional_string(detail: Mapping[str, Any], key: str, where: str) -> str | None:
    value = detail.get(key)
    if value is not None and not isinstance(value, str):
        raise BadEventError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _optional_time(detail: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _optional_string(detail, key, where)
    if value is not None:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as err:
            raise BadEventError(f"{where}.{key}: not an RFC 3339 time: {value!r}") from err
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
