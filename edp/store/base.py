"""The batch store interface: one small abstract class that every backend implements.

The rules live in :mod:`edp.core`; a backend only loads the state a group of events can touch,
writes the changes back in one transaction, and keeps closed batches until they are published
(the outbox), so neither a crash nor a publish failure loses a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edp.core import Changes, Emission, OpenBatch, RoutedEvent, Rules, Snapshot, apply_events
from edp.counters import emitted
from edp.events import IDENTITY_LENGTH, earlier_forms

# SQLite's schema (PostgreSQL's is pg_schema.SCHEMA_VERSION). 2: dedupe identities carry a folder
# tag and batch ids are time-ordered (make_batch_id); 3: identities carry the sequencer's first
# digits after the tag (ObjectEvent.identity). A store upgraded from an earlier schema also looks
# up its identities' earlier forms until those expire.
SCHEMA_VERSION = 3
# A meta row, present while identities of an earlier form may still be stored.
LEGACY_IDENTITIES = "legacy_identities"
# Whether any identity of an earlier form is left (purge asks, while the meta row is there).
LEGACY_LEFT = f"SELECT 1 FROM seen WHERE length(identity) <> {IDENTITY_LENGTH} LIMIT 1"


@dataclass
class IngestResult:
    """What one ingest call did."""

    emissions: list[Emission] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    # The earliest due time among the batches the call left open (None: it left none due), so a
    # caller knows whether the store's next due time may have moved earlier.
    earliest_due: datetime | None = None


@dataclass(frozen=True)
class PendingBatch:
    """A closed batch waiting to be published, with what happened when sending it was tried."""

    emission: Emission
    attempts: int = 0  # publish attempts that failed so far
    last_error: str | None = None
    last_attempt_at: datetime | None = None


class BatchStore(ABC):
    """Persistent batch state. Every method is one transaction."""

    url: str = ""
    # True when one process is the store's only user (`edp run` on SQLite or in memory): then
    # every claim it finds at start-up is a dead run's, taken back at once instead of waiting.
    exclusive: bool = False

    # --- what a backend implements -------------------------------------------------------
    @abstractmethod
    def _apply(self, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]) -> Changes:
        """Within one transaction: load a Snapshot for ``events``, apply_events (adding the
        ``dropped`` counters to the changes, see :func:`apply_to_snapshot`), save, return."""

    @abstractmethod
    def close_due(self, now: datetime, rules: Rules, limit: int | None = None) -> list[Emission]:
        """Close every batch due at or before ``now`` (into the outbox) and return them."""

    @abstractmethod
    def next_due(self) -> datetime | None:
        """The earliest due time of any open batch."""

    @abstractmethod
    def claim_pending(self, now: datetime, lease: timedelta, limit: int = 100) -> list[Emission]:
        """Closed, unpublished batches not claimed by someone else; claim them until now+lease."""

    @abstractmethod
    def mark_published(self, batch_ids: Iterable[str], now: datetime) -> None:
        """Record that these batches reached the bus (they are never sent again)."""

    @abstractmethod
    def release(self, batch_ids: Iterable[str]) -> None:
        """Give back claims on batches that could not be published, so they are retried soon."""

    @abstractmethod
    def enqueue(self, emissions: Sequence[Emission]) -> list[str]:
        """Put closed batches made outside the rules (`edp backfill`) into the outbox, unless a
        batch with the same id is already there (pending or published): the outbox is the
        journal that makes a re-run resume. Returns the ids that were added."""

    @abstractmethod
    def open_batches(self) -> list[OpenBatch]:
        """Every open batch, ordered by bucket and prefix."""

    @abstractmethod
    def published(self) -> list[Emission]:
        """Every published batch, in (emitted time, bucket, prefix) order."""

    @abstractmethod
    def pending_count(self) -> int:
        """How many closed batches wait to be published."""

    @abstractmethod
    def pending(self, limit: int = 100) -> list[PendingBatch]:
        """Closed batches waiting to be published, oldest first, with their failed attempts."""

    @abstractmethod
    def record_failures(self, errors: Mapping[str, str], now: datetime) -> None:
        """Count one failed publish attempt per batch id, keeping its error (for `edp status`)."""

    @abstractmethod
    def add_counters(self, counts: Counter[str]) -> None:
        """Add to the persistent counters."""

    @abstractmethod
    def counters(self) -> dict[str, int]:
        """The persistent counters (events accepted, dropped by reason, emitted by trigger...)."""

    @abstractmethod
    def purge(self, now: datetime, window: timedelta) -> int:
        """Forget dedupe identities past their window, and sequencers not seen for ``window``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    # --- shared behaviour ---------------------------------------------------------------
    def schema_version(self) -> int:
        """The schema version the stored data is at (backends with a schema read it from there)."""
        return SCHEMA_VERSION

    def ingest(
        self,
        events: Sequence[RoutedEvent],
        rules: Rules,
        dropped: Counter[str] | None = None,
    ) -> IngestResult:
        """Apply events (in order) in one transaction; closed batches go to the outbox.

        ``dropped``: the counters of the events dropped before routing (``dropped:<reason>``),
        written in the same transaction as the events, so the counters never disagree with them.
        """
        if not events:
            if dropped:
                self.add_counters(dropped)
            return IngestResult(counters=Counter(dropped or {}))
        changes = self._apply(events, rules, Counter(dropped or {}))
        dues = [b.due_at for b in changes.batches.values() if b.due_at is not None]
        return IngestResult(
            emissions=list(changes.closed),
            counters=changes.counters,
            earliest_due=min(dues) if dues else None,
        )

    def transaction(self) -> AbstractContextManager[object]:
        """Run several calls as one transaction (``with store.transaction(): ...``).

        Backends that cannot nest their calls in one transaction keep one transaction per call.
        """
        return nullcontext()

    def __enter__(self) -> BatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def emitted_counters(emissions: Iterable[Emission]) -> Counter[str]:
    """One ``emitted:<trigger>`` increment per closed batch."""
    return Counter(emitted(emission.trigger) for emission in emissions)


def counters_for(changes: Changes) -> Counter[str]:
    """The counter increments a Changes implies, emissions by trigger included."""
    return changes.counters + emitted_counters(changes.closed)


def apply_to_snapshot(
    snapshot: Snapshot, events: Sequence[RoutedEvent], rules: Rules, dropped: Counter[str]
) -> Changes:
    """The one call every backend makes into the core (kept here so they cannot drift); the
    counters of the events dropped before routing join the changes, saved with them."""
    changes = apply_events(snapshot, events, rules)
    changes.counters.update(dropped)
    return changes


def identities_to_look_up(events: Sequence[RoutedEvent], legacy: bool) -> dict[str, str]:
    """The stored forms to look up for these events' identities, each mapped to the identity it
    stands for: the identity itself and, with ``legacy`` (a store that may still hold identities
    written by an earlier edp), its earlier forms too."""
    found: dict[str, str] = {}
    for routed in events:
        identity = routed.event.identity()
        if identity is not None:
            found[identity] = identity
            if legacy:
                for form in earlier_forms(identity):
                    found[form] = identity
    return found
