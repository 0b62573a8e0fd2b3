"""Package naming: prefixes of any depth and any characters become valid quilt3 names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.naming import clean_segment, is_valid_package_name, package_name

QUILT3_PACKAGE_NAME = re.compile(r"^[\w-]+/[\w-]+$")  # quilt3.util.PACKAGE_NAME_FORMAT


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("instr/exp-1/", "instr/exp-1"),
        ("genome-lab/exp_0042/", "genome-lab/exp_0042"),
        ("raw/", "edp/raw"),
        ("instr/2024/exp-1/", "instr/2024--exp-1"),
        ("a/b/c/d/", "a/b--c--d"),
        ("a//b/", "a/b"),
        ("données/run 1.2/", "donnees/run_1_2"),
        ("Ångström/naïve café/", "Angstrom/naive_cafe"),
        ("日本/x/", "_/x"),
        ("lab/exp (copy) #3!/", "lab/exp_copy_3_"),
        ("a/./b/", "a/_--b"),
        ("..../x/", "_/x"),
        ("a+b/c%20d/", "a_b/c_20d"),
        ("UPPER/MiXeD/", "UPPER/MiXeD"),
        ("instr/exp-1", "instr/exp-1"),
    ],
)
def test_awkward_prefixes_map_predictably(prefix: str, expected: str) -> None:
    assert package_name(prefix) == expected
    assert QUILT3_PACKAGE_NAME.match(expected)


@pytest.mark.parametrize("prefix", ["", "/", "///"])
def test_empty_prefix_has_no_name(prefix: str) -> None:
    with pytest.raises(ValueError, match="empty prefix"):
        package_name(prefix)


@given(
    st.lists(
        st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s), min_size=1, max_size=5
    )
)
def test_any_prefix_gives_a_name_quilt3_accepts(segments: list[str]) -> None:
    name = package_name("/".join(segments) + "/")
    assert QUILT3_PACKAGE_NAME.match(name), name
    assert is_valid_package_name(name)
    assert name.isascii()


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1)
)
def test_clean_segments_are_left_alone(segment: str) -> None:
    assert clean_segment(segment) == segment


def test_quilt3_agrees_with_the_names() -> None:
    from quilt3.util import validate_package_name

    for prefix in ["données/run 1.2/", "raw/", "a/b/c/", "日本/x/"]:
        validate_package_name(package_name(prefix))  # raises on an invalid name
