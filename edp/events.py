"""Input events: recognise every accepted S3 event shape and envelope, and turn it into ObjectEvents."""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from edp.clock import parse_time
from edp.errors import BadEventError
from edp_common.envelopes import (
    MAX_ENVELOPE_DEPTH,
    check_depth,
    load_json,
    opened,
    records,
)
from edp_common.errors import EnvelopeError

Kind = Literal["created", "deleted"]

MAX_KEY_BYTES = 1024  # S3's limit on an object key, in UTF-8 bytes
MAX_FIELD_CHARS = 1024  # bucket, etag, version-id, sequencer, event id: far above AWS's own
MAX_SIZE = 2**63 - 1  # object sizes are stored as 64-bit integers
# Event times the emitter accepts. Settings' durations are at most MAX_WHOLE_NUMBER seconds, so
# any due time, max-age or dedupe window computed from these stays far from datetime's year 9999.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
# Characters no store can keep in a text column: NUL (PostgreSQL rejects it in text) and lone
# surrogates (not encodable as UTF-8). Rejected at the edge, so every store gives the same verdict.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Instances made without their class's __init__ (Parsed, ObjectEvent), on the paths run per event.
_new = object.__new__

# S3 event types that are not object creation or deletion: accepted, counted, ignored.
IGNORED_TYPE = "ignored-type"
TEST_EVENT = "test-event"


