"""The memory store keeps each dedupe identity in its folder's map, shortened to what tells it
apart there (edp.store.memory.identity_in_folder). It must be injective: the fields that make an
event's identity (ObjectEvent.identity) read back from it, so two events of one folder share it
exactly when they share their identity."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from edp.events import ObjectEvent
from edp.store.memory import identity_in_folder

T0 = datetime(2024, 1, 1, tzinfo=UTC)
# Digits and ":" in every field: a field's end that could pass for the next field's length.
text = st.text(alphabet="01:aé", max_size=14)
optional = st.one_of(st.none(), text)

events = st.builds(
    ObjectEvent,
    bucket=st.just("bkt"),
    key=st.tuples(st.sampled_from(["", "a/", "1:/b/"]), text.filter(bool)).map("".join),
    kind=st.sampled_from(["created", "deleted"]),
    event_time=st.just(T0),
    version_id=optional,
    sequencer=optional,
    event_id=optional,
)


def _field(text: str) -> tuple[str, str]:
    """(the length-prefixed field at the start of text, what follows it)."""
    length, _, rest = text.partition(":")
    return rest[: int(length)], rest[int(length) :]


def read_back(short: str) -> tuple[str, ...]:
    form, kind, rest = short[0], short[1], short[2:]
    if form == "v":
        version, rest = _field(rest)
        sequencer, name = _field(rest)
        return ("v", kind, version, sequencer, name)
    event_id, name = _field(rest)
    return ("i", kind, event_id, name)


def fields_of(event: ObjectEvent) -> tuple[str, ...] | None:
    name = event.key[event.key.rfind("/") + 1 :]
    if event.version_id is not None or event.sequencer is not None:
        return ("v", event.kind[0], event.version_id or "", event.sequencer or "", name)
    if event.event_id is not None:
        return ("i", event.kind[0], event.event_id, name)
    return None


@settings(max_examples=1000)
@given(events)
def test_the_short_identity_reads_back_to_the_identitys_fields(event: ObjectEvent) -> None:
    short = identity_in_folder(event, event.key.rfind("/") + 1)
    assert (short is None) == (event.identity() is None)
    if short is not None:
        assert read_back(short) == fields_of(event)
