"""Scope rules: prefixes, ignore patterns, registry files and folder markers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edp.events import ObjectEvent
from edp.scope import Scope, prefix_of
from tests.helpers import at


def event(key: str, bucket: str = "bkt") -> ObjectEvent:
    return ObjectEvent(bucket=bucket, key=key, kind="created", event_time=at(0))


def test_prefix_of_takes_the_first_depth_segments() -> None:
    assert prefix_of("instr/exp-1/run/a.csv", 2) == "instr/exp-1/"
    assert prefix_of("instr/exp-1/a.csv", 2) == "instr/exp-1/"
    assert prefix_of("instr/a.csv", 2) is None
    assert prefix_of("a.csv", 1) is None
    assert prefix_of("a//b/c", 2) == "a//"
    assert prefix_of("/lead/x/y", 2) == "/lead/"
    assert prefix_of("a/b/c/d/e", 4) == "a/b/c/d/"


def test_wildcard_patterns_are_globs_on_the_whole_key_and_others_plain_prefixes() -> None:
    scope = Scope.build((), [" raw/* ", "", "tmp", "*.tmp", "lab/[ab]/*"], 2)
    assert scope.classify(event("raw/x/y/z.csv")) == (None, "ignored")
    assert scope.classify(event("tmpdir/x/y.csv")) == (None, "ignored")
    assert scope.classify(event("i/e/file.tmp")) == (None, "ignored")
    assert scope.classify(event("lab/a/x.csv")) == (None, "ignored")
    assert scope.classify(event("lab/c/x.csv")) == ("lab/c/", None)
    assert scope.classify(event("rawdata/x/y.csv")) == ("rawdata/x/", None)


def test_registry_files_folder_markers_and_other_buckets_are_dropped() -> None:
    scope = Scope.build(("bkt",), [], 1)
    assert scope.classify(event(".quilt/named_packages/a/b/latest")) == (None, "quilt-registry")
    assert scope.classify(event("i/e/")) == (None, "folder-marker")
    assert scope.classify(event("i/e/x", bucket="else")) == (None, "bucket")
    assert scope.classify(event("i/x")) == ("i/", None)


# Keys built from few pieces, so folders repeat and folder markers, ".quilt/" files, shallow keys,
# empty segments and keys without "/" all come up.
_piece = st.sampled_from(["", "a", "b", ".quilt", "x.csv", "/"])
_key = st.lists(_piece, min_size=1, max_size=6).map("/".join).filter(bool)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from(["bkt", "other"]), _key), max_size=30),
    st.integers(1, 4),
    st.sampled_from([(), ("bkt",)]),
)
def test_the_folder_router_answers_as_prefix_for(
    objects: list[tuple[str, str]], depth: int, buckets: tuple[str, ...]
) -> None:
    scope = Scope.build(buckets, (), depth)
    route = scope.folder_router()
    for bucket, key in objects:
        assert route(bucket, key) == scope.prefix_for(bucket, key)


def test_the_folder_router_looks_at_every_key_when_patterns_or_rules_decide() -> None:
    scope = Scope.build((), ["*.tmp"], 2)
    assert scope.folder_router() == scope.prefix_for
    route = scope.folder_router()
    assert route("b", "i/e/a.csv") == ("i/e/", None)
    assert route("b", "i/e/a.tmp") == (None, "ignored")
