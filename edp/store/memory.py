"""The in-memory backend: the pure core with nothing around it (tests, and `memory://` for one-off runs)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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
from edp.store.base import BatchStore, apply_to_snapshot, counters_for, emitted_counters


@dataclass
class _Outboxed:
    emission: Emission
    published_at: datetime | None = None
    claimed_until: datetime | None = None


class MemoryStore(BatchStore):
    """All state in dictionaries; nothing survives the process."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.RLock()
        self._clock: datetime | None = None
        self._batches: dict[tuple[str, str], OpenBatch] = {}
        self._members: set[tuple[str, str]] = set()
        self._sequencers: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._seen: dict[str, tuple[str, datetime | None]] = {}  # identity -> (batch_id, expires)
        self._outbox: dict[str, _Outboxed] = {}
        self._counters: Counter[str] = Counter()

    def _apply(self, events: Sequence[RoutedEvent], rules: Rules) -> Changes:
        with self._lock:
            now = max(events[0].arrived, self._clock) if self._clock else events[0].arrived
            snapshot = Snapshot(
                clock=self._clock,
                batches=dict(self._batches),
                members=set(self._members),
                sequencers={k: v[0] for k, v in self._sequencers.items()},
                seen={i for i, (_, exp) in self._seen.items() if exp is None or exp > now},
                seen_expiry={
                    i: exp for i, (_, exp) in self._seen.items() if exp is not None and exp > now
                },
            )
            changes = apply_to_snapshot(snapshot, events, rules)
            closed_ids = {e.batch_id for e in changes.closed}
            for emission in changes.closed:
                self._batches.pop((emission.bucket, emission.prefix), None)
            self._batches.update(changes.batches)
            self._members |= {m for m in changes.members_added if m[0] not in closed_ids}
            self._members -= changes.members_removed
            for identity, batch_id in changes.seen.items():
                self._seen[identity] = (batch_id, None)
            clock = changes.clock or now
            for key, sequencer in changes.sequencers.items():
                self._sequencers[key] = (sequencer, clock)
            self._record_closed(changes.closed, rules)
            self._counters.update(counters_for(changes))
            self._clock = max(self._clock, clock) if self._clock else clock
            return changes

    def _record_closed(self, closed: Sequence[Emission], rules: Rules) -> None:
        closed_ids = {e.batch_id: e for e in closed}
        if not closed_ids:
            return
        self._members = {m for m in self._members if m[0] not in closed_ids}
        for identity, (batch_id, _) in list(self._seen.items()):
            if batch_id in closed_ids:
                expires = closed_ids[batch_id].emitted_at + rules.dedupe_window
                self._seen[identity] = (batch_id, expires)
        for emission in closed:
            self._outbox.setdefault(emission.batch_id, _Outboxed(emission))

    def close_due(self, now: datetime, rules: Rules, limit: int | None = None) -> list[Emission]:
        with self._lock:
            # Like the SQL stores: only batches whose stored due time has come are looked at, so
            # a threshold change reaches a batch at its next event or its old due time.
            overdue = [
                b for b in self._batches.values() if b.due_at is not None and b.due_at <= now
            ]
            emissions = close_due(overdue, now, rules)
            for batch in rescheduled(overdue, emissions, rules):
                self._batches[(batch.bucket, batch.prefix)] = batch
            if limit is not None:
                emissions = emissions[:limit]
            for emission in emissions:
                del self._batches[(emission.bucket, emission.prefix)]
            self._counters.update(emitted_counters(emissions))
            self._record_closed(emissions, rules)
            return emissions

    def enqueue(self, emissions: Sequence[Emission]) -> list[str]:
        with self._lock:
            added = [e for e in emissions if e.batch_id not in self._outbox]
            for emission in added:
                self._outbox[emission.batch_id] = _Outboxed(emission)
            self._counters.update(emitted_counters(added))
            return [e.batch_id for e in added]

    def next_due(self) -> datetime | None:
        with self._lock:
            dues = [b.due_at for b in self._batches.values() if b.due_at is not None]
            return min(dues) if dues else None

    def claim_pending(self, now: datetime, lease: timedelta, limit: int = 100) -> list[Emission]:
        with self._lock:
            free = [
                item
                for item in self._outbox.values()
                if item.published_at is None
                and (item.claimed_until is None or item.claimed_until <= now)
            ]
            free.sort(key=lambda item: emission_order(item.emission))
            for item in free[:limit]:
                item.claimed_until = now + lease
            return [item.emission for item in free[:limit]]

    def mark_published(self, batch_ids: Iterable[str], now: datetime) -> None:
        with self._lock:
            for batch_id in batch_ids:
                item = self._outbox[batch_id]
                item.published_at, item.claimed_until = now, None

    def release(self, batch_ids: Iterable[str]) -> None:
        with self._lock:
            for batch_id in batch_ids:
                self._outbox[batch_id].claimed_until = None

    def open_batches(self) -> list[OpenBatch]:
        with self._lock:
            return [self._batches[k] for k in sorted(self._batches)]

    def published(self) -> list[Emission]:
        with self._lock:
            done = [i.emission for i in self._outbox.values() if i.published_at is not None]
            return sorted(done, key=emission_order)

    def pending_count(self) -> int:
        with self._lock:
            return sum(1 for i in self._outbox.values() if i.published_at is None)

    def add_counters(self, counts: Counter[str]) -> None:
        with self._lock:
            self._counters.update(counts)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counters.items()))

    def purge(self, now: datetime, window: timedelta) -> int:
        with self._lock:
            expired = [i for i, (_, exp) in self._seen.items() if exp is not None and exp <= now]
            old = [k for k, (_, at) in self._sequencers.items() if at <= now - window]
            for identity in expired:
                del self._seen[identity]
            for key in old:
                del self._sequencers[key]
            return len(expired) + len(old)

    def close(self) -> None:
        """Nothing to release."""
