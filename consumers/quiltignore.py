"""``.quiltignore`` rules applied to logical keys, as quilt3 applies them to local folders.

quilt3 honours ``.quiltignore`` only in ``set_dir`` of a local directory; for an S3 source it
ignores the file. These pure functions give S3 prefixes the same behaviour: every non-empty line
is a shell glob matched (``fnmatch``, ``*`` crosses ``/``) against the key and against each of its
parent folders with and without a trailing ``/``, anywhere in the tree (quilt3 prefixes each rule
with ``*/``). Unlike quilt3, trailing whitespace and ``\\r`` are stripped and ``#`` lines are
comments.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

QUILTIGNORE = ".quiltignore"


def parse_quiltignore(text: str) -> tuple[str, ...]:
    """The ignore rules of a ``.quiltignore`` file's text."""
    rules = []
    for line in text.splitlines():
        rule = line.rstrip()
        if rule and not rule.startswith("#"):
            rules.append(rule)
    return tuple(rules)


def is_ignored(logical_key: str, rules: Iterable[str]) -> bool:
    """True when ``logical_key`` (relative to the package root) matches one of ``rules``."""
    patterns = ["*/" + rule for rule in rules]
    if not patterns:
        return False
    # A leading "/" stands for the package root, so "*/rule" also matches top-level keys.
    path = "/" + logical_key
    parts = path.split("/")
    folders = ["/".join(parts[:end]) for end in range(2, len(parts))]
    for pattern in patterns:
        if fnmatchcase(path, pattern):
            return True
        for folder in folders:
            if fnmatchcase(folder, pattern) or fnmatchcase(folder + "/", pattern):
                return True
    return False


def filter_ignored(logical_keys: Iterable[str], rules: Iterable[str]) -> list[str]:
    """The keys that no rule ignores, in their original order."""
    rules = tuple(rules)
    return [key for key in logical_keys if not is_ignored(key, rules)]
