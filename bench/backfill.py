"""Backfill grouping benchmark: a generated listing of N keys grouped into prefixes, beside bare loops.

    python bench/backfill.py [--keys 1000000] [--prefixes 5000]

No S3: the listing is generated in memory as ListObjectsV2 pages (Key, Size, ETag, LastModified),
with 4% of the keys dropped by the scope (ignored, too shallow). Rows:

* ``grouping``       - what ``edp backfill`` runs per page: :class:`edp.backfill.Grouper` (the
  emitter's Scope per key, the modified-time filter, count, oldest/newest, listing digest);
* ``grouping+rules`` - the same with a three-rule rules file in force;
* ``bare``           - the same result (prefix -> count, oldest, newest, digest) from one inline
  loop over the keys with no scope rules at all: the ceiling;
* ``bare, no digest`` - the bare loop without the digest, for scale.

Target (issue 15): ``grouping`` within 3x of ``bare``. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from edp.backfill import Grouper
from edp.emitter import build_scope
from edp.rules_file import parse_rules
from edp.settings import Settings

T0 = datetime(2020, 1, 1, tzinfo=UTC)
PAGE = 1000  # ListObjectsV2's page size
TARGET_BARE = 3.0
RULES = [
    {"name": "sequencer", "match": "sequencer-*/", "threshold_count": 2000},
    {"name": "imaging", "match": "imaging/", "depth": 3},
    {"name": "scratch", "match": "scratch/", "ignore": True},
]


def make_listing(keys: int, prefixes: int) -> list[list[dict[str, Any]]]:
    """``keys`` objects in pages of 1,000; 4% are dropped by the scope."""
    pages: list[list[dict[str, Any]]] = []
    page: list[dict[str, Any]] = []
    for n in range(keys):
        kind = n % 50
        if kind == 0:
            key = f"raw/{n % prefixes:05d}/file-{n:07d}.dat"  # ignored
        elif kind == 1:
            key = f"top-{n:07d}.dat"  # too shallow
        else:
            key = f"instrument-{n % 7}/run-{n % prefixes:05d}/file-{n:07d}.dat"
        page.append(
            {
                "Key": key,
                "Size": n % 4096,
                "ETag": f'"{n:032x}"',
                "LastModified": T0 + timedelta(seconds=n),
            }
        )
        if len(page) == PAGE:
            pages.append(page)
            page = []
    if page:
        pages.append(page)
    return pages


def grouping(settings: Settings, rules: bool) -> Callable[[list[list[dict[str, Any]]]], int]:
    ruleset = parse_rules(RULES, settings) if rules else None
    scope = build_scope(settings, ruleset)

    def run(pages: list[list[dict[str, Any]]]) -> int:
        grouper = Grouper("bench-bucket", scope)
        for page in pages:
            grouper.add_page(page)
        return len(grouper.groups)

    return run


def bare(digest: bool) -> Callable[[list[list[dict[str, Any]]]], int]:
    def run(pages: list[list[dict[str, Any]]]) -> int:
        groups: dict[str, list[Any]] = {}
        blake2b = hashlib.blake2b
        for page in pages:
            for obj in page:
                key = obj["Key"]
                first = key.find("/")
                second = key.find("/", first + 1) if first >= 0 else -1
                if second < 0:
                    continue
                prefix = key[: second + 1]
                stamp = obj["LastModified"]
                group = groups.get(prefix)
                if group is None:
                    group = groups[prefix] = [0, stamp, stamp, 0]
                group[0] += 1
                if stamp < group[1]:
                    group[1] = stamp
                if stamp > group[2]:
                    group[2] = stamp
                if digest:
                    line = f"{len(key)}:{key}\0{obj['Size']}\0{obj['ETag']}".encode()
                    group[3] += int.from_bytes(blake2b(line, digest_size=16).digest(), "big")
        return len(groups)

    return run


def best_of(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    times = []
    result = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--prefixes", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    settings = Settings(
        ignore_patterns=("raw/*",), database_url="memory://", buckets=("bench-bucket",)
    )
    started = time.perf_counter()
    pages = make_listing(args.keys, args.prefixes)
    print(f"listing: {args.keys:,} keys in {len(pages):,} pages, made in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    rows = [
        ("grouping", grouping(settings, rules=False)),
        ("grouping+rules", grouping(settings, rules=True)),
        ("bare", bare(digest=True)),
        ("bare, no digest", bare(digest=False)),
    ]
    seconds: dict[str, float] = {}
    print(f"{'row':<16} {'seconds':>8} {'keys/s':>12} {'prefixes':>9}")
    for name, work in rows:
        elapsed, groups = best_of(args.repeat, partial(work, pages))
        seconds[name] = elapsed
        print(f"{name:<16} {elapsed:>8.2f} {args.keys / elapsed:>12,.0f} {groups:>9,}")
    ratio = seconds["grouping"] / seconds["bare"]
    ok = ratio <= TARGET_BARE
    print(
        f"grouping / bare = {ratio:.2f}x (target <= {TARGET_BARE:.0f}x): {'ok' if ok else 'MISSED'}"
    )
    print(f"grouping+rules / bare = {seconds['grouping+rules'] / seconds['bare']:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
