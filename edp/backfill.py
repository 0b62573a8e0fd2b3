"""`edp backfill`: package what is already in a bucket, one package-objects-ready per prefix.

Listing (ListObjectsV2, several top-level prefixes at once) feeds every key through the emitter's
own :class:`edp.scope.Scope`, so a key lands in exactly the prefix its event would have. Each
prefix becomes one closed batch (trigger ``backfill``) whose ``batch_id`` comes from the bucket, the
prefix and a digest of its listing (keys, sizes, ETags): an unchanged prefix gets the same id on
every run. Batches go into the store's outbox (the journal: an id already there is not added
again) and are published from it by the ordinary publisher, paced by ``--rate``.
"""

from __future__ import annotations

import hashlib
import math
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from edp import counters
from edp.clock import Clock, rfc3339, utc_now
from edp.core import TRIGGER_BACKFILL, Emission
from edp.errors import BackfillError, PublishError
from edp.publisher import PUT_EVENTS_MAX_ENTRIES, Publisher, publish_pending
from edp.scope import Scope
from edp.store.base import BatchStore

LIST_PAGE_SIZE = 1000  # ListObjectsV2 returns at most 1,000 keys per request
DEFAULT_CONCURRENCY = 8  # top-level prefixes listed at once
_DIGEST_MODULUS = 1 << 128


@dataclass
class PrefixGroup:
    """What the listing says about one prefix: count, oldest/newest LastModified, a digest."""

    count: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    # Sum of the objects' hashes: independent of listing order and of how the listing was split
    # between threads, so the same objects always give the same digest.
    digest: int = 0

    def merge(self, other: PrefixGroup) -> None:
        self.count += other.count
        self.digest = (self.digest + other.digest) % _DIGEST_MODULUS
        if other.oldest is not None and (self.oldest is None or other.oldest < self.oldest):
            self.oldest = other.oldest
        if other.newest is not None and (self.newest is None or other.newest > self.newest):
            self.newest = other.newest


