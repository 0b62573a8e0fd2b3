"""Package naming: map an S3 prefix to a valid quilt3 package name (``namespace/name``, ``[\\w-]``).

Rules (pure, deterministic, documented in docs/consumers.md, Package naming):

1. The prefix is split on ``/`` and empty segments are dropped (``a//b/`` -> ``a``, ``b``).
2. Each segment is cleaned: accents are removed (``é`` -> ``e``), then every run of characters
   outside ``[A-Za-z0-9_-]`` becomes one ``_`` (``run 1.2`` -> ``run_1_2``).
3. Depth 1 (``raw/``) -> ``edp/raw``; depth 2 (``instr/exp-1/``) -> ``instr/exp-1``;
   depth 3+ (``instr/2024/exp-1/``) -> the first segment is the namespace and the rest are joined
   with ``--``: ``instr/2024--exp-1``.

Different prefixes can map to the same name (``a.b`` and ``a_b``); pass your own function as
``name_for`` to :func:`consumers.pipeline.package_prefix` when that matters.
"""

from __future__ import annotations

import re
import unicodedata

DEPTH_ONE_NAMESPACE = "edp"
DEEP_SEGMENT_JOINER = "--"
PACKAGE_NAME_PATTERN = re.compile(r"^[\w-]+/[\w-]+$")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def package_name(prefix: str) -> str:
    """Return the quilt3 package name for ``prefix`` (see the module docstring for the rules)."""
    segments = [clean_segment(segment) for segment in prefix.split("/") if segment]
    if not segments:
        raise ValueError(f"cannot name a package after an empty prefix: {prefix!r}")
    if len(segments) == 1:
        return f"{DEPTH_ONE_NAMESPACE}/{segments[0]}"
    return f"{segments[0]}/{DEEP_SEGMENT_JOINER.join(segments[1:])}"


def clean_segment(segment: str) -> str:
    """Turn one prefix segment into ``[A-Za-z0-9_-]+`` characters."""
    decomposed = unicodedata.normalize("NFKD", segment)
    without_marks = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NOT_NAME_CHARS.sub("_", without_marks) or "_"


def is_valid_package_name(name: str) -> bool:
    """True when quilt3 accepts ``name`` (the same pattern as ``quilt3.util.PACKAGE_NAME_FORMAT``)."""
    return bool(PACKAGE_NAME_PATTERN.match(name))