_UNSET: Any = object()


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

        Computed once per event (the store and the rules both ask for it). 50 hex digits: a
        32-bit tag of the object's bucket and folder, the first 10 hex digits of the event's
        sequencer (zeros without one, or when they are not hex), then a 128-bit digest of the
        event. S3's sequencers begin with the event's time (10 hex digits of epoch seconds), so
        one folder's identities sort by time in a store's index, and a chunk of events appends
        to a few index pages instead of writing one page per event across the folder's history
        (a digest alone scatters them; SQLite's cost per event then grew with a folder's size).
        Every part comes from fields the identity already covers, so two deliveries of one
        event still have one identity. ``earlier_forms`` gives the forms older stores kept.
        """
        # The cache lives in the instance's __dict__ (a frozen dataclass refuses setattr); no
        # KeyError on the first call: raising and catching one cost more than the digest.
        fields = self.__dict__
        cached = fields.get("_identity", _UNSET)
        if cached is not _UNSET:
            return cached  # type: ignore[no-any-return]
        text = self._identity_text()
        if text is None:
            fields["_identity"] = None
            return None
        key = self.key
        head = (self.sequencer or "")[:ORDER_DIGITS]
        order = _NO_ORDER if head.strip(_HEX_DIGITS) else head.upper().ljust(ORDER_DIGITS, "0")
        identity = _folder_tag(self.bucket, key[: key.rfind("/") + 1]) + order + _digest(text)
        fields["_identity"] = identity
        return identity

    def _identity_text(self) -> str | None:
        bucket, key, kind = self.bucket, self.key, self.kind
        # Length-prefixed fields, so no field's content can be mistaken for a separator.
        if self.version_id is not None or self.sequencer is not None:
            version, sequencer = self.version_id or "", self.sequencer or ""
            return (
                f"1:v{len(bucket)}:{bucket}{len(key)}:{key}{len(kind)}:{kind}"
                f"{len(version)}:{version}{len(sequencer)}:{sequencer}"
            )
        if self.event_id is not None:
            event_id = self.event_id
            return (
                f"1:i{len(bucket)}:{bucket}{len(key)}:{key}{len(kind)}:{kind}"
                f"{len(event_id)}:{event_id}"
            )
        return None


TAG_DIGITS = 8  # an identity's folder tag
ORDER_DIGITS = 10  # then the sequencer's first digits
IDENTITY_LENGTH = TAG_DIGITS + ORDER_DIGITS + 32
_HEX_DIGITS = "0123456789ABCDEFabcdef"  # (the sequencer's digits; also the key escapes' below)
_NO_ORDER = "0" * ORDER_DIGITS


def earlier_forms(identity: str) -> tuple[str, str]:
    """The forms in which stores written by an earlier edp kept this identity: the bare digest
    (SQLite schema 1, PostgreSQL 2), then folder tag and digest (SQLite 2, PostgreSQL 3)."""
    digest = identity[TAG_DIGITS + ORDER_DIGITS :]
    return digest, identity[:TAG_DIGITS] + digest


# Copied for each digest: a copy costs about half of making a blake2b with its parameters.
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)


def _digest(text: str) -> str:
    # A fixed-size digest keeps the store's dedupe index small whatever the key's length.
    hashing = _BLAKE2B_16.copy()
    try:
        hashing.update(text.encode())
    except UnicodeEncodeError:  # a lone surrogate (the edge refuses them; tests build some)
        hashing.update(text.encode("utf-8", "surrogatepass"))
    return hashing.hexdigest()


@functools.lru_cache(maxsize=4096)
def _folder_tag(bucket: str, folder: str) -> str:
    """8 hex digits shared by every object of one folder (consecutive events mostly share it)."""
    text = f"{len(bucket)}:{bucket}{folder}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


@dataclass
class Parsed:
    """What one input message held: its object events and the count of ignored ones by reason."""

    events: list[ObjectEvent] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)


def parse_message(
    raw: str | bytes | Mapping[str, Any] | list[Any], *, eventbridge_keys_encoded: bool = True
) -> Parsed:
    """Parse one message (JSON text or decoded JSON) of any accepted shape; BadEventError if not.

    This is the edge: whatever a message holds, it either comes out as events every store can keep
    and every rule can compute with, or is rejected with one line naming the bad field. No other
    exception escapes, so one hostile message can never take the good ones of its batch with it.
    """
    # One result for the whole message, filled in place: an envelope's layers add to it rather
    # than each making and merging its own (a Parsed and its Counter cost as much as an event).
    result = _new(Parsed)
    result.ignored = dict.__new__(Counter)  # what Counter() makes, without its Python __init__
    try:
        # The commonest message, one EventBridge event, straight to its fast path (else _parse
        # tries it again on its way to the general path, which names what is wrong).
        if type(raw) is dict and raw.get("source") == "aws.s3":
            event = _eventbridge_fast(raw, eventbridge_keys_encoded)
            if event is not None:
                result.events = [event]
                return result
        result.events = []
        _parse(
            raw if type(raw) is dict else _load(raw, "message"),
            eventbridge_keys_encoded,
            0,
            "message",
            result,
        )
    except BadEventError:
        raise
    except EnvelopeError as err:
        raise BadEventError(str(err)) from err
    except RecursionError as err:
        raise BadEventError("message: nested too deeply to be an S3 event") from err
    except (ValueError, OverflowError, TypeError, UnicodeError, AttributeError) as err:
        # A check above missed a case: still one bad message, never a crashed batch.
        raise BadEventError(f"message: cannot be read ({type(err).__name__}: {err!s:.80})") from err
    return result


def _load(raw: Any, where: str) -> Any:
    try:
        return load_json(raw, where)
    except EnvelopeError as err:
        raise BadEventError(str(err)) from err


def _parse(obj: Any, encoded: bool, depth: int, where: str, into: Parsed) -> None:
    if type(obj) is dict and depth <= MAX_ENVELOPE_DEPTH:
        # The common shapes first, without building the names of fields only errors need.
        if obj.get("source") == "aws.s3" and "detail-type" in obj:
            event = _eventbridge_fast(obj, encoded)
            if event is not None:
                into.events.append(event)
                return
        elif obj.get("Event") != "s3:TestEvent":
            found = obj.get("Records")
            if type(found) is list:
                for index, record in enumerate(found):
                    if type(record) is dict and record.get("eventSource") == "aws:s3":
                        event = _s3_record_fast(record)
                        if event is not None:
                            into.events.append(event)
                            continue
                    _record(record, encoded, depth, f"{where}.Records[{index}]", into)
                return
    check_depth(depth, where)
    if isinstance(obj, list):
        for index, item in enumerate(obj):
            _parse(item, encoded, depth + 1, f"{where}[{index}]", into)
        return
    if not isinstance(obj, Mapping):
        raise BadEventError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.get("source") == "aws.s3" and "detail-type" in obj:
        _eventbridge(obj, encoded, where, into)
        return
    if obj.get("Event") == "s3:TestEvent":
        into.ignored[TEST_EVENT] += 1
        return
    found = records(obj, where)
    if found is not None:
        for index, record in enumerate(found):
            _record(record, encoded, depth, f"{where}.Records[{index}]", into)
        return
    inner = opened(obj, where)
    if inner is not None:
        payload, path = inner
        _parse(_load(payload, path), encoded, depth + 1, path, into)
        return
    hint = ", ".join(_quote(k) for k in sorted(map(str, obj.keys()))[:8])
    raise BadEventError(f"{where}: unknown event shape (keys: {hint or 'none'})")


def _record(record: Any, encoded: bool, depth: int, where: str, into: Parsed) -> None:
    if not isinstance(record, Mapping):
        raise BadEventError(f"{where}: expected a JSON object")
    if record.get("eventSource") == "aws:s3":
        event = _s3_record_fast(record) if type(record) is dict else None
        if event is None:
            _s3_record(record, where, into)
        else:
            into.events.append(event)
        return
    inner = opened(record, where)
    if inner is not None:
        payload, path = inner
        _parse(_load(payload, path), encoded, depth + 1, path, into)
        return
    source = record.get("eventSource") or record.get("EventSource")
    raise BadEventError(f"{where}: unknown record (eventSource {_quote(source)})")


def _eventbridge(obj: Mapping[str, Any], encoded: bool, where: str, into: Parsed) -> None:
    detail_type = obj.get("detail-type")
    if detail_type == "Object Created":
        kind: Kind = "created"
    elif detail_type == "Object Deleted":
        kind = "deleted"
    elif isinstance(detail_type, str):
        into.ignored[IGNORED_TYPE] += 1
        return
    else:
        raise BadEventError(f"{where}.detail-type: expected a string")
    detail = _mapping(obj, "detail", where)
    bucket = _bucket(
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
    into.events.append(event)


# The fast path: the common case of both S3 shapes, checked and built with the least work.
# Parsed event times by their text: a stream's events share their seconds (bounded: cleared when full).
_TIMES: dict[str, datetime] = {}
_TIMES_MAX = 4096
# Bucket names that passed the fast path's own checks (length, "/", line breaks): a stream's
# events come from a few buckets (bounded: cleared when full).
_BUCKETS: set[str] = set()
_BUCKETS_MAX = 1024
# Each "%XX" escape (either case) as the character of its byte value, for decoding ASCII keys.
_ESCAPED = {a + b: chr(int(a + b, 16)) for a in _HEX_DIGITS for b in _HEX_DIGITS}


def _decode_key(key: str) -> str:
    """``unquote_plus(key)``, the same text, in half its time or less for an ASCII key (as S3 and
    EventBridge send them): "%" found by ``str.partition`` and each escape read from a table,
    instead of urllib's general decoder."""
    if not key.isascii():
        return unquote_plus(key)
    text, escaped, rest = key.replace("+", " ").partition("%")
    while escaped:
        byte = _ESCAPED.get(rest[:2])
        if byte is None:  # not an escape: urllib keeps the "%" as it is
            text += "%"
        else:
            text += byte
            rest = rest[2:]
        part, escaped, rest = rest.partition("%")
        text += part
    # Every character is below 256 here: as Latin-1 they are the escaped bytes, read as UTF-8
    # with urllib's errors="replace".
    return text if text.isascii() else text.encode("latin-1").decode("utf-8", "replace")


