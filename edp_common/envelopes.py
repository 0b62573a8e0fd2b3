"""The envelopes AWS delivers events in (an SQS message, an SNS notification, a Lambda event's
``Records``), unwrapped the same way, with the same limits and wording, by the emitter
(:mod:`edp.events`) and the consumers (:mod:`consumers.events`). Light: only the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edp_common.errors import EnvelopeError

# EventBridge -> SNS -> SQS -> Lambda is three; deeper than this is not a real delivery.
MAX_ENVELOPE_DEPTH = 5


def load_json(raw: Any, where: str) -> Any:
    """``raw`` decoded: bytes as UTF-8, text as JSON; anything else (already decoded) as it is."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            raise EnvelopeError(f"{where}: not UTF-8 text") from err
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise EnvelopeError(f"{where}: not JSON ({err.msg} at char {err.pos})") from err
        except RecursionError as err:  # json's C parser gives up on ~1,000+ nested levels
            raise EnvelopeError(f"{where}: JSON nested too deeply to be an event") from err
        except ValueError as err:  # an integer with more digits than Python converts
            raise EnvelopeError(f"{where}: not JSON (a number with too many digits)") from err
    return raw


def check_depth(depth: int, where: str) -> None:
    """Refuse envelopes inside envelopes deeper than MAX_ENVELOPE_DEPTH."""
    if depth > MAX_ENVELOPE_DEPTH:
        raise EnvelopeError(f"{where}: envelopes nested more than {MAX_ENVELOPE_DEPTH} deep")


def is_sqs_batch(event: Any) -> bool:
    """Whether a Lambda was invoked by an SQS queue (its failures go in ``batchItemFailures``)."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, Mapping) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def records(obj: Mapping[str, Any], where: str) -> list[Any] | None:
    """A Lambda event's ``Records`` (None when ``obj`` has none)."""
    if "Records" not in obj:
        return None
    found = obj["Records"]
    if not isinstance(found, list):
        raise EnvelopeError(f"{where}.Records: expected a list")
    return found


def opened(obj: Mapping[str, Any], where: str) -> tuple[Any, str] | None:
    """What the envelope ``obj`` carries and where, still to be decoded (:func:`load_json`), or
    None when ``obj`` is no envelope: an SNS notification (``Message``), an SQS message as boto3
    receives it (``Body``), a Lambda SQS record (``body``) or a Lambda SNS record (``Sns.Message``)."""
    if obj.get("Type") == "Notification" and "Message" in obj:
        return _carried(obj, "Message", where)
    if "Body" in obj and ("MessageId" in obj or "ReceiptHandle" in obj):
        return _carried(obj, "Body", where)
    if "body" in obj and (
        "messageId" in obj or "receiptHandle" in obj or obj.get("eventSource") == "aws:sqs"
    ):
        return _carried(obj, "body", where)
    sns = obj.get("Sns")
    if isinstance(sns, Mapping) and "Message" in sns:
        return _carried(sns, "Message", f"{where}.Sns")
    return None


def _carried(obj: Mapping[str, Any], name: str, where: str) -> tuple[Any, str]:
    value = obj[name]
    if not isinstance(value, str | bytes | Mapping | list):
        raise EnvelopeError(f"{where}.{name}: expected a JSON string, got {type(value).__name__}")
    return value, f"{where}.{name}"