class Grouper:
    """Groups listed objects by the prefix the emitter would give them; counts the dropped."""

    def __init__(
        self,
        bucket: str,
        scope: Scope,
        *,
        modified_since: datetime | None = None,
        modified_until: datetime | None = None,
    ) -> None:
        self.bucket = bucket
        self.scope = scope
        self.since = modified_since
        self.until = modified_until
        self.groups: dict[str, PrefixGroup] = {}
        self.dropped: Counter[str] = Counter()
        self.listed = 0

    def add(self, key: str, size: int, etag: str, last_modified: datetime) -> None:
        """One listed object."""
        self.add_page([{"Key": key, "Size": size, "ETag": etag, "LastModified": last_modified}])

    def add_page(self, contents: Iterable[dict[str, Any]]) -> None:
        """One ListObjectsV2 page's ``Contents`` (the loop of :meth:`add`, inlined: it runs once
        per object of the bucket)."""
        since, until = self.since, self.until
        prefix_for, bucket = self.scope.prefix_for, self.bucket
        groups, dropped = self.groups, self.dropped
        blake2b = hashlib.blake2b
        for obj in contents:
            self.listed += 1
            key = obj["Key"]
            stamp = obj["LastModified"]
            if (since is not None and stamp < since) or (until is not None and stamp >= until):
                dropped["modified-time"] += 1
                continue
            prefix, reason = prefix_for(bucket, key)
            if prefix is None:
                dropped[str(reason)] += 1
                continue
            group = groups.get(prefix)
            if group is None:
                group = groups[prefix] = PrefixGroup(0, stamp, stamp, 0)
            group.count += 1
            line = f"{len(key)}:{key}\0{obj.get('Size', 0)}\0{obj.get('ETag', '')}"
            digest = blake2b(line.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            group.digest += int.from_bytes(digest, "big")
            if stamp < group.oldest:  # type: ignore[operator]
                group.oldest = stamp
            elif stamp > group.newest:  # type: ignore[operator]
                group.newest = stamp

    def merge(self, other: Grouper) -> None:
        self.listed += other.listed
        self.dropped.update(other.dropped)
        for prefix, group in other.groups.items():
            mine = self.groups.get(prefix)
            if mine is None:
                self.groups[prefix] = group
            else:
                mine.merge(group)


def backfill_batch_id(bucket: str, prefix: str, group: PrefixGroup) -> str:
    """Same bucket, prefix and listing (keys, sizes, ETags): same id, on every run."""
    seed = "\0".join(
        (TRIGGER_BACKFILL, bucket, prefix, str(group.count), f"{group.digest % _DIGEST_MODULUS:x}")
    )
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


@dataclass
class Plan:
    """What a backfill would publish: one batch per prefix, in prefix order."""

    bucket: str
    batches: list[Emission] = field(default_factory=list)
    listed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    requests: int = 0  # ListObjectsV2 calls made

    @property
    def objects(self) -> int:
        return sum(e.count for e in self.batches)


def plan_from(grouper: Grouper, now: datetime, requests: int = 0) -> Plan:
    plan = Plan(grouper.bucket, listed=grouper.listed, dropped=grouper.dropped, requests=requests)
    for prefix in sorted(grouper.groups):
        group = grouper.groups[prefix]
        assert group.oldest is not None and group.newest is not None
        plan.batches.append(
            Emission(
                batch_id=backfill_batch_id(grouper.bucket, prefix, group),
                bucket=grouper.bucket,
                prefix=prefix,
                count=group.count,
                trigger=TRIGGER_BACKFILL,
                emitted_at=now,
                first_event_time=group.oldest,
                last_event_time=group.newest,
            )
        )
    return plan


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> (bucket, prefix)."""
    if not uri.startswith("s3://"):
        raise BackfillError(f"expected s3://bucket[/prefix], got {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise BackfillError(f"expected s3://bucket[/prefix], got {uri!r}")
    return bucket, prefix


# --- listing -------------------------------------------------------------------------------------
class Progress:
    """Counts and an ETA on stderr when it is a terminal; silent otherwise (logs, Lambda)."""

    def __init__(self, out: IO[str] | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.out = out if out is not None else sys.stderr
        self.enabled = bool(getattr(self.out, "isatty", lambda: False)())
        self.clock = clock
        self.started = clock()
        self.lock = threading.Lock()
        self.last_draw = 0.0

    def show(self, phase: str, done: int, total: int, detail: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        with self.lock:
            now = self.clock()
            if not force and now - self.last_draw < 0.2:
                return
            self.last_draw = now
            width = 24
            filled = width * done // total if total else width
            elapsed = now - self.started
            eta = ""
            if 0 < done < total:
                eta = f" ETA {_duration(elapsed / done * (total - done))}"
            bar = "#" * filled + "." * (width - filled)
            self.out.write(f"\r{phase} [{bar}] {done}/{total} {detail}{eta}\x1b[K")
            self.out.flush()

    def finish(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


def _duration(seconds: float) -> str:
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def list_and_group(
    s3: Any,
    bucket: str,
    prefix: str,
    make_grouper: Callable[[], Grouper],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    page_size: int = LIST_PAGE_SIZE,
) -> tuple[Grouper, int]:
    """List ``bucket`` under ``prefix``: the folders right below it are listed concurrently.

    Returns the merged grouper and the number of ListObjectsV2 requests made.
    """
    paginator = s3.get_paginator("list_objects_v2")
    top = make_grouper()
    folders: list[str] = []
    requests = 0
    pages = paginator.paginate(
        Bucket=bucket,
        Prefix=prefix,
        Delimiter="/",
        PaginationConfig={"PageSize": page_size},
    )
    for page in pages:
        requests += 1
        top.add_page(page.get("Contents", ()))
        folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
    counts = {"done": 0, "listed": top.listed, "requests": requests}
    lock = threading.Lock()

    def list_folder(folder: str) -> Grouper:
        grouper = make_grouper()
        for page in paginator.paginate(
            Bucket=bucket, Prefix=folder, PaginationConfig={"PageSize": page_size}
        ):
            before = grouper.listed
            grouper.add_page(page.get("Contents", ()))
            with lock:
                counts["listed"] += grouper.listed - before
                counts["requests"] += 1
            if progress:
                progress.show(
                    "listing", counts["done"], len(folders), f"folders, {counts['listed']} objects"
                )
        with lock:
            counts["done"] += 1
        if progress:
            progress.show(
                "listing", counts["done"], len(folders), f"folders, {counts['listed']} objects"
            )
        return grouper

    if folders:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            # map keeps the folders' order; merging is order-independent anyway.
            for grouper in pool.map(list_folder, folders):
                top.merge(grouper)
    if progress:
        progress.show(
            "listing", len(folders), len(folders), f"folders, {top.listed} objects", force=True
        )
        progress.finish()
    return top, counts["requests"]


# --- publishing ----------------------------------------------------------------------------------
class RateLimiter:
    """At most ``rate`` events per second on average, with an injectable clock and sleep."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise BackfillError(f"--rate must be a number of events per second > 0, got {rate}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.start: float | None = None
        self.sent = 0

    @property
    def chunk(self) -> int:
        """How many events to send at once: up to a PutEvents call, at most a second's worth."""
        if self.rate is None:
            return PUT_EVENTS_MAX_ENTRIES * 10
        return max(1, min(PUT_EVENTS_MAX_ENTRIES, int(self.rate)))

    def wait_for(self, count: int) -> None:
        """Block until ``count`` more events may be sent, then count them as sent."""
        if self.rate is None:
            return
        now = self.clock()
        if self.start is None:
            self.start = now
        allowed_at = self.start + self.sent / self.rate
        if allowed_at > now:
            self.sleep(allowed_at - now)
        self.sent += count


@dataclass
class BackfillReport:
    planned: int = 0
    published: int = 0
    already: int = 0  # batch ids already in the outbox (published before, or pending from a stop)


def publish_plan(
    plan: Plan,
    store: BatchStore,
    publisher: Publisher,
    *,
    limiter: RateLimiter | None = None,
    clock: Clock = utc_now,
    progress: Progress | None = None,
) -> BackfillReport:
    """Enqueue the plan's batches a chunk at a time and publish each chunk from the outbox.

    An id already in the outbox is not added again: published ones are skipped, pending ones (a
    run stopped between enqueueing and publishing) are published now. Stopping at any point
    therefore loses nothing and a re-run publishes nothing twice.
    """
    limiter = limiter or RateLimiter(None)
    report = BackfillReport(planned=len(plan.batches))
    # A previous run stopped after enqueueing: publish its leftovers first, at the same pace.
    _publish_paced(store, publisher, limiter, clock, report)
    for start in range(0, len(plan.batches), limiter.chunk):
        chunk = plan.batches[start : start + limiter.chunk]
        added = store.enqueue(chunk)
        report.already += len(chunk) - len(added)
        if added:
            _publish_paced(store, publisher, limiter, clock, report)
        if progress:
            done = start + len(chunk)
            progress.show(
                "publishing", done, len(plan.batches), f"prefixes, {report.published} published"
            )
    if progress:
        progress.finish()
    return report


def _publish_paced(
    store: BatchStore,
    publisher: Publisher,
    limiter: RateLimiter,
    clock: Clock,
    report: BackfillReport,
) -> None:
    """Publish what the outbox holds, once the rate allows that many events."""
    pending = store.pending_count()
    if not pending:
        return
    limiter.wait_for(pending)
    result = publish_pending(store, publisher, clock, limit=max(limiter.chunk, pending))
    report.published += len(result.published)
    if result.failed:
        raise PublishError(
            f"{len(result.failed)} batch(es) were not accepted by EventBridge; they stay in "
            "the outbox: run the backfill again (or let the emitter's sweep) to send them"
        )


# --- the whole command ---------------------------------------------------------------------------
def describe_plan(plan: Plan, out: IO[str]) -> None:
    """The dry-run listing: one line per prefix, then the totals."""
    for emission in plan.batches:
        out.write(
            f"{emission.prefix}\t{emission.count}\t{rfc3339(emission.first_event_time)}\t"
            f"{rfc3339(emission.last_event_time)}\t{emission.batch_id}\n"
        )
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(plan.dropped.items())) or "none"
    out.write(
        f"s3://{plan.bucket}: {len(plan.batches)} prefix(es), {plan.objects} object(s) "
        f"of {plan.listed} listed (dropped: {dropped}); {plan.requests} list request(s)\n"
    )