def _fast_event(
    kind: Kind,
    holder: Any,
    target: Any,
    decode: bool,
    names: tuple[str, str, str],
    event_id: Any,
    stamp: Any,
) -> ObjectEvent | None:
    """The common case of both S3 shapes (plain dicts, storable fields, a well-formed time), or None.

    None means "not the common case": the general path then parses the event and names what is
    wrong. Every check of the general path holds here too, so both accept the same events and make
    the same ObjectEvent of them; this one only skips the work the common case does not need.
    """
    if type(holder) is not dict or type(target) is not dict or type(stamp) is not str:
        return None
    bucket, key = holder.get("name"), target.get("key")
    if type(bucket) is not str or type(key) is not str or not bucket or not key:
        return None
    if bucket not in _BUCKETS:
        if len(bucket) > 255 or "/" in bucket or "\r" in bucket or "\n" in bucket:
            return None
        if len(_BUCKETS) >= _BUCKETS_MAX:
            _BUCKETS.clear()
        _BUCKETS.add(bucket)
    if decode and ("%" in key or "+" in key):
        # Decoding shrinks a key threefold at most ("%XX" to one byte): this one is over the
        # limit either way; the general path rejects it, naming the field.
        if len(key) > 3 * MAX_KEY_BYTES:
            return None
        key = _decode_key(key)
    size = target.get("size")
    if size is not None and (type(size) is not int or not 0 <= size <= MAX_SIZE):
        return None
    etag, version, sequencer = target.get(names[0]), target.get(names[1]), target.get(names[2])
    # Every text field at once: one scan for NUL, one for non-ASCII, instead of one each per
    # field; the optional fields' total length bounds each of them (longer go the general way).
    # Joining them checks their types too: a field neither None nor text is a TypeError.
    try:
        text = "".join(
            (
                bucket,
                key,
                "" if etag is None else etag,
                "" if version is None else version,
                "" if sequencer is None else sequencer,
                "" if event_id is None else event_id,
            )
        )
    except TypeError:
        return None
    if len(text) - len(bucket) - len(key) > MAX_FIELD_CHARS or "\x00" in text:
        return None
    if text.isascii():
        if len(key) > MAX_KEY_BYTES:
            return None
    else:
        try:
            # Strict UTF-8 refuses exactly the lone surrogates (faster than _UNSTORABLE's search).
            text.encode("utf-8")
            if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                return None
        except UnicodeEncodeError:
            return None
    moment = _TIMES.get(stamp)
    if moment is None:
        try:
            moment = _time(stamp, "time")
        except BadEventError:
            return None
        if len(_TIMES) >= _TIMES_MAX:
            _TIMES.clear()
        _TIMES[stamp] = moment
    # What ObjectEvent(...) makes, without the frozen dataclass's nine object.__setattr__ calls:
    # the dataclass's fields, in its order, checked above ("" is None, as in the general path).
    event = _new(ObjectEvent)
    fields = event.__dict__
    fields["bucket"] = bucket
    fields["key"] = key
    fields["kind"] = kind
    fields["event_time"] = moment
    fields["size"] = size
    fields["etag"] = etag or None
    fields["version_id"] = version or None
    fields["sequencer"] = sequencer or None
    fields["event_id"] = event_id or None
    return event


