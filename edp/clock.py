"""Clocks: the only place the emitter reads wall time, so the core can be tested with fixed times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC (the default clock of the Lambda handlers and `edp run`)."""
    return datetime.now(UTC)


class FixedClock:
    """A clock that returns what it was last set to; tests and `edp simulate` move it by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(seconds=seconds)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2022-12-08T20:01:34.123Z``."""
    if moment.tzinfo is not UTC:  # (the emitter's own times are UTC already)
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def whole_seconds(moment: datetime) -> str:
    """RFC 3339 UTC in whole seconds, the EventBridge envelope's format (``2022-12-08T20:01:34Z``)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    if moment.year < 1000:  # strftime's %Y does not pad such years everywhere; isoformat does
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat(timespec="seconds")[:-6] + "Z"


def parse_time(text: str) -> datetime:
    """Parse an AWS event time (``2022-12-08T20:01:34Z`` or with fractions/offset) into aware UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
