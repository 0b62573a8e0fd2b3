"""Helpers shared by the tests: the fixture events of tests/events/ (one loader for every test),
and real-shaped emitter events built from a few arguments."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

EVENTS = Path(__file__).parent / "events"
T0 = datetime(2022, 12, 8, 20, 0, 0, tzinfo=UTC)


def load_event(name: str) -> Any:
    """A fixture event from tests/events/ by file name (with or without .json).

    S3 object events in every envelope, and package-objects-ready events (``ready_*``).
    """
    path = EVENTS / (name if name.endswith(".json") else name + ".json")
    return json.loads(path.read_text(encoding="utf-8"))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def eb_event(
    key: str,
    seconds: float = 0,
    *,
    bucket: str = "bkt",
    kind: str = "created",
    sequencer: str | None = None,
    version_id: str | None = None,
    event_id: str | None = None,
    size: int | None = 1,
    encode: bool = True,
) -> dict[str, Any]:
    """An EventBridge S3 event as AWS sends it (key URL-encoded)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/") if encode else key}
    if size is not None and kind == "created":
        obj["size"] = size
    if sequencer is not None:
        obj["sequencer"] = sequencer
    if version_id is not None:
        obj["version-id"] = version_id
    event: dict[str, Any] = {
        "version": "0",
        "detail-type": "Object Created" if kind == "created" else "Object Deleted",
        "source": "aws.s3",
        "account": "111122223333",
        "time": iso(at(seconds)),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj},
    }
    if event_id is not None:
        event["id"] = event_id
    return event


def s3_record(
    key: str,
    seconds: float = 0,
    *,
    bucket: str = "bkt",
    kind: str = "created",
    sequencer: str | None = None,
) -> dict[str, Any]:
    """One S3 notification record (key URL-encoded)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if sequencer:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": iso(at(seconds)),
        "eventName": "ObjectCreated:Put" if kind == "created" else "ObjectRemoved:Delete",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
    }


def jsonl(*events: Any) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of the subcommand ``name`` of ``parser`` (for checking its flags)."""
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found: argparse.ArgumentParser = subparsers.choices[name]
    return found