_EVENTBRIDGE_NAMES = ("etag", "version-id", "sequencer")
_S3_NAMES = ("eTag", "versionId", "sequencer")


def _eventbridge_fast(obj: dict[str, Any], encoded: bool) -> ObjectEvent | None:
    detail_type = obj.get("detail-type")
    if detail_type == "Object Created":
        kind: Kind = "created"
    elif detail_type == "Object Deleted":
        kind = "deleted"
    else:
        return None
    detail = obj.get("detail")
    if type(detail) is not dict:
        return None
    return _fast_event(
        kind,
        detail.get("bucket"),
        detail.get("object"),
        encoded,
        _EVENTBRIDGE_NAMES,
        obj.get("id"),
        obj.get("time"),
    )


def _s3_record_fast(record: dict[str, Any]) -> ObjectEvent | None:
    name = record.get("eventName")
    if type(name) is not str:
        return None
    if name.startswith("ObjectCreated:"):
        kind: Kind = "created"
    elif name.startswith("ObjectRemoved:"):
        kind = "deleted"
    else:
        return None
    s3 = record.get("s3")
    if type(s3) is not dict:
        return None
    event_id = None
    response = record.get("responseElements")
    if type(response) is dict:
        event_id = response.get("x-amz-request-id")
        if type(event_id) is not str:
            event_id = None
    elif response is not None:
        return None
    return _fast_event(
        kind,
        s3.get("bucket"),
        s3.get("object"),
        True,
        _S3_NAMES,
        event_id,
        record.get("eventTime"),
    )


