"""ObjectEvent.identity_key() (the memory store's dedupe key) and identity() (the SQL stores')
must tell the same events apart: equal keys exactly when equal identities."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from edp.events import ObjectEvent

T0 = datetime(2024, 1, 1, tzinfo=UTC)
# Few distinct values, so that equal and almost-equal events come up often.
text = st.sampled_from(["", "a", "b", "a/b", "1:a", "é"])
optional = st.one_of(st.none(), text)
event = st.builds(
    ObjectEvent,
    bucket=st.sampled_from(["b", "b1", "1:b"]),
    key=st.sampled_from(["k", "k1", "d/k", "d/k1", "1:k"]),
    kind=st.sampled_from(["created", "deleted"]),
    event_time=st.just(T0),
    version_id=optional,
    sequencer=optional,
    event_id=optional,
)


@settings(max_examples=800)
@given(event, event)
def test_identity_key_and_identity_agree(left: ObjectEvent, right: ObjectEvent) -> None:
    assert (left.identity_key() is None) == (left.identity() is None)
    if left.identity() is None or right.identity() is None:
        return
    assert (left.identity_key() == right.identity_key()) == (left.identity() == right.identity())
