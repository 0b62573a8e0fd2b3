"""Scope rules: which object events are relevant, and the common prefix that groups them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edp.events import ObjectEvent

if TYPE_CHECKING:
    from edp.rules_file import RuleSet

QUILT_REGISTRY_PREFIX = ".quilt/"  # Quilt's own registry files: packaging must not feed itself

# Reasons an event is dropped; also the values of the `Reason` metric dimension.
DROP_BUCKET = "bucket"
DROP_FOLDER_MARKER = "folder-marker"
DROP_QUILT_REGISTRY = "quilt-registry"
DROP_IGNORED = "ignored"
DROP_TOO_SHALLOW = "too-shallow"

_WILDCARD = re.compile(r"[*?\[]")


def prefix_of(key: str, depth: int) -> str | None:
    """The first ``depth`` directory segments of ``key`` with a trailing ``/``; None if too shallow."""
    # Split no further than needed: the key has at least `depth` directory segments exactly
    # when there is something after the depth-th "/".
    segments = key.split("/", depth)
    if len(segments) <= depth:
        return None
    return "/".join(segments[:depth]) + "/"


@dataclass(frozen=True)
class Scope:
    """The bucket filter, ignore patterns and prefix depth (per rule, when a rules file is in
    force), compiled once."""

    buckets: frozenset[str]
    globs: tuple[re.Pattern[str], ...]
    plain_prefixes: tuple[str, ...]
    depth: int
    rules: RuleSet | None = None

    @classmethod
    def build(
        cls,
        buckets: Sequence[str],
        patterns: Sequence[str],
        depth: int,
        rules: RuleSet | None = None,
    ) -> Scope:
        globs = []
        plain = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern:
                continue
            if _WILDCARD.search(pattern):
                # fnmatch's `*` crosses "/", which is what `raw/*` should mean for S3 keys.
                globs.append(re.compile(fnmatch.translate(pattern)))
            else:
                plain.append(pattern)
        return cls(frozenset(buckets), tuple(globs), tuple(plain), depth, rules)

    def classify(self, event: ObjectEvent) -> tuple[str | None, str | None]:
        """(prefix, None) for a relevant event, or (None, reason) for one that is dropped."""
        return self.prefix_for(event.bucket, event.key)

    def folder_router(self) -> Callable[[str, str], tuple[str | None, str | None]]:
        """:meth:`prefix_for`, remembering its answer per (bucket, folder) where nothing else
        decides it: for a chunk of events, whose files mostly share a few folders.

        Without ignore patterns and a rules file, the answer for a key that is not a folder
        marker depends on its bucket and its folder only (the bucket filter, the ".quilt/"
        registry, the prefix depth); with them, every key is looked at (patterns match whole
        keys). Make one per chunk: it keeps every folder it sees.
        """
        if self.globs or self.plain_prefixes or self.rules is not None:
            return self.prefix_for
        prefix_for = self.prefix_for
        # bucket -> folder -> answer; the last bucket's map at hand (a chunk's events mostly
        # share one bucket), so no (bucket, folder) tuple is made per event.
        known: dict[str, dict[str, tuple[str | None, str | None]]] = {}
        last: list[Any] = [None, {}]

        def route(bucket: str, key: str) -> tuple[str | None, str | None]:
            end = key.rfind("/") + 1
            if end == len(key):  # a folder marker (or an empty key): not cached
                return prefix_for(bucket, key)
            if bucket == last[0]:
                folders = last[1]
            else:
                folders = known.get(bucket)
                if folders is None:
                    folders = known[bucket] = {}
                last[0], last[1] = bucket, folders
            folder = key[:end]
            found = folders.get(folder)
            if found is None:
                found = folders[folder] = prefix_for(bucket, key)
            return found

        return route

    def prefix_for(self, bucket: str, key: str) -> tuple[str | None, str | None]:
        """(prefix, None) for a relevant object, or (None, reason) for one that is dropped: the
        one decision the emitter makes per event and `edp backfill` per listed object."""
        if self.buckets and bucket not in self.buckets:
            return None, DROP_BUCKET
        if key.endswith("/"):
            return None, DROP_FOLDER_MARKER
        if key.startswith(QUILT_REGISTRY_PREFIX):
            return None, DROP_QUILT_REGISTRY
        if key.startswith(self.plain_prefixes) or (
            self.globs and any(g.match(key) for g in self.globs)
        ):
            return None, DROP_IGNORED
        depth = self.depth
        if self.rules is not None:
            rule = self.rules.rule_for(key)
            if rule is not None:
                if rule.ignore:
                    return None, DROP_IGNORED
                depth = rule.depth or depth
        prefix = prefix_of(key, depth)
        if prefix is None:
            return None, DROP_TOO_SHALLOW
        return prefix, None
