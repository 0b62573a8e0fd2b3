"""The batching rules, as pure code: apply routed object events to a snapshot of batch state.

Nothing here touches AWS, a database or the wall clock. A store loads the part of its state that a
group of events can touch into a :class:`Snapshot`, :func:`apply_events` works out what changes, and
the store writes the :class:`Changes` back in one transaction.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from edp.counters import ACCEPTED, DUPLICATE, STALE
from edp.events import ObjectEvent, earlier_forms

TRIGGER_COUNT = "count"
TRIGGER_DURATION = "duration"
TRIGGER_MARKER = "marker"
TRIGGER_MAX_AGE = "max-age"
TRIGGER_BACKFILL = "backfill"  # published by `edp backfill` for objects already in the bucket

BATCH_ID_NAMESPACE = uuid.UUID("6f1d2c1e-8a57-4bf3-9a43-5d1c0e0a7e11")


class PrefixThresholds(Protocol):
    """Where per-prefix thresholds come from (a rules file: :mod:`edp.rules_file`)."""

    def rules_at(self, prefix: str) -> Rules: ...


@dataclass(frozen=True)
class Rules:
    """The batching thresholds, as the core uses them.

    With ``overrides`` (a rules file), :meth:`at` gives the thresholds of one prefix; the dedupe
    window and the ingest clock stay global.
    """

    threshold_count: int = 20
    threshold_duration: timedelta = timedelta(seconds=300)
    max_age: timedelta | None = None
    marker_patterns: tuple[re.Pattern[str], ...] = ()
    dedupe_window: timedelta = timedelta(hours=24)
    overrides: PrefixThresholds | None = field(default=None, compare=False, repr=False)

    def at(self, prefix: str) -> Rules:
        """The thresholds for a batch of ``prefix``: its rule's, else these."""
        return self if self.overrides is None else self.overrides.rules_at(prefix)

    def is_marker(self, key: str) -> bool:
        name = key.rsplit("/", 1)[-1]
        return any(pattern.match(name) for pattern in self.marker_patterns)

    def due_time(self, first_activity: datetime, last_activity: datetime) -> datetime:
        """When a changed batch with these activity times falls due."""
        due_at = last_activity + self.threshold_duration
        if self.max_age is not None:
            due_at = min(due_at, first_activity + self.max_age)
        return due_at

    def due(self, batch: OpenBatch) -> tuple[datetime, str] | None:
        """When the batch falls due and by which trigger, or None if it never will as it stands."""
        if not batch.changed:
            return None
        due_at = self.due_time(batch.first_activity, batch.last_activity)
        return due_at, self.trigger_of(due_at, batch.last_activity)

    def trigger_of(self, due_at: datetime, last_activity: datetime) -> str:
        """Why a batch last active at ``last_activity`` falls due at ``due_at``: quiet for the
        duration threshold, or its maximum age reached first."""
        quiet = last_activity + self.threshold_duration
        return TRIGGER_DURATION if due_at == quiet else TRIGGER_MAX_AGE


@dataclass(frozen=True)
class OpenBatch:
    """The state of one open batch of a (bucket, prefix)."""

    bucket: str
    prefix: str
    batch_id: str
    count: int
    changed: bool
    first_activity: datetime
    last_activity: datetime
    first_event_time: datetime
    last_event_time: datetime
    due_at: datetime | None = None


@dataclass(frozen=True)
class Emission:
    """A closed batch: what the package-objects-ready event says."""

    batch_id: str
    bucket: str
    prefix: str
    count: int
    trigger: str
    emitted_at: datetime
    first_event_time: datetime
    last_event_time: datetime


class RoutedEvent(NamedTuple):
    """An in-scope object event with its prefix and the time it arrived (the ingest clock).

    A named tuple: one is made per event, and a tuple is made in C, without an instance dict.
    """

    event: ObjectEvent
    prefix: str
    arrived: datetime


@dataclass
class Snapshot:
    """The part of the store's state that a group of events can read."""

    clock: datetime | None = None
    batches: dict[tuple[str, str], OpenBatch] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)  # (batch_id, key)
    sequencers: dict[tuple[str, str], str] = field(default_factory=dict)  # (bucket, key) -> highest
    seen: set[str] = field(default_factory=set)  # identities inside the dedupe window
    # When the window of an identity in ``seen`` ends (its batch is closed); absent: still open.
    seen_expiry: dict[str, datetime] = field(default_factory=dict)


