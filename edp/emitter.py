"""The emitter's use cases, wired from settings: route events, ingest them, close due batches."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from edp.core import Emission, RoutedEvent, Rules
from edp.counters import DROPPED_PREFIX
from edp.events import ObjectEvent, Parsed
from edp.rules_file import RuleSet, load_rules, rules_from_settings
from edp.scope import Scope
from edp.settings import Settings
from edp.store.base import BatchStore

logger = logging.getLogger(__name__)


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
        routed = []
        dropped: Counter[str] = Counter()
        for event in events:
            prefix, reason = self.scope.classify(event)
            if prefix is None:
                dropped[DROPPED_PREFIX + str(reason)] += 1
            else:
                if not self.settings.event_ids_reliable:
                    event = without_ids(event)
                routed.append(RoutedEvent(event, prefix, arrived or event.event_time))
        return routed, dropped

    def ingest(self, parsed: Sequence[Parsed], arrived: datetime | None) -> IngestOutcome:
        """Route and store the events of several parsed messages in one transaction."""
        events = [e for p in parsed for e in p.events]
        routed, dropped = self.route(events, arrived)
        for p in parsed:
            for reason, n in p.ignored.items():
                dropped[DROPPED_PREFIX + reason] += n
        result = self.store.ingest(routed, self.rules)
        if dropped:
            self.store.add_counters(dropped)
        outcome = IngestOutcome(accepted=result.counters.get("accepted", 0))
        outcome.emissions = result.emissions
        outcome.counters = result.counters + dropped
        outcome.earliest_due = result.earliest_due
        return outcome

    def ingest_isolated(
        self, parsed: Sequence[Parsed], arrived: datetime | None
    ) -> tuple[IngestOutcome, list[int]]:
        """Like :meth:`ingest` (one transaction), but when the store refuses the group, each
        message is stored on its own, so one message the store cannot take fails alone.

        Returns the outcome of what was stored and the indexes of the messages that were not.
        When none of them can be stored (the store is down), the first error is raised.
        """
        try:
            return self.ingest(parsed, arrived), []
        except Exception as group_error:
            if len(parsed) == 1:
                raise
            first_error: Exception = group_error
        total = IngestOutcome()
        failed: list[int] = []
        for index, one in enumerate(parsed):
            try:
                outcome = self.ingest([one], arrived)
            except Exception as err:
                failed.append(index)
                logger.warning("message %d of %d could not be stored: %s", index, len(parsed), err)
                continue
            total.add(outcome)
        if len(failed) == len(parsed):
            raise first_error
        return total, failed

    def close_due(self, now: datetime) -> list[Emission]:
        return self.store.close_due(now, self.rules)


def build_scope(settings: Settings, ruleset: RuleSet | None = None) -> Scope:
    return Scope.build(settings.buckets, settings.ignore_patterns, settings.prefix_depth, ruleset)


def build_rules(settings: Settings, ruleset: RuleSet | None = None) -> Rules:
    base = rules_from_settings(settings)
    return ruleset.apply_to(base) if ruleset is not None else base