def _s3_record(record: Mapping[str, Any], where: str, into: Parsed) -> None:
    name = record.get("eventName")
    if not isinstance(name, str):
        raise BadEventError(f"{where}.eventName: missing or not a string")
    if name.startswith("ObjectCreated:"):
        kind: Kind = "created"
    elif name.startswith("ObjectRemoved:"):
        kind = "deleted"
    else:
        into.ignored[IGNORED_TYPE] += 1
        return
    s3 = _mapping(record, "s3", where)
    bucket = _bucket(_mapping(s3, "bucket", f"{where}.s3"), "name", f"{where}.s3.bucket")
    target = _mapping(s3, "object", f"{where}.s3")
    key = unquote_plus(_string(target, "key", f"{where}.s3.object"))
    event_id = None
    response = record.get("responseElements")
    if isinstance(response, Mapping) and isinstance(response.get("x-amz-request-id"), str):
        event_id = _optional_str(response, "x-amz-request-id", f"{where}.responseElements")
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
    into.events.append(event)


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
        raise BadEventError(f"{where}.{name}: expected a non-empty string, got {_quote(value)}")
    return value


def _bucket(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = _string(obj, name, where)
    if len(value) > 255 or any(c in value for c in "/\r\n") or _UNSTORABLE.search(value):
        raise BadEventError(f"{where}.{name}: not a bucket name: {_quote(value)}")
    return value


def _optional_str(obj: Mapping[str, Any], name: str, where: str) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadEventError(f"{where}.{name}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise BadEventError(f"{where}.{name}: {len(value)} characters, more than {MAX_FIELD_CHARS}")
    _check_storable(value, f"{where}.{name}")
    return value


def _optional_int(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
        raise BadEventError(
            f"{where}.{name}: expected a whole number of bytes, got {_quote(value, 40)}"
        )
    return value


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Some emulators (moto) put epoch seconds where AWS puts an RFC 3339 string.
        if not math.isfinite(value) or not (
            EARLIEST_TIME.timestamp() <= value < LATEST_TIME.timestamp()
        ):
            raise BadEventError(f"{where}: epoch seconds {_quote(value, 40)} out of range")
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = parse_time(value)
        except OverflowError as err:  # its UTC offset moves it out of datetime's range
            raise BadEventError(f"{where}: {_quote(value, 40)} is out of range in UTC") from err
        except ValueError as err:
            raise BadEventError(f"{where}: not an RFC 3339 time: {_quote(value, 40)}") from err
    else:
        raise BadEventError(f"{where}: missing or not a string (an RFC 3339 time is required)")
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise BadEventError(
            f"{where}: {_quote(value, 40)} is outside the years "
            f"{EARLIEST_TIME.year}-{LATEST_TIME.year - 1} the emitter accepts"
        )
    return moment


def _check_key(key: str, where: str) -> str:
    _check_storable(key, where)
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise BadEventError(f"{where}: {size} bytes, longer than S3's {MAX_KEY_BYTES}-byte limit")
    return key


def _check_storable(text: str, where: str) -> None:
    bad = _UNSTORABLE.search(text)
    if bad is not None:
        what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate (not UTF-8)"
        raise BadEventError(f"{where}: contains {what} at position {bad.start()}")


def _quote(value: Any, limit: int = 60) -> str:
    """A value shown in a one-line reason: repr (escapes newlines, NULs, surrogates), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
