"""The in-memory backend: the pure core with nothing around it (tests, and `memory://` for one-off runs).

Like the SQL backends, an ingest loads only what its events can touch (their batches, members,
sequencers and identities) into a Snapshot, applies the rules to that copy, and writes the changes
back only once the rules have run: a failed ingest leaves the store as it was, and the cost of a
chunk does not grow with the state the store holds. Members and identities are indexed by batch,
so closing a batch touches only its own; due times and dedupe expiries sit in heaps and sequencers
in last-update order, so a sweep or a purge looks only at what is due.
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
    Changes,
    Emission,
    OpenBatch,
    RoutedEvent,
    Rules,
    Snapshot,
    close_due,
    emission_order,
    rescheduled,
)
from edp.events import IDENTITY_TAG
from edp.store.base import (
    BatchStore,
    PendingBatch,
    apply_to_snapshot,
    counters_for,
    emitted_counters,
)

Place = tuple[str, str]  # (bucket, prefix)


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
        # The big maps hold only strings and datetimes (no tuples, no lists), so Python's cyclic
        # garbage collector leaves them untracked: its full passes would otherwise walk every
        # entry, and a store of a million events spent a third of its time there.
        # They are also touched as little as possible per event (one read and one write each
        # for an identity and a sequencer), and grouped by folder: in one map of a million
        # entries every access is a cache miss (a lookup cost 4.7x more at 1M entries than at
        # 10k), while the few folders being written and their small maps stay in the cache.
        # bucket -> folder -> key -> highest sequencer
        self._sequencers: dict[str, dict[str, dict[str, str]]] = {}
        # bucket -> key -> the clock of its last write, only for keys written more than once: a
        # key written once was written by its only entry in the log below.
        self._rewritten_at: dict[str, dict[str, datetime]] = {}
        # (clock, bucket, keys) per write, oldest first (the clock never goes backwards): purge
        # reads from the left until the window, instead of scanning every key.
        self._sequencer_log: deque[tuple[datetime, str, tuple[str, ...]]] = deque()
        # folder tag (an identity's first IDENTITY_TAG characters) -> identity -> the batch it
        # was applied to, open or closed; the identity is inside the dedupe window while that
        # batch is open or its window (below) has not ended.
        self._seen_by: dict[str, dict[str, str]] = {}
        self._window_ends: dict[str, datetime] = {}  # closed batch id -> end of its window
        self._identities: dict[str, list[str]] = {}  # open batch id -> identities applied to it
        # (window end, batch id) per closed batch, and the identities it closed: what purge drops.
        self._expiries: list[tuple[datetime, str]] = []
        self._closed_identities: dict[str, tuple[str, ...]] = {}
        self._pending: dict[str, _Outboxed] = {}  # the outbox's unpublished part
        # The published part, as rows of plain values (untracked by the garbage collector too).
        self._published: dict[str, tuple[Any, ...]] = {}
        self._counters: Counter[str] = Counter()

    def transaction(self) -> AbstractContextManager[object]:
        return self._lock  # calls nest under the lock; each one writes only when it succeeds

    # --- ingest ------------------------------------------------------------------------
    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        with self._lock:
            snapshot = self._load(events)
            # The rules work on the snapshot (copies): if they fail, nothing was written.
            changes = apply_to_snapshot(snapshot, events, rules, dropped)
            self._save(changes, rules)
            return changes

    def _load(self, events: Sequence[RoutedEvent]) -> Snapshot:
        clock = self._clock
        now = events[0].arrived
        if clock is not None and clock > now:
            now = clock
        snapshot = Snapshot(clock=clock)
        batches, members = snapshot.batches, snapshot.members
        sequencers, seen, seen_expiry = snapshot.sequencers, snapshot.seen, snapshot.seen_expiry
        stored_batches, stored_members = self._batches, self._members
        stored_sequencers, seen_by, window_ends = self._sequencers, self._seen_by, self._window_ends
        bucket: str | None = None
        bucket_sequencers: dict[str, dict[str, str]] = {}
        no_keys: dict[str, str] = {}
        for routed in events:
            event = routed.event
            key = event.key
            where = (event.bucket, routed.prefix)
            batch = batches.get(where)
            if batch is None:
                batch = stored_batches.get(where)
                if batch is not None:
                    batches[where] = batch
            if batch is not None:
                keys = stored_members.get(batch.batch_id)
                if keys is not None and key in keys:
                    members.add((batch.batch_id, key))
            if event.sequencer is not None:
                if event.bucket != bucket:
                    bucket = event.bucket
                    bucket_sequencers = stored_sequencers.get(bucket) or {}
                found = bucket_sequencers.get(key[: key.rfind("/") + 1], no_keys).get(key)
                if found is not None:
                    sequencers[(bucket, key)] = found
            identity = event.identity()
            if identity is not None:
                owner = seen_by.get(identity[:IDENTITY_TAG], no_keys).get(identity)
                if owner is not None:
                    expires = window_ends.get(owner)
                    if expires is None:  # its batch is open
                        seen.add(identity)
                    elif expires > now:
                        seen.add(identity)
                        seen_expiry[identity] = expires
        return snapshot

    def _save(self, changes: Changes, rules: Rules) -> None:
        closed_ids = {e.batch_id for e in changes.closed}
        for emission in changes.closed:
            where = (emission.bucket, emission.prefix)
            current = self._batches.get(where)
            if current is not None and current.batch_id == emission.batch_id:
                del self._batches[where]
        for batch in changes.batches.values():
            self._put_batch(batch)
        stored_members = self._members
        for batch_id, key in changes.members_added:
            if batch_id not in closed_ids:
                keys = stored_members.get(batch_id)
                if keys is None:
                    keys = stored_members[batch_id] = set()
                keys.add(key)
        for batch_id, key in changes.members_removed:
            keys = stored_members.get(batch_id)
            if keys is not None:
                keys.discard(key)
        seen_by, identities = self._seen_by, self._identities
        for identity, batch_id in changes.seen.items():
            tag = identity[:IDENTITY_TAG]
            group = seen_by.get(tag)
            if group is None:
                group = seen_by[tag] = {}
            group[identity] = batch_id  # if it was seen before, its window had ended
            applied = identities.get(batch_id)
            if applied is None:
                applied = identities[batch_id] = []
            applied.append(identity)
        clock = changes.clock or self._clock
        assert clock is not None  # ingest never runs without events, which set the clock
        if changes.sequencers:
            self._save_sequencers(changes.sequencers, clock)
        self._record_closed(changes.closed, rules)
        self._counters.update(counters_for(changes))
        if self._clock is None or clock > self._clock:
            self._clock = clock

    def _save_sequencers(self, written: Mapping[tuple[str, str], str], clock: datetime) -> None:
        names: dict[str, list[str]] = {}
        bucket: str | None = None
        folders: dict[str, dict[str, str]] = {}
        rewritten_at: dict[str, datetime] = {}
        keys: list[str] = []
        for (where, key), sequencer in written.items():
            if where != bucket:
                bucket = where
                if bucket not in self._sequencers:
                    self._sequencers[bucket], self._rewritten_at[bucket] = {}, {}
                folders, rewritten_at = self._sequencers[bucket], self._rewritten_at[bucket]
                keys = names.setdefault(bucket, [])
            folder = key[: key.rfind("/") + 1]
            sequencers = folders.get(folder)
            if sequencers is None:
                sequencers = folders[folder] = {}
            size = len(sequencers)
            sequencers[key] = sequencer
            if len(sequencers) == size:  # the key was there: written again
                rewritten_at[key] = clock
            keys.append(key)
        for bucket, bucket_keys in names.items():
            self._sequencer_log.append((clock, bucket, tuple(bucket_keys)))

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
                self._closed_identities[emission.batch_id] = tuple(applied)
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
            seen_by = self._seen_by
            while heap and heap[0][0] <= now:
                _, batch_id = heapq.heappop(heap)
                del self._window_ends[batch_id]
                for identity in self._closed_identities.pop(batch_id, ()):
                    tag = identity[:IDENTITY_TAG]
                    group = seen_by[tag]
                    if group.get(identity) == batch_id:  # not seen anew since
                        del group[identity]
                        removed += 1
                        if not group:
                            del seen_by[tag]
            cutoff = now - window
            log = self._sequencer_log
            while log and log[0][0] <= cutoff:
                written, bucket, keys = log.popleft()
                folders, rewritten_at = self._sequencers[bucket], self._rewritten_at[bucket]
                for key in keys:
                    last = rewritten_at.get(key)
                    if last is not None and last != written:
                        continue  # written again since
                    folder = key[: key.rfind("/") + 1]
                    sequencers = folders.get(folder)
                    if sequencers is None or sequencers.pop(key, None) is None:
                        continue  # written once, by this entry, and purged already
                    removed += 1
                    if last is not None:
                        del rewritten_at[key]
                    if not sequencers:
                        del folders[folder]
            return removed

    def remembered(self) -> tuple[int, int]:
        """(dedupe identities, sequencers) the store holds: what purge bounds."""
        with self._lock:
            identities = sum(len(group) for group in self._seen_by.values())
            sequencers = sum(
                len(keys) for folders in self._sequencers.values() for keys in folders.values()
            )
            return identities, sequencers

    def close(self) -> None:
        """Nothing to release."""
