"""The in-memory backend: the rules applied straight to the store's own maps (tests, and
`memory://` for one-off runs such as `edp simulate`).

The SQL backends load what a chunk can touch into a Snapshot, let the core apply the rules to
it, and write the changes back. Here there is nothing to load: the rules run on the store's own
dictionaries, and every write is journalled, so a failed ingest is undone and leaves the store
as it was. The rules are the core's (the same helpers, step for step: edp/core.py's
apply_events); the property tests play every stream through this store, SQLite and PostgreSQL
and require the same output. Members and identities are indexed by batch, so closing a batch
touches only its own; due times and dedupe expiries sit in heaps and sequencers in last-update
order, so a sweep or a purge looks only at what is due.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from edp.core import (
    TRIGGER_COUNT,
    TRIGGER_MARKER,
    Changes,
    Emission,
    OpenBatch,
    RoutedEvent,
    Rules,
    WorkingBatch,
    close_batch,
    close_due,
    compare_sequencers,
    emission_order,
    open_batch_of,
    rescheduled,
)
from edp.counters import ACCEPTED, DUPLICATE, STALE
from edp.events import ObjectEvent
from edp.store.base import (
    BatchStore,
    PendingBatch,
    counters_for,
    emitted_counters,
)

Place = tuple[str, str]  # (bucket, prefix)
Identity = str  # identity_in_folder(): an event's identity among its folder's

# What a journal entry's last field says, when it is not the value the entry's key had before.
_MISSING: Any = object()  # the key was absent: undone by deleting it
_ADDED: Any = object()  # the member was added to the set: undone by discarding it
_DISCARDED: Any = object()  # the member was removed from the set: undone by adding it back
_PAIR_APPENDED: Any = object()  # two items were appended to the list: undone by removing both


def _undo(journal: list[Any]) -> None:
    """Put back, newest first, what the journalled writes changed. The journal is flat, three
    items per write (container, key, what it held): no tuple per write outlives the call, so a
    chunk's journal adds nothing for the garbage collector to follow."""
    for end in range(len(journal), 0, -3):
        container, key, old = journal[end - 3 : end]
        if old is _MISSING:
            del container[key]
        elif old is _ADDED:
            container.discard(key)
        elif old is _DISCARDED:
            container.add(key)
        elif old is _PAIR_APPENDED:
            del container[-2:]
        else:
            container[key] = old


# One folder of a bucket: (its dedupe identities, its sequencers). The identities map each identity
# to the batch it was applied to, open or closed; the identity is inside the dedupe window while
# that batch is open or its window (MemoryStore._window_ends) has not ended. The sequencers map
# each key to its highest sequencer. Then the folder's name (one string for all the folder's
# identities that batches list). Dicts of strings and a string: nothing in it for the garbage
# collector to follow, whatever the number of folders.
Folder = tuple[dict[Identity, str], dict[str, str], str]


@dataclass
class _Outboxed:
    emission: Emission
    claimed_until: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None


def astuple_emission(emission: Emission) -> tuple[Any, ...]:
    """Emission(*row) gives it back (dataclasses.astuple, without its deep copy)."""
    return tuple(getattr(emission, f.name) for f in fields(Emission))


def identity_in_folder(event: ObjectEvent, name_at: int) -> str | None:
    """What tells the event apart from the other writes of its folder (the bucket and folder are
    the map it is kept in): identity()'s fields without them and without the digest, shorter
    than the digest's hex (the file's name, not its key). None when identity() is None.

    ``name_at``: where the file's name starts in the key (after its last "/"). Injective: the
    form, the kind's initial ("c", "d"), then length-prefixed fields, then the name.
    """
    fields = event.__dict__
    version, sequencer = fields["version_id"], fields["sequencer"]
    if version is not None or sequencer is not None:
        version, sequencer = version or "", sequencer or ""
        return (
            f"v{fields['kind'][0]}{len(version)}:{version}{len(sequencer)}:{sequencer}"
            f"{fields['key'][name_at:]}"
        )
    event_id = fields["event_id"]
    if event_id is not None:
        return f"i{fields['kind'][0]}{len(event_id)}:{event_id}{fields['key'][name_at:]}"
    return None


def _folder_of(key: str) -> str:
    return key[: key.rfind("/") + 1]


