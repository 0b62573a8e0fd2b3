"""The event text `edp simulate` prints and SNS carries, written directly (eventbridge_json), is
exactly what the JSON encoder makes of the event's dictionary (eventbridge_event), for any
emission: every Unicode category in bucket, prefix, trigger and rule, quotes, backslashes,
control characters, lone surrogates, huge counts, any time from year 1 to 9999."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from edp.core import Emission
from edp.publisher import eventbridge_event, eventbridge_json, to_json

TEXT = st.text(alphabet=st.characters(), max_size=40)
TIMES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)


@st.composite
def emissions(draw: st.DrawFn) -> Emission:
    return Emission(
        batch_id=draw(TEXT),
        bucket=draw(TEXT),
        prefix=draw(TEXT),
        count=draw(st.integers(min_value=0, max_value=2**70)),
        trigger=draw(TEXT),
        emitted_at=draw(TIMES),
        first_event_time=draw(TIMES),
        last_event_time=draw(TIMES),
    )


@given(
    emission=emissions(),
    account=TEXT,
    region=TEXT,
    event_id=st.none() | TEXT,
    rule=st.none() | TEXT,
)
def test_the_direct_text_is_the_encoders_text(
    emission: Emission, account: str, region: str, event_id: str | None, rule: str | None
) -> None:
    kwargs = {"account": account, "region": region, "event_id": event_id, "rule": rule}
    direct = eventbridge_json(emission, **kwargs)  # type: ignore[arg-type]
    assert direct == to_json(eventbridge_event(emission, **kwargs))  # type: ignore[arg-type]


def test_a_printed_event_reads_back_as_the_event() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 1, 250000, tzinfo=UTC)
    emission = Emission("id-1", 'lab "\u00e9"', "run\\1/\n", 20, "count", moment, moment, moment)
    text = eventbridge_json(emission, rule="plates")
    assert json.loads(text) == eventbridge_event(emission, rule="plates")
    assert json.loads(text)["detail"]["rule"] == "plates"
