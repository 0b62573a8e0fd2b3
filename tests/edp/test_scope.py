"""Scope rules: prefixes, ignore patterns, registry files and folder markers."""

from __future__ import annotations

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