class MemoryStore(BatchStore):
    """All state in dictionaries and heaps; nothing survives the process."""

    exclusive = True

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.RLock()
        self._clock: datetime | None = None
        self._batches: dict[Place, OpenBatch] = {}
        # (due_at, bucket, prefix, batch_id): at most about one entry per open batch, its due
        # time or an earlier one (entries are corrected or dropped when they reach the top).
        self._due: list[tuple[datetime, str, str, str]] = []
        self._members: dict[str, set[str]] = {}  # open batch id -> keys created in it
        # bucket -> folder -> its identities and sequencers. Grouped by folder: in one map of a
        # million entries every access is a cache miss (a lookup cost 4.7x more at 1M entries
        # than at 10k), while the few folders being written and their small maps stay in the
        # cache. An event touches its folder's maps once each.
        self._folders: dict[str, dict[str, Folder]] = {}
        # bucket -> key -> the clock of its last write, only for keys written more than once: a
        # key written once was written by its only entry in the log below.
        self._rewritten_at: dict[str, dict[str, datetime]] = {}
        # (clock, bucket, keys) per write, oldest first (the clock never goes backwards): purge
        # reads from the left until the window, instead of scanning every key.
        self._sequencer_log: deque[tuple[datetime, str, tuple[str, ...]]] = deque()
        self._window_ends: dict[str, datetime] = {}  # closed batch id -> end of its window
        # open batch id -> the identities applied to it, each after its folder's name:
        # [name, identity, name, identity, ...]
        self._identities: dict[str, list[str]] = {}
        # (window end, batch id) per closed batch, and the identities it closed: what purge drops.
        self._expiries: list[tuple[datetime, str]] = []
        # Closed batch id -> (its bucket, name, identity, name, identity, ...): strings only.
        self._closed_identities: dict[str, tuple[str, ...]] = {}
        self._pending: dict[str, _Outboxed] = {}  # the outbox's unpublished part
        # The published part, as rows of plain values (untracked by the garbage collector).
        self._published: dict[str, tuple[Any, ...]] = {}
        self._counters: Counter[str] = Counter()

    def transaction(self) -> AbstractContextManager[object]:
        return self._lock  # calls nest under the lock; each one writes only when it succeeds

    # --- ingest ------------------------------------------------------------------------
    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        with self._lock:
            journal: list[Any] = []
            try:
                changes, written = self._apply_events(events, rules, journal)
            except BaseException:
                _undo(journal)  # the rules failed halfway: nothing of the chunk stays
                raise
            changes.counters.update(dropped)
            clock = changes.clock
            assert clock is not None  # ingest never runs without events, which set the clock
            for bucket, (keys, rewritten) in written.items():
                self._sequencer_log.append((clock, bucket, tuple(keys)))
                if rewritten:
                    rewritten_at = self._rewritten_at.setdefault(bucket, {})
                    for key in rewritten:
                        rewritten_at[key] = clock
            self._record_closed(changes.closed, rules)
            self._counters.update(counters_for(changes))
            if self._clock is None or clock > self._clock:
                self._clock = clock
            return changes

    def _apply_events(
        self,
        events: Sequence[RoutedEvent],
        rules: Rules,
        journal: list[Any],
    ) -> tuple[Changes, dict[str, tuple[list[str], list[str]]]]:
        """edp.core.apply_events on the store's own maps, each write journalled (see _undo).

        Returns the changes (closed batches, the batches left open that changed, counters) and
        the sequencers written, by bucket: (keys, keys written before).
        """
        changes = Changes()
        clock = self._clock
        batches, members, identities = self._batches, self._members, self._identities
        all_folders, window_ends = self._folders, self._window_ends
        window = rules.dedupe_window
        at = rules.at
        # The thresholds of a prefix's rule: looked up once per prefix and call, so a rule change
        # reaches an open batch at its next event (SEMANTICS.md, "Rules per prefix").
        limits_of: dict[str, Rules] = {}
        # The end of the dedupe window of each batch closed in this call: it starts at once,
        # exactly as when a batch closes between two calls, so chunk boundaries never change a
        # result.
        closed_ends: dict[str, datetime] = {}
        # The batches this call changed, by place (updated in place, made OpenBatch at the end).
        working: dict[Place, WorkingBatch] = {}
        written: dict[str, tuple[list[str], list[str]]] = {}
        bucket: str | None = None
        folders: dict[str, Folder] = {}
        written_keys: list[str] = []
        rewritten_keys: list[str] = []
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
            batch: OpenBatch | None = None  # the stored batch of the place, when it has no work
            if work is not None:
                if work.due_at <= now:
                    trigger = limits.trigger_of(work.due_at, work.last_activity)
                    self._close_working(
                        changes, working, where, work, work.due_at, trigger, journal
                    )
                    closed_ends[work.batch_id] = work.due_at + window
                    work = None
            else:
                batch = batches.get(where)
                if batch is not None:
                    due = limits.due(batch)
                    if due is not None and due[0] <= now:
                        journal += (batches, where, batch)
                        del batches[where]
                        changes.closed.append(close_batch(batch, due[0], due[1]))
                        closed_ends[batch.batch_id] = due[0] + window
                        batch = None
            key = event.key
            end = key.rfind("/") + 1
            identity = identity_in_folder(event, end)
            folder: Folder | None = None
            if identity is not None:  # (an event with a sequencer always has an identity)
                if event.bucket != bucket:
                    bucket = event.bucket
                    found = all_folders.get(bucket)
                    if found is None:
                        found = all_folders[bucket] = {}
                        journal += (all_folders, bucket, _MISSING)
                    folders = found
                    pair = written.get(bucket)
                    if pair is None:
                        pair = written[bucket] = ([], [])
                    written_keys, rewritten_keys = pair
                name = key[:end]
                folder = folders.get(name)
                if folder is None:
                    folder = folders[name] = ({}, {}, name)
                    journal += (folders, name, _MISSING)
                owner = folder[0].get(identity)
                if owner is not None:
                    expires = window_ends.get(owner) or closed_ends.get(owner)
                    if expires is None or expires > now:  # its batch is open, or in its window
                        duplicates += 1
                        continue
                    # Seen before, but its dedupe window has ended: it joins the batch below.
                sequencer = event.sequencer
                if sequencer is not None:
                    sequencers = folder[1]
                    highest = sequencers.get(key)
                    if highest is not None and compare_sequencers(sequencer, highest) < 0:
                        stale += 1
                        continue
                    if highest is None:
                        journal += (sequencers, key, _MISSING)
                    else:
                        journal += (sequencers, key, highest)
                        rewritten_keys.append(key)
                    sequencers[key] = sequencer
                    written_keys.append(key)
            if work is None:
                work = working[where] = WorkingBatch.start(batch, where, now, event)
            batch_id = work.batch_id
            created = event.kind == "created"
            if created:
                keys = members.get(batch_id)
                if keys is None:
                    keys = members[batch_id] = set()
                    journal += (members, batch_id, _MISSING)
                if key not in keys:
                    keys.add(key)
                    journal += (keys, key, _ADDED)
                    work.count += 1
            else:
                keys = members.get(batch_id)
                if keys is not None and key in keys:
                    keys.discard(key)
                    journal += (keys, key, _DISCARDED)
                    work.count -= 1
            work.touch(now, event.event_time, limits)
            if folder is not None and identity is not None:
                seen = folder[0]
                journal += (seen, identity, seen.get(identity, _MISSING))
                seen[identity] = batch_id
                applied = identities.get(batch_id)
                if applied is None:
                    applied = identities[batch_id] = []
                    journal += (identities, batch_id, _MISSING)
                applied += (folder[2], identity)  # the folder's own name: one string
                journal += (applied, None, _PAIR_APPENDED)
            accepted += 1
            if work.count >= limits.threshold_count:
                self._close_working(changes, working, where, work, now, TRIGGER_COUNT, journal)
                closed_ends[batch_id] = now + window
            elif created and limits.marker_patterns and limits.is_marker(key):
                self._close_working(changes, working, where, work, now, TRIGGER_MARKER, journal)
                closed_ends[batch_id] = now + window
        for where, work in working.items():
            batch = open_batch_of(where, work)
            journal += (batches, where, batches.get(where, _MISSING))
            self._put_batch(batch)
            changes.batches[where] = batch
        if accepted:
            changes.counters[ACCEPTED] += accepted
        if duplicates:
            changes.counters[DUPLICATE] += duplicates
        if stale:
            changes.counters[STALE] += stale
        changes.clock = clock
        return changes, {b: pair for b, pair in written.items() if pair[0]}

    def _close_working(
        self,
        changes: Changes,
        working: dict[Place, WorkingBatch],
        where: Place,
        work: WorkingBatch,
        at: datetime,
        trigger: str,
        journal: list[Any],
    ) -> None:
        del working[where]
        stored = self._batches.get(where)
        if stored is not None:  # the batch as stored before this call
            journal += (self._batches, where, stored)
            del self._batches[where]
        changes.closed.append(close_batch(open_batch_of(where, work), at, trigger))

    def _put_batch(self, batch: OpenBatch) -> None:
        where = (batch.bucket, batch.prefix)
        previous = self._batches.get(where)
        self._batches[where] = batch
        # A heap entry is a lower bound of its batch's due time: activity only moves a due time
        # later, and an entry that reaches the top is moved then. An earlier time needs an entry.
        if batch.due_at is not None and (
            previous is None
            or previous.batch_id != batch.batch_id
            or previous.due_at is None
            or batch.due_at < previous.due_at
        ):
            heapq.heappush(self._due, (batch.due_at, batch.bucket, batch.prefix, batch.batch_id))

    def _record_closed(self, closed: Sequence[Emission], rules: Rules) -> None:
        for emission in closed:
            self._members.pop(emission.batch_id, None)
            applied = self._identities.pop(emission.batch_id, None)
            if applied:
                # Its identities' window starts: one entry for the batch, none per identity.
                expires = emission.emitted_at + rules.dedupe_window
                self._window_ends[emission.batch_id] = expires
                self._closed_identities[emission.batch_id] = (emission.bucket, *applied)
                heapq.heappush(self._expiries, (expires, emission.batch_id))
            if emission.batch_id not in self._pending and emission.batch_id not in self._published:
                self._pending[emission.batch_id] = _Outboxed(emission)

    def _top(self) -> OpenBatch | None:
        """The open batch of the heap's top entry once that entry is exact (or None: empty)."""
        heap = self._due
        while heap:
            due_at, bucket, prefix, batch_id = heap[0]
            batch = self._batches.get((bucket, prefix))
            if batch is None or batch.batch_id != batch_id or batch.due_at is None:
                heapq.heappop(heap)  # closed, or no longer due at all
            elif batch.due_at > due_at:
                heapq.heapreplace(heap, (batch.due_at, bucket, prefix, batch_id))  # moved later
            elif batch.due_at < due_at:
                heapq.heappop(heap)  # superseded by the earlier entry pushed for it
            else:
                return batch
        return None

    # --- emitting ----------------------------------------------------------------------
    def close_due(self, now: datetime, rules: Rules, limit: int | None = None) -> list[Emission]:
        with self._lock:
            # Like the SQL stores: the batches whose stored due time has come, oldest first.
            due: list[OpenBatch] = []
            places: set[Place] = set()
            while limit is None or len(due) < limit:
                batch = self._top()
                if batch is None or batch.due_at is None or batch.due_at > now:
                    break
                heapq.heappop(self._due)
                if (batch.bucket, batch.prefix) not in places:
                    places.add((batch.bucket, batch.prefix))
                    due.append(batch)
            emissions = close_due(due, now, rules)
            for batch in rescheduled(due, emissions, rules):
                self._batches[(batch.bucket, batch.prefix)] = batch
                if batch.due_at is not None:  # its entry was taken off the heap above
                    heapq.heappush(
                        self._due, (batch.due_at, batch.bucket, batch.prefix, batch.batch_id)
                    )
            for emission in emissions:
                del self._batches[(emission.bucket, emission.prefix)]
            self._counters.update(emitted_counters(emissions))
            self._record_closed(emissions, rules)
            return emissions

    def enqueue(self, emissions: Sequence[Emission]) -> list[str]:
        with self._lock:
            added = [
                e
                for e in emissions
                if e.batch_id not in self._pending and e.batch_id not in self._published
            ]
            for emission in added:
                self._pending[emission.batch_id] = _Outboxed(emission)
            self._counters.update(emitted_counters(added))
            return [e.batch_id for e in added]

    def next_due(self) -> datetime | None:
        with self._lock:
            batch = self._top()
            return batch.due_at if batch is not None else None

    def claim_pending(self, now: datetime, lease: timedelta, limit: int = 100) -> list[Emission]:
        with self._lock:
            free = [
                item
                for item in self._pending.values()
                if item.claimed_until is None or item.claimed_until <= now
            ]
            free.sort(key=lambda item: emission_order(item.emission))
            for item in free[:limit]:
                item.claimed_until = now + lease
            return [item.emission for item in free[:limit]]

    def mark_published(self, batch_ids: Iterable[str], now: datetime) -> None:
        with self._lock:
            for batch_id in batch_ids:
                item = self._pending.pop(batch_id, None)
                if item is not None:
                    self._published[batch_id] = astuple_emission(item.emission)
                elif batch_id not in self._published:
                    raise KeyError(batch_id)

    def release(self, batch_ids: Iterable[str]) -> None:
        with self._lock:
            for batch_id in batch_ids:
                item = self._pending.get(batch_id)
                if item is not None:
                    item.claimed_until = None
                elif batch_id not in self._published:
                    raise KeyError(batch_id)

    # --- reading -----------------------------------------------------------------------
    def open_batches(self) -> list[OpenBatch]:
        with self._lock:
            return [self._batches[k] for k in sorted(self._batches)]

    def published(self) -> list[Emission]:
        with self._lock:
            done = [Emission(*row) for row in self._published.values()]
            return sorted(done, key=emission_order)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def pending(self, limit: int = 100) -> list[PendingBatch]:
        with self._lock:
            waiting = list(self._pending.values())
            waiting.sort(key=lambda item: emission_order(item.emission))
            return [
                PendingBatch(i.emission, i.attempts, i.last_error, i.last_attempt_at)
                for i in waiting[:limit]
            ]

    def record_failures(self, errors: Mapping[str, str], now: datetime) -> None:
        with self._lock:
            for batch_id, error in errors.items():
                item = self._pending.get(batch_id)
                if item is not None:
                    item.attempts += 1
                    item.last_error, item.last_attempt_at = error, now

    def add_counters(self, counts: Counter[str]) -> None:
        with self._lock:
            self._counters.update(counts)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counters.items()))

    def purge(self, now: datetime, window: timedelta) -> int:
        with self._lock:
            removed = 0
            heap = self._expiries
            all_folders = self._folders
            while heap and heap[0][0] <= now:
                _, batch_id = heapq.heappop(heap)
                del self._window_ends[batch_id]
                applied = self._closed_identities.pop(batch_id, ())
                if not applied:
                    continue
                bucket = applied[0]
                folders = all_folders.get(bucket, {})
                for name, identity in zip(applied[1::2], applied[2::2], strict=True):
                    folder = folders.get(name)
                    if folder is not None and folder[0].get(identity) == batch_id:
                        del folder[0][identity]  # (not if seen anew since, in a newer batch)
                        removed += 1
                        if not folder[0] and not folder[1]:
                            self._drop_folder(bucket, name)
            cutoff = now - window
            log = self._sequencer_log
            while log and log[0][0] <= cutoff:
                written, bucket, keys = log.popleft()
                folders = all_folders.get(bucket, {})
                rewritten_at = self._rewritten_at.get(bucket, {})
                for key in keys:
                    last = rewritten_at.get(key)
                    if last is not None and last != written:
                        continue  # written again since
                    name = _folder_of(key)
                    found = folders.get(name)
                    if found is None or found[1].pop(key, None) is None:
                        continue  # written once, by this entry, and purged already
                    removed += 1
                    if last is not None:
                        del rewritten_at[key]
                    if not found[0] and not found[1]:
                        self._drop_folder(bucket, name)
            return removed

    def _drop_folder(self, bucket: str, name: str) -> None:
        """Forget a folder that holds nothing any more (and its bucket, when it was the last)."""
        folders = self._folders[bucket]
        del folders[name]
        if not folders:
            del self._folders[bucket]
            self._rewritten_at.pop(bucket, None)

    def remembered(self) -> tuple[int, int]:
        """(dedupe identities, sequencers) the store holds: what purge bounds."""
        with self._lock:
            folders = [f for by_name in self._folders.values() for f in by_name.values()]
            return sum(len(f[0]) for f in folders), sum(len(f[1]) for f in folders)

    def close(self) -> None:
        """Nothing to release."""