@dataclass
class Changes:
    """What applying events changed, for the store to write back."""

    clock: datetime | None = None
    batches: dict[tuple[str, str], OpenBatch] = field(
        default_factory=dict
    )  # still open, final state
    closed: list[Emission] = field(default_factory=list)
    members_added: set[tuple[str, str]] = field(default_factory=set)
    members_removed: set[tuple[str, str]] = field(default_factory=set)
    sequencers: dict[tuple[str, str], str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # identity -> batch_id
    counters: Counter[str] = field(default_factory=Counter)


def compare_sequencers(left: str, right: str) -> int:
    """-1, 0 or 1: S3 sequencers compare as strings after right-padding the shorter with '0'."""
    width = max(len(left), len(right))
    a, b = left.upper().ljust(width, "0"), right.upper().ljust(width, "0")
    return (a > b) - (a < b)


def make_batch_id(bucket: str, prefix: str, opened: datetime, first: ObjectEvent) -> str:
    """A deterministic id: the same stream gives the same ids on every store and every run.

    Laid out as a UUID version 7: the first 48 bits are the batch's opening time in
    milliseconds, the rest a digest of what opened it. Ids of batches opened about the same time
    sort together, so the stores' indexes keyed by batch id (members, dedupe identities, outbox)
    take new rows at one end instead of on a random page each.
    """
    identity = first.identity()
    # The identity in its schema-2 form, so a stream gives the same ids as under earlier versions.
    seeded = earlier_forms(identity)[1] if identity else ""
    seed = "\0".join((bucket, prefix, opened.isoformat(), first.key, first.kind, seeded))
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    millis = max(0, (opened - _EPOCH) // _MILLISECOND) & _MILLIS_MASK
    value = (millis << 80) | int.from_bytes(digest[6:16], "big")
    text = f"{(value & _V7_CLEAR) | _V7_SET:032x}"  # str(uuid.UUID(int=...)), without the class
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MILLIS_MASK = (1 << 48) - 1
# Version nibble (bits 76-79) = 7, variant bits (62-63) = 0b10, as RFC 9562 lays them out.
_V7_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_V7_SET = (0x7 << 76) | (0x2 << 62)


def close_batch(batch: OpenBatch, at: datetime, trigger: str) -> Emission:
    return Emission(
        batch_id=batch.batch_id,
        bucket=batch.bucket,
        prefix=batch.prefix,
        count=batch.count,
        trigger=trigger,
        emitted_at=at,
        first_event_time=batch.first_event_time,
        last_event_time=batch.last_event_time,
    )


def close_due(batches: Iterable[OpenBatch], now: datetime, rules: Rules) -> list[Emission]:
    """Emissions for every batch due at or before ``now``, in (time, bucket, prefix) order."""
    emissions = []
    for batch in batches:
        due = rules.at(batch.prefix).due(batch)
        if due is not None and due[0] <= now:
            emissions.append(close_batch(batch, due[0], due[1]))
    return sorted(emissions, key=emission_order)


def rescheduled(
    batches: Iterable[OpenBatch], emissions: Iterable[Emission], rules: Rules
) -> list[OpenBatch]:
    """Batches a sweep looked at but did not close, whose stored due time the rules now put
    elsewhere (the thresholds changed since their last event): they get the recomputed one, so
    the store's next due time stays true and no emitter wakes up for nothing."""
    closed = {e.batch_id for e in emissions}
    moved = []
    for batch in batches:
        if batch.batch_id in closed:
            continue
        due = rules.at(batch.prefix).due(batch)
        due_at = due[0] if due else None
        if due_at != batch.due_at:
            moved.append(replace(batch, due_at=due_at))
    return moved


def emission_order(emission: Emission) -> tuple[datetime, str, str]:
    return (emission.emitted_at, emission.bucket, emission.prefix)


class WorkingBatch:
    """An open batch that the current call has changed: updated in place per event, and made an
    (immutable) OpenBatch once, when the call ends or closes it."""

    __slots__ = (
        "batch_id",
        "count",
        "due_at",
        "first_activity",
        "first_event_time",
        "last_activity",
        "last_event_time",
    )

    def __init__(
        self,
        batch_id: str,
        count: int,
        first_activity: datetime,
        first_event_time: datetime,
    ) -> None:
        self.batch_id = batch_id
        self.count = count
        self.first_activity = self.last_activity = self.due_at = first_activity
        self.first_event_time = self.last_event_time = first_event_time

    @classmethod
    def start(
        cls, batch: OpenBatch | None, where: tuple[str, str], now: datetime, event: ObjectEvent
    ) -> WorkingBatch:
        """The place's batch as a call starts changing it: ``batch`` (the open one, as stored),
        or a new one that ``event`` opens at ``now``."""
        if batch is None:
            return cls(make_batch_id(where[0], where[1], now, event), 0, now, event.event_time)
        return cls(batch.batch_id, batch.count, batch.first_activity, batch.first_event_time)

    def touch(self, now: datetime, event_time: datetime, limits: Rules) -> None:
        """An event applied to the batch at ``now``: its activity and its due time move on."""
        self.last_activity = now
        self.last_event_time = event_time
        if limits.max_age is None:
            self.due_at = now + limits.threshold_duration  # due_time, inlined: once per event
        else:
            self.due_at = limits.due_time(self.first_activity, now)


def apply_events(snapshot: Snapshot, events: Sequence[RoutedEvent], rules: Rules) -> Changes:
    """Apply events in order to the snapshot (which is updated in place) and return the changes."""
    changes = Changes()
    clock = snapshot.clock
    batches = snapshot.batches
    members = snapshot.members
    seen = snapshot.seen
    seen_expiry = snapshot.seen_expiry
    sequencers = snapshot.sequencers
    changed_seen = changes.seen
    changed_sequencers = changes.sequencers
    added, removed = changes.members_added, changes.members_removed
    window = rules.dedupe_window
    at = rules.at
    # The thresholds of a prefix's rule: looked up once per prefix and call, so a rule change
    # reaches an open batch at its next event (SEMANTICS.md, "Rules per prefix").
    limits_of: dict[str, Rules] = {}
    # Identities loaded without an expiry belong to the batch open at their place when loaded; a
    # batch closed in this call starts its identities' dedupe window at once, exactly as a store
    # does when it closes a batch between two calls: so chunk boundaries never change a result.
    loaded_owner = {where: batch.batch_id for where, batch in batches.items()}
    window_ends: dict[str, datetime] = {}  # batch_id -> end of its dedupe window
    # The batches this call changed, by place (the others stay in ``batches`` as loaded).
    working: dict[tuple[str, str], WorkingBatch] = {}
    accepted = duplicates = stale = 0
    for routed in events:
        event = routed.event
        arrived = routed.arrived
        now = arrived if clock is None or arrived > clock else clock
        clock = now
        prefix = routed.prefix
        where = (event.bucket, prefix)
        limits = limits_of.get(prefix)
        if limits is None:
            limits = limits_of[prefix] = at(prefix)
        work = working.get(where)
        batch: OpenBatch | None = None  # the loaded batch of the place, when it has no work yet
        if work is not None:
            if work.due_at <= now:
                trigger = limits.trigger_of(work.due_at, work.last_activity)
                _close_working(changes, batches, working, where, work, work.due_at, trigger)
                window_ends[work.batch_id] = work.due_at + window
                work = None
        else:
            batch = batches.get(where)
            if batch is not None:
                due = limits.due(batch)
                if due is not None and due[0] <= now:
                    _close(changes, batches, batch, due[0], due[1])
                    window_ends[batch.batch_id] = due[0] + window
                    batch = None
        identity = event.identity()
        seen_anew = False  # seen before, but its dedupe window has ended
        if identity is not None and identity in seen:
            expires = seen_expiry.get(identity)
            if expires is None and window_ends:
                owner = changed_seen.get(identity) or loaded_owner.get(where)
                expires = window_ends.get(owner) if owner is not None else None
            if expires is None or expires > now:
                duplicates += 1
                continue
            seen_anew = True
        sequencer = event.sequencer
        if sequencer is not None:
            seq_key = (event.bucket, event.key)
            highest = sequencers.get(seq_key)
            if highest is not None and compare_sequencers(sequencer, highest) < 0:
                stale += 1
                continue
            sequencers[seq_key] = sequencer
            changed_sequencers[seq_key] = sequencer
        if work is None:
            work = working[where] = WorkingBatch.start(batch, where, now, event)
        member = (work.batch_id, event.key)
        if event.kind == "created":
            if member not in members:
                members.add(member)
                added.add(member)
                removed.discard(member)
                work.count += 1
        elif member in members:
            members.discard(member)
            removed.add(member)
            added.discard(member)
            work.count -= 1
        work.touch(now, event.event_time, limits)
        if identity is not None:
            seen.add(identity)
            changed_seen[identity] = work.batch_id
            if seen_anew:  # its old window's end no longer applies: it belongs to this batch now
                seen_expiry.pop(identity, None)
        accepted += 1
        if work.count >= limits.threshold_count:
            _close_working(changes, batches, working, where, work, now, TRIGGER_COUNT)
            window_ends[work.batch_id] = now + window
        elif event.kind == "created" and limits.marker_patterns and limits.is_marker(event.key):
            _close_working(changes, batches, working, where, work, now, TRIGGER_MARKER)
            window_ends[work.batch_id] = now + window
    for where, work in working.items():
        batches[where] = changes.batches[where] = open_batch_of(where, work)
    if accepted:
        changes.counters[ACCEPTED] += accepted
    if duplicates:
        changes.counters[DUPLICATE] += duplicates
    if stale:
        changes.counters[STALE] += stale
    snapshot.clock = clock
    changes.clock = clock
    return changes


def open_batch_of(where: tuple[str, str], work: WorkingBatch) -> OpenBatch:
    return OpenBatch(
        where[0],
        where[1],
        work.batch_id,
        work.count,
        True,
        work.first_activity,
        work.last_activity,
        work.first_event_time,
        work.last_event_time,
        work.due_at,
    )


def _close_working(
    changes: Changes,
    batches: dict[tuple[str, str], OpenBatch],
    working: dict[tuple[str, str], WorkingBatch],
    where: tuple[str, str],
    work: WorkingBatch,
    at: datetime,
    trigger: str,
) -> None:
    del working[where]
    batches.pop(where, None)
    changes.batches.pop(where, None)
    changes.closed.append(close_batch(open_batch_of(where, work), at, trigger))


def _close(
    changes: Changes,
    batches: dict[tuple[str, str], OpenBatch],
    batch: OpenBatch,
    at: datetime,
    trigger: str,
) -> None:
    where = (batch.bucket, batch.prefix)
    del batches[where]
    changes.batches.pop(where, None)
    changes.closed.append(close_batch(batch, at, trigger))
