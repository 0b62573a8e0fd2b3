"""The fast path's key decoder gives exactly what ``urllib.parse.unquote_plus`` gives.

Escapes of every byte (valid UTF-8 sequences, truncated ones, stray continuation bytes), either
case of hex digit, "%" without an escape, "+" and non-ASCII text around them.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edp.events import _decode_key

escape = st.integers(min_value=0, max_value=255).map(lambda b: f"%{b:02X}") | st.integers(
    min_value=0, max_value=255
).map(lambda b: f"%{b:02x}")
piece = escape | st.sampled_from(["%", "%Z", "%4", "+", " ", "a", "/", "\u00e9", "\ud800", "\x00"])
keys = st.lists(piece, max_size=24).map("".join) | st.text(alphabet="%+0123456789abcdefABCDEFxyz")


@given(keys)
def test_decoded_keys_equal_unquote_plus(key: str) -> None:
    assert _decode_key(key) == unquote_plus(key)


@pytest.mark.parametrize(
    ("key", "decoded"),
    [
        ("exp+42/run%2B1/reads+R1.fastq.gz", "exp 42/run+1/reads R1.fastq.gz"),
        ("%C3%A9chantillon+%231.bam", "\u00e9chantillon #1.bam"),
        ("%e2%82%ac%zz%", "\u20ac%zz%"),
        ("%C3", "\ufffd"),
    ],
)
def test_examples(key: str, decoded: str) -> None:
    assert _decode_key(key) == decoded
