"""The dedupe identity's form: folder tag, the sequencer's first digits, digest.

Stores key their dedupe index by it, so its order decides how many index pages a chunk of
events writes; its earlier forms are what stores written by an earlier edp hold; batch ids are
seeded with the schema-2 form, so a stream gets the ids it got before.
"""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edp.core import make_batch_id
from edp.events import IDENTITY_LENGTH, Kind, ObjectEvent, earlier_forms

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
HEX = set(string.hexdigits)


def s3_sequencer(moment: datetime, counter: int) -> str:
    """S3's shape: the event's epoch seconds in 10 hex digits, then 8 more."""
    return f"{int(moment.timestamp()):010X}{counter:08X}"


def test_the_identity_is_the_folder_tag_then_the_sequencers_first_digits_then_a_digest() -> None:
    one = ObjectEvent("lab", "run-1/a.tif", "created", T0, sequencer="0062e99a88DC407460")
    other = ObjectEvent("lab", "run-1/b.tif", "created", T0, sequencer="0062E99A89")
    elsewhere = ObjectEvent("lab", "run-2/a.tif", "created", T0, sequencer="0062E99A88DC407460")
    first, second, third = one.identity(), other.identity(), elsewhere.identity()
    assert first and second and third
    assert len(first) == len(second) == IDENTITY_LENGTH == 50
    assert first[:8] == second[:8] != third[:8]  # one tag per folder
    assert first[8:18] == "0062E99A88" and second[8:18] == "0062E99A89"
    assert earlier_forms(first) == (first[18:], first[:8] + first[18:])


def test_no_sequencer_or_one_not_in_hex_gives_zeros_in_its_place() -> None:
    for sequencer in (None, "", "zz62E99A88", "ß", "0062E99A8\u0660"):
        event = ObjectEvent("lab", "run-1/a.tif", "created", T0, sequencer=sequencer, event_id="e")
        identity = event.identity()
        assert identity is not None and identity[8:18] == "0" * 10, sequencer
    short = ObjectEvent("lab", "run-1/a.tif", "created", T0, sequencer="4E2")
    assert (short.identity() or "")[8:18] == "4E20000000"


def test_one_folders_identities_sort_by_time_with_s3_sequencers() -> None:
    events = [
        ObjectEvent(
            "lab",
            f"run-1/file-{n:05d}.tif",
            "created",
            T0 + timedelta(seconds=n),
            sequencer=s3_sequencer(T0 + timedelta(seconds=n), n * 7919 % 1000),
        )
        for n in range(300)
    ]
    identities = [e.identity() or "" for e in events]
    assert identities == sorted(identities)
    # Without the sequencer's digits the digests alone would scatter them.
    assert [i[18:] for i in identities] != sorted(i[18:] for i in identities)


@given(
    sequencer=st.none() | st.text(max_size=30),
    key=st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k),
    event_id=st.none() | st.text(max_size=10),
)
def test_every_identity_is_50_hex_digits_and_ignores_what_the_contract_ignores(
    sequencer: str | None, key: str, event_id: str | None
) -> None:
    event = ObjectEvent("lab", key, "created", T0, size=1, sequencer=sequencer, event_id=event_id)
    identity = event.identity()
    if identity is None:
        assert sequencer is None and event_id is None
        return
    assert len(identity) == IDENTITY_LENGTH and set(identity) <= HEX
    # A redelivery: another time, size and etag, the same event.
    again = replace(event, event_time=T0 + timedelta(hours=3), size=99, etag="x")
    assert again.identity() == identity
    assert replace(event, kind="deleted").identity() != identity


@pytest.mark.parametrize(
    ("name", "kind", "fields", "expected"),
    [
        ("plate 1.tif", "created", {"sequencer": "0062E99A88DC407460"}, "7b4a-b7c6-db5ef1173a5c"),
        ("plate 2.tif", "deleted", {"event_id": "abc"}, "711e-b022-7bfec1a09d39"),
        ("plate 3.tif", "created", {}, "7ab7-9304-00043c58240a"),
    ],
)
def test_batch_ids_are_those_earlier_versions_gave(
    name: str, kind: Kind, fields: dict[str, str], expected: str
) -> None:
    """Computed with edp at 638baa8, before the sequencer's digits joined the identity."""
    event = ObjectEvent("lab-bucket", f"run-7/{name}", kind, T0, **fields)  # type: ignore[arg-type]
    opened = T0 + timedelta(seconds=1)
    assert make_batch_id("lab-bucket", "run-7/", opened, event) == f"018f3406-a1e8-{expected}"