def dropped_counters(plan: Plan) -> Counter[str]:
    return Counter({counters.dropped(reason): n for reason, n in plan.dropped.items()})


def build_plan(
    s3: Any,
    uri: str,
    scope: Scope,
    *,
    modified_since: datetime | None = None,
    modified_until: datetime | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    clock: Clock = utc_now,
    progress: Progress | None = None,
    page_size: int = LIST_PAGE_SIZE,
) -> Plan:
    bucket, prefix = parse_s3_uri(uri)
    if scope.buckets and bucket not in scope.buckets:
        raise BackfillError(
            f"bucket {bucket!r} is not a watched bucket ({', '.join(sorted(scope.buckets))}); "
            "backfill applies the emitter's scope: add it with --bucket / EDP_BUCKET_NAME"
        )

    def make_grouper() -> Grouper:
        return Grouper(bucket, scope, modified_since=modified_since, modified_until=modified_until)

    grouper, requests = list_and_group(
        s3,
        bucket,
        prefix,
        make_grouper,
        concurrency=concurrency,
        progress=progress,
        page_size=page_size,
    )
    return plan_from(grouper, clock(), requests)


def publish_summary(plan: Plan, report: BackfillReport) -> str:
    return (
        f"s3://{plan.bucket}: {report.planned} prefix(es), {plan.objects} object(s); "
        f"{report.published} published, {report.already} already in the outbox (not sent again)"
    )


def run_backfill(
    uri: str,
    scope: Scope,
    *,
    s3: Any,
    store: BatchStore | None,
    publisher: Publisher | None,
    dry_run: bool = False,
    modified_since: datetime | None = None,
    modified_until: datetime | None = None,
    rate: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    clock: Clock = utc_now,
    limiter: RateLimiter | None = None,
    progress: Progress | None = None,
    page_size: int = LIST_PAGE_SIZE,
) -> tuple[Plan, BackfillReport | None]:
    """List, group and (unless ``dry_run``) publish: what the CLI and the Lambda both call."""
    limiter = limiter or RateLimiter(rate)  # checks --rate before any listing
    if modified_since and modified_until and modified_until <= modified_since:
        raise BackfillError("--modified-until must be later than --modified-since")
    plan = build_plan(
        s3,
        uri,
        scope,
        modified_since=modified_since,
        modified_until=modified_until,
        concurrency=concurrency,
        clock=clock,
        progress=progress,
        page_size=page_size,
    )
    if dry_run:
        return plan, None
    if store is None or publisher is None:
        raise BackfillError("publishing needs a store and a publisher")
    report = publish_plan(plan, store, publisher, limiter=limiter, clock=clock, progress=progress)
    return plan, report


def parse_time(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 date or date-time; UTC when it has no offset."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise BackfillError(
            f"{name}: {text!r} is not a date or time, e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
        ) from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
