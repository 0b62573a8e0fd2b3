"""The emitter's use cases, wired from settings: the one front door of every runtime.

* :meth:`Emitter.accept`: raw messages -> parsed, validated, routed and stored, each message on its
  own when the store refuses the group; returns what was stored and the rejects with a one-line
  reason each (the Lambda handler, `edp run`'s poller and `edp simulate` all call it).
* :meth:`Emitter.sweep`: close due batches -> publish the outbox (each chunk marked published as
  the bus accepts it, within a deadline) -> purge expired dedupe state.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from edp import counters
from edp.clock import Clock
from edp.core import Emission, RoutedEvent, Rules, emission_order
from edp.errors import BadEventError
from edp.events import ObjectEvent, Parsed, parse_message
from edp.publisher import CLAIM_LEASE, CLAIM_LIMIT, Publisher, PublishReport, publish_pending
from edp.rules_file import RuleSet, load_rules, rules_from_settings
from edp.scope import Scope
from edp.settings import Settings
from edp.store.base import BatchStore

logger = logging.getLogger(__name__)
K = TypeVar("K")  # what names a message for its caller: an SQS message id, a line number...


def _never() -> bool:
    return False


@dataclass
class IngestOutcome:
    accepted: int = 0
    emissions: list[Emission] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    earliest_due: datetime | None = None  # of the batches the ingest left open

    def add(self, other: IngestOutcome) -> None:
        self.accepted += other.accepted
        self.emissions.extend(other.emissions)
        self.counters.update(other.counters)
        if other.earliest_due is not None and (
            self.earliest_due is None or other.earliest_due < self.earliest_due
        ):
            self.earliest_due = other.earliest_due


@dataclass(frozen=True)
class Reject(Generic[K]):
    """A message that was not stored, and why (one line)."""

    key: K
    reason: str
    unstored: bool = False  # False: not an event we understand; True: the store refused it


@dataclass
class Acceptance(Generic[K]):
    """What :meth:`Emitter.accept` did with a group of messages."""

    outcome: IngestOutcome
    stored: list[K] = field(default_factory=list)  # the keys of the messages stored, in order
    parsed: list[Parsed] = field(default_factory=list)  # those messages, parsed (same order)
    rejects: list[Reject[K]] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Events in the stored messages (before dedupe)."""
        return sum(len(p.events) for p in self.parsed)


@dataclass
class SweepReport:
    """What :meth:`Emitter.sweep` did."""

    closed: list[Emission]
    publish: PublishReport
    purged: int | None = None  # None: no purge this time

    @property
    def published(self) -> int:
        return len(self.publish.published)

    @property
    def failed(self) -> int:
        return len(self.publish.failed)


@dataclass(frozen=True)
class Backlog:
    """What waits: open batches (the oldest's first activity) and closed ones not yet sent."""

    open: int
    oldest_activity: datetime | None
    pending: int


def without_ids(event: ObjectEvent) -> ObjectEvent:
    """The event with nothing that identifies the write (``EDP_EVENT_IDS_RELIABLE=false``): its
    identity is then None, so it is never a duplicate, and without a sequencer never stale."""
    return replace(event, version_id=None, sequencer=None, event_id=None)


