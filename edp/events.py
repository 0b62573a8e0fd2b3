"""Input events: recognise every accepted S3 event shape and envelope, and turn it into ObjectEvents."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from edp.clock import parse_time
from edp.errors import BadEventError

Kind = Literal["created", "deleted"]

MAX_KEY_BYTES = 1024  # S3's limit on an object key, in UTF-8 bytes
MAX_NESTING = 5  # envelopes inside envelopes deeper than this are not a real AWS shape

# S3 event types that are not object creation or deletion: accepted, counted, ignored.
IGNORED_TYPE = "ignored-type"
TEST_EVENT = "test-event"


@dataclass(frozen=True)
class ObjectEvent:
    """One S3 object created or deleted, with its key decoded."""

    bucket: str
    key: str
    kind: Kind
    event_time: datetime
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    event_id: str | None = None

    def identity(self) -> str | None:
        """What makes two deliveries the same event, or None when they cannot be told apart.

        Computed once per event (the store and the rules both ask for it).
        """
        try:
            return self.__dict__["_identity"]  # type: ignore[no-any-return]
        except KeyError:
            pass
        parts: tuple[str, ...]
        if self.version_id is not None or self.sequencer is not None:
            parts = (
                "v",
                self.bucket,
                self.key,
                self.kind,
                self.version_id or "",
                self.sequencer or "",
            )
        elif self.event_id is not None:
            parts = ("i", self.bucket, self.key, self.kind, self.event_id)
        else:
            object.__setattr__(self, "_identity", None)
            return None
        # Length-prefixed, so no field's content can be mistaken for a separator.
        text = "".join(f"{len(part)}:{part}" for part in parts)
        # A fixed-size digest keeps the store's dedupe index small whatever the key's length.
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        object.__setattr__(self, "_identity", digest)
        return digest


@dataclass
class Parsed:
    """What one input message held: its object events and the count of ignored ones by reason."""

    events: list[ObjectEvent] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)

    def extend(self, other: Parsed) -> None:
        self.events.extend(other.events)
        self.ignored.update(other.ignored)


def parse_message(
    raw: str | bytes | Mapping[str, Any] | list[Any], *, eventbridge_keys_encoded: bool = True
) -> Parsed:
    """Parse one message (JSON text or decoded JSON) of any accepted shape; BadEventError if not."""
    return _parse(_load(raw, "message"), eventbridge_keys_encoded, depth=0, where="message")


def _load(raw: Any, where: str) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadEventError(f"{where}: not UTF-8 text") from err
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise BadEventError(f"{where}: not JSON ({err.msg} at char {err.pos})") from err
    return raw


def _parse(obj: Any, encoded: bool, depth: int, where: str) -> Parsed:
    if depth > MAX_NESTING:
        raise BadEventError(f"{where}: envelopes nested more than {MAX_NESTING} deep")
    if isinstance(obj, list):
        result = Parsed()
        for index, item in enumerate(obj):
            result.extend(_parse(item, encoded, depth + 1, f"{where}[{index}]"))
        return result
    if not isinstance(obj, Mapping):
        raise BadEventError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.get("source") == "aws.s3" and "detail-type" in obj:
        return _eventbridge(obj, encoded, where)
    if obj.get("Event") == "s3:TestEvent":
        return Parsed(ignored=Counter({TEST_EVENT: 1}))
    if obj.get("Type") == "Notification" and "Message" in obj:
        return _parse(
            _load(_text(obj, "Message", where), f"{where}.Message"),
            encoded,
            depth + 1,
            f"{where}.Message",
        )
    if "Records" in obj:
        records = obj["Records"]
        if not isinstance(records, list):
            raise BadEventError(f"{where}.Records: expected a list")
        result = Parsed()
        for index, record in enumerate(records):
            result.extend(_record(record, encoded, depth, f"{where}.Records[{index}]"))
        return result
    if "body" in obj and ("messageId" in obj or "receiptHandle" in obj):
        return _parse(
            _load(_text(obj, "body", where), f"{where}.body"), encoded, depth + 1, f"{where}.body"
        )
    if "Body" in obj and ("MessageId" in obj or "ReceiptHandle" in obj):
        return _parse(
            _load(_text(obj, "Body", where), f"{where}.Body"), encoded, depth + 1, f"{where}.Body"
        )
    hint = ", ".join(sorted(map(str, obj.keys()))[:8])
    raise BadEventError(f"{where}: unknown event shape (keys: {hint or 'none'})")


def _record(record: Any, encoded: bool, depth: int, where: str) -> Parsed:
    if not isinstance(record, Mapping):
        raise BadEventError(f"{where}: expected a JSON object")
    if record.get("eventSource") == "aws:s3":
        return _s3_record(record, where)
    if record.get("eventSource") == "aws:sqs" or ("body" in record and "messageId" in record):
        body = _text(record, "body", where)
        return _parse(_load(body, f"{where}.body"), encoded, depth + 1, f"{where}.body")
    sns = record.get("Sns")
    if record.get("EventSource") == "aws:sns" or isinstance(sns, Mapping):
        if not isinstance(sns, Mapping):
            raise BadEventError(f"{where}.Sns: expected a JSON object")
        message = _text(sns, "Message", f"{where}.Sns")
        return _parse(
            _load(message, f"{where}.Sns.Message"), encoded, depth + 1, f"{where}.Sns.Message"
        )
    source = record.get("eventSource") or record.get("EventSource")
    raise BadEventError(f"{where}: unknown record (eventSource {source!r})")


def _text(obj: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise BadEventError(f"{where}: missing {name}")
    value = obj[name]
    if not isinstance(value, str | Mapping | list):
        raise BadEventError(f"{where}.{name}: expected a JSON string, got {type(value).__name__}")
    return value


def _eventbridge(obj: Mapping[str, Any], encoded: bool, where: str) -> Parsed:
    detail_type = obj.get("detail-type")
    if detail_type == "Object Created":
        kind: Kind = "created"
    elif detail_type == "Object Deleted":
        kind = "deleted"
    elif isinstance(detail_type, str):
        return Parsed(ignored=Counter({IGNORED_TYPE: 1}))
    else:
        raise BadEventError(f"{where}.detail-type: expected a string")
    detail = _mapping(obj, "detail", where)
    bucket = _string(
        _mapping(detail, "bucket", f"{where}.detail"), "name", f"{where}.detail.bucket"
    )
    target = _mapping(detail, "object", f"{where}.detail")
    raw_key = _string(target, "key", f"{where}.detail.object")
    key = unquote_plus(raw_key) if encoded else raw_key
    event = ObjectEvent(
        bucket=bucket,
        key=_check_key(key, f"{where}.detail.object.key"),
        kind=kind,
        event_time=_time(obj.get("time"), f"{where}.time"),
        size=_optional_int(target, "size", f"{where}.detail.object"),
        etag=_optional_str(target, "etag", f"{where}.detail.object"),
        version_id=_optional_str(target, "version-id", f"{where}.detail.object"),
        sequencer=_optional_str(target, "sequencer", f"{where}.detail.object"),
        event_id=_optional_str(obj, "id", where),
    )
    return Parsed(events=[event])


def _s3_record(record: Mapping[str, Any], where: str) -> Parsed:
    name = record.get("eventName")
    if not isinstance(name, str):
        raise BadEventError(f"{where}.eventName: missing or not a string")
    if name.startswith("ObjectCreated:"):
        kind: Kind = "created"
    elif name.startswith("ObjectRemoved:"):
        kind = "deleted"
    else:
        return Parsed(ignored=Counter({IGNORED_TYPE: 1}))
    s3 = _mapping(record, "s3", where)
    bucket = _string(_mapping(s3, "bucket", f"{where}.s3"), "name", f"{where}.s3.bucket")
    target = _mapping(s3, "object", f"{where}.s3")
    key = unquote_plus(_string(target, "key", f"{where}.s3.object"))
    event_id = None
    response = record.get("responseElements")
    if isinstance(response, Mapping) and isinstance(response.get("x-amz-request-id"), str):
        event_id = response["x-amz-request-id"]
    event = ObjectEvent(
        bucket=bucket,
        key=_check_key(key, f"{where}.s3.object.key"),
        kind=kind,
        event_time=_time(record.get("eventTime"), f"{where}.eventTime"),
        size=_optional_int(target, "size", f"{where}.s3.object"),
        etag=_optional_str(target, "eTag", f"{where}.s3.object"),
        version_id=_optional_str(target, "versionId", f"{where}.s3.object"),
        sequencer=_optional_str(target, "sequencer", f"{where}.s3.object"),
        event_id=event_id,
    )
    return Parsed(events=[event])


def _mapping(obj: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = obj.get(name)
    if value is None:
        raise BadEventError(f"{where}: missing {name}")
    if not isinstance(value, Mapping):
        raise BadEventError(f"{where}.{name}: expected a JSON object, got {type(value).__name__}")
    return value


def _string(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if value is None:
        raise BadEventError(f"{where}: missing {name}")
    if not isinstance(value, str) or not value:
        raise BadEventError(f"{where}.{name}: expected a non-empty string, got {value!r:.60}")
    return value


def _optional_str(obj: Mapping[str, Any], name: str, where: str) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadEventError(f"{where}.{name}: expected a string, got {type(value).__name__}")
    return value


def _optional_int(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadEventError(f"{where}.{name}: expected a whole number of bytes, got {value!r:.40}")
    return value


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        # Some emulators (moto) put epoch seconds where AWS puts an RFC 3339 string.
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        raise BadEventError(f"{where}: missing or not a string (an RFC 3339 time is required)")
    try:
        return parse_time(value)
    except ValueError as err:
        raise BadEventError(f"{where}: not an RFC 3339 time: {value!r:.40}") from err


def _check_key(key: str, where: str) -> str:
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise BadEventError(f"{where}: {size} bytes, longer than S3's {MAX_KEY_BYTES}-byte limit")
    return key
