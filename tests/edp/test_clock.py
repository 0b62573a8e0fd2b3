"""The time formats the emitter prints (RFC 3339 UTC): any aware or naive datetime, any offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from edp.clock import parse_time, rfc3339, whole_seconds

zones = st.one_of(
    st.just(UTC),
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
moments = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30), timezones=zones
)


def test_examples() -> None:
    moment = datetime(2022, 12, 8, 20, 1, 34, 123456, tzinfo=UTC)
    assert rfc3339(moment) == "2022-12-08T20:01:34.123Z"
    assert whole_seconds(moment) == "2022-12-08T20:01:34Z"
    east = moment.astimezone(timezone(timedelta(hours=2)))
    assert (rfc3339(east), whole_seconds(east)) == (
        "2022-12-08T20:01:34.123Z",
        "2022-12-08T20:01:34Z",
    )
    assert whole_seconds(datetime(999, 1, 1, tzinfo=UTC)).endswith("-01-01T00:00:00Z")


@settings(max_examples=500)
@given(moments)
def test_the_formats_are_utc_and_read_back(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    assert rfc3339(moment) == utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert whole_seconds(moment) == utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_time(rfc3339(moment)) == utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    assert parse_time(whole_seconds(moment)) == utc.replace(microsecond=0)