class Emitter:
    """Scope + rules + store: what every runtime (Lambda, `edp run`, `edp simulate`) calls."""

    def __init__(
        self,
        settings: Settings,
        store: BatchStore,
        *,
        ruleset: RuleSet | None = None,
        s3_client: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        if ruleset is None and settings.rules:
            # Read and validated here, at start-up: a bad rules file stops the program at once.
            ruleset = load_rules(settings.rules, settings, s3_client)
        self.ruleset = ruleset
        self.scope = build_scope(settings, ruleset)
        self.rules = build_rules(settings, ruleset)

    def rule_name(self, prefix: str) -> str | None:
        """``detail.rule`` for a batch of ``prefix``: None when no rules file is in force."""
        return self.ruleset.name_for(prefix) if self.ruleset is not None else None

    def route(
        self, events: Iterable[ObjectEvent], arrived: datetime | None
    ) -> tuple[list[RoutedEvent], Counter[str]]:
        """In-scope events with their prefix; ``arrived=None`` uses each event's own time."""
        routed: list[RoutedEvent] = []
        dropped: Counter[str] = Counter()
        prefix_for = self.scope.folder_router()
        reliable = self.settings.event_ids_reliable
        append = routed.append
        new = tuple.__new__  # RoutedEvent(...) without its Python-level __new__: once per event
        for event in events:
            prefix, reason = prefix_for(event.bucket, event.key)
            if prefix is None:
                dropped[counters.dropped(str(reason))] += 1
            else:
                if not reliable:
                    event = without_ids(event)
                append(new(RoutedEvent, (event, prefix, arrived or event.event_time)))
        return routed, dropped

    # --- accepting messages ---------------------------------------------------------------
    def parse(self, raw: Any) -> Parsed:
        """One message (JSON text or decoded JSON) -> its events; BadEventError (one line) if
        it is not an event we understand."""
        return parse_message(raw, eventbridge_keys_encoded=self.settings.eventbridge_keys_encoded)

    def accept(self, messages: Iterable[tuple[K, Any]], arrived: datetime | None) -> Acceptance[K]:
        """Parse, validate, route and store ``(key, raw message)`` pairs; the good ones in one
        transaction, or each on its own when the store refuses the group (:meth:`ingest_isolated`).

        A bad message or one the store refuses comes back as a :class:`Reject`; the others are
        stored. Raises when the store takes none of them (it is down): nothing was stored.
        """
        good: list[tuple[K, Parsed]] = []
        rejects: list[Reject[K]] = []
        for key, raw in messages:
            try:
                good.append((key, self.parse(raw)))
            except BadEventError as err:
                rejects.append(Reject(key, str(err)))
        return self.accept_parsed(good, arrived, rejects)

    def accept_parsed(
        self,
        messages: Sequence[tuple[K, Parsed]],
        arrived: datetime | None,
        rejects: Sequence[Reject[K]] = (),
    ) -> Acceptance[K]:
        """:meth:`accept` for messages already parsed with :meth:`parse`."""
        acceptance: Acceptance[K] = Acceptance(IngestOutcome(), rejects=list(rejects))
        if not messages:
            return acceptance
        outcome, unstored = self.ingest_isolated([p for _, p in messages], arrived)
        acceptance.outcome = outcome
        for index, (key, one) in enumerate(messages):
            if index in unstored:
                acceptance.rejects.append(Reject(key, unstored[index], unstored=True))
            else:
                acceptance.stored.append(key)
                acceptance.parsed.append(one)
        return acceptance

    def ingest(self, parsed: Sequence[Parsed], arrived: datetime | None) -> IngestOutcome:
        """Route and store the events of several parsed messages in one transaction (the
        counters of the events dropped on the way included)."""
        events: list[ObjectEvent] = []
        ignored: list[Counter[str]] = []
        for p in parsed:
            events.extend(p.events)
            if p.ignored:
                ignored.append(p.ignored)
        routed, dropped = self.route(events, arrived)
        for counts in ignored:
            for reason, n in counts.items():
                dropped[counters.dropped(reason)] += n
        result = self.store.ingest(routed, self.rules, dropped)
        outcome = IngestOutcome(accepted=result.counters.get(counters.ACCEPTED, 0))
        outcome.emissions = result.emissions
        outcome.counters = result.counters
        outcome.earliest_due = result.earliest_due
        return outcome

    def ingest_isolated(
        self, parsed: Sequence[Parsed], arrived: datetime | None
    ) -> tuple[IngestOutcome, dict[int, str]]:
        """Like :meth:`ingest` (one transaction), but when the store refuses the group, each
        message is stored on its own, so one message the store cannot take fails alone.

        Returns the outcome of what was stored and the messages that were not (index -> why).
        When none of them can be stored (the store is down), the first error is raised.
        """
        try:
            return self.ingest(parsed, arrived), {}
        except Exception as group_error:
            if len(parsed) == 1:
                raise
            first_error: Exception = group_error
        total = IngestOutcome()
        failed: dict[int, str] = {}
        for index, one in enumerate(parsed):
            try:
                outcome = self.ingest([one], arrived)
            except Exception as err:
                failed[index] = f"not stored: {err}"
                logger.warning("message %d of %d could not be stored: %s", index, len(parsed), err)
                continue
            total.add(outcome)
        if len(failed) == len(parsed):
            raise first_error
        return total, failed

    # --- sweeping ---------------------------------------------------------------------------
    def close_due(self, now: datetime) -> list[Emission]:
        return self.store.close_due(now, self.rules)

    def publish(
        self,
        publisher: Publisher,
        clock: Clock,
        *,
        deadline: datetime | None = None,
        stop: Callable[[], bool] = _never,
        max_attempts: int | None = None,
    ) -> PublishReport:
        """Publish the outbox until it is empty, ``deadline`` comes or ``stop()`` (each chunk is
        marked published as the bus accepts it; see :func:`edp.publisher.publish_pending`).
        ``max_attempts`` overrides the publisher's retries for this call."""
        if max_attempts is None:
            return publish_pending(self.store, publisher, clock, deadline=deadline, stop=stop)
        attempts, publisher.max_attempts = publisher.max_attempts, max_attempts
        try:
            return publish_pending(self.store, publisher, clock, deadline=deadline, stop=stop)
        finally:
            publisher.max_attempts = attempts

    def sweep(
        self,
        publisher: Publisher,
        clock: Clock,
        *,
        budget: timedelta | None = None,
        deadline: datetime | None = None,
        stop: Callable[[], bool] = _never,
        max_attempts: int | None = None,
        purge: bool = True,
    ) -> SweepReport:
        """Close every due batch, publish the outbox (for at most ``budget``, never past
        ``deadline``), then forget dedupe state past its window when ``purge``."""
        now = clock()
        if budget is not None:
            deadline = now + budget if deadline is None else min(deadline, now + budget)
        closed = self.close_due(now)
        report = self.publish(
            publisher, clock, deadline=deadline, stop=stop, max_attempts=max_attempts
        )
        purged = self.purge(now) if purge else None
        return SweepReport(closed, report, purged)

    def purge(self, now: datetime) -> int:
        """Forget dedupe identities and sequencers past the dedupe window at ``now``."""
        return self.store.purge(now, self.rules.dedupe_window)

    def next_due(self) -> datetime | None:
        """When the next open batch falls due (None: no batch is open)."""
        return self.store.next_due()

    def backlog(self) -> Backlog:
        batches = self.store.open_batches()
        oldest = min((b.first_activity for b in batches), default=None)
        return Backlog(len(batches), oldest, self.store.pending_count())

    def reclaim_abandoned(self, now: datetime) -> int:
        """Release claims left by a previous run that died mid-publish (exclusive stores only).

        A claim is a lease: on a shared store another emitter's claim must be respected until it
        expires. When this process is the store's only user, every claim is a dead process's, so
        taking them back now re-publishes those batches (same batch_id) without waiting.
        """
        horizon = now + CLAIM_LEASE  # every lease taken before now has expired by then
        # Claim everything first (each claim takes rows the previous ones did not), then give it
        # all back: releasing as it goes would hand the same rows to the next claim, forever.
        taken: list[str] = []
        while True:
            claimed = self.store.claim_pending(horizon, CLAIM_LEASE, limit=CLAIM_LIMIT * 5)
            taken.extend(e.batch_id for e in claimed)
            if len(claimed) < CLAIM_LIMIT * 5:
                break
        self.store.release(taken)
        return len(taken)

    # --- `edp simulate`: printing is publishing ---------------------------------------------
    def replay(
        self, parsed: Sequence[Parsed], until: datetime | None
    ) -> tuple[IngestOutcome, list[Emission]]:
        """`edp simulate`'s step, in one store transaction: store ``parsed`` at their own event
        times, close what falls due by ``until``, and record those batches as published at their
        emitted time (printing is publishing there; the outbox records it, as `edp status`
        shows). Returns the ingest's outcome and the batches to print, in emission order."""
        with self.store.transaction():
            outcome = self.ingest(parsed, arrived=None) if parsed else IngestOutcome()
            emissions = list(outcome.emissions)
            if until is not None:
                emissions.extend(self.close_due(until))
            ordered = sorted(emissions, key=emission_order)
            by_time: dict[datetime, list[str]] = {}
            for emission in ordered:
                by_time.setdefault(emission.emitted_at, []).append(emission.batch_id)
            for moment, batch_ids in by_time.items():
                self.store.mark_published(batch_ids, moment)
        return outcome, ordered


def build_scope(settings: Settings, ruleset: RuleSet | None = None) -> Scope:
    return Scope.build(settings.buckets, settings.ignore_patterns, settings.prefix_depth, ruleset)


def build_rules(settings: Settings, ruleset: RuleSet | None = None) -> Rules:
    base = rules_from_settings(settings)
    return ruleset.apply_to(base) if ruleset is not None else base
