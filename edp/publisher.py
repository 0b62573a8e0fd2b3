"""Publishing package-objects-ready events: EventBridge PutEvents in chunks of 10, then SNS."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from edp.clock import Clock, rfc3339, utc_now, whole_seconds
from edp.core import Emission
from edp.store.base import BatchStore

PUT_EVENTS_MAX_ENTRIES = 10  # PutEvents API limit per call
SOURCE = "com.quiltdata.edp"  # Quilt EDP's source, so existing rules keep matching
DETAIL_TYPE = "package-objects-ready"
DETAIL_VERSION = "0.1"
MAX_ATTEMPTS = 5
FIRST_BACKOFF = 0.2  # seconds; doubles on every retry
CLAIM_LEASE = timedelta(minutes=2)  # another emitter may re-send a batch claimed longer ago

logger = logging.getLogger(__name__)


def detail_of(emission: Emission, rule: str | None = None) -> dict[str, Any]:
    """The event's detail: Quilt's three fields first, then ours; ``rule`` when a rules file is
    in force (the name of the rule the batch's prefix matches, or "default")."""
    detail = {
        "version": DETAIL_VERSION,
        "bucket": emission.bucket,
        "prefix": emission.prefix,
        "count": emission.count,
        "trigger": emission.trigger,
        "batch_id": emission.batch_id,
        "first_event_time": rfc3339(emission.first_event_time),
        "last_event_time": rfc3339(emission.last_event_time),
    }
    if rule is not None:
        detail["rule"] = rule
    return detail


def put_events_entry(emission: Emission, event_bus: str, rule: str | None = None) -> dict[str, Any]:
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Resources": [f"arn:aws:s3:::{emission.bucket}"],
        "Detail": json.dumps(detail_of(emission, rule), ensure_ascii=False),
        "EventBusName": event_bus,
        "Time": emission.emitted_at,
    }


def eventbridge_event(
    emission: Emission,
    *,
    account: str = "000000000000",
    region: str = "us-east-1",
    rule: str | None = None,
) -> dict[str, Any]:
    """The whole event as EventBridge delivers it (what `edp simulate` prints and SNS carries)."""
    return {
        "version": "0",
        "id": emission.batch_id,
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": whole_seconds(emission.emitted_at),
        "region": region,
        "resources": [f"arn:aws:s3:::{emission.bucket}"],
        "detail": detail_of(emission, rule),
    }


@dataclass
class PublishReport:
    published: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    sns_failures: int = 0


class Publisher:
    """Sends emissions to the bus (and the topic); retries failed entries with backoff."""

    def __init__(
        self,
        events_client: Callable[[], Any],
        event_bus: str,
        *,
        sns_client: Callable[[], Any] | None = None,
        topic_arn: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
        rule_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._events_factory = events_client
        self._sns_factory = sns_client
        self._events: Any = None
        self._sns: Any = None
        self.event_bus = event_bus
        self.topic_arn = topic_arn
        self.sleep = sleep
        self.max_attempts = max_attempts
        # detail.rule of a batch, from its prefix (Emitter.rule_name); None: no rules file.
        self.rule_of = rule_of

    def rule_for(self, emission: Emission) -> str | None:
        return self.rule_of(emission.prefix) if self.rule_of is not None else None

    def _events_client(self) -> Any:
        if self._events is None:
            self._events = self._events_factory()
        return self._events

    def publish(self, emissions: Sequence[Emission]) -> PublishReport:
        report = PublishReport()
        for start in range(0, len(emissions), PUT_EVENTS_MAX_ENTRIES):
            chunk = list(emissions[start : start + PUT_EVENTS_MAX_ENTRIES])
            done, failed = self._put_chunk(chunk)
            report.published.extend(e.batch_id for e in done)
            report.failed.extend(e.batch_id for e in failed)
            if self.topic_arn and done:
                report.sns_failures += self._notify(done)
        return report

    def _put_chunk(self, chunk: list[Emission]) -> tuple[list[Emission], list[Emission]]:
        done: list[Emission] = []
        todo = chunk
        delay = FIRST_BACKOFF
        for attempt in range(1, self.max_attempts + 1):
            entries = [put_events_entry(e, self.event_bus, self.rule_for(e)) for e in todo]
            try:
                response = self._events_client().put_events(Entries=entries)
            except Exception as err:  # network, throttling, permissions: retried, never dropped
                logger.warning("PutEvents failed (attempt %d): %s", attempt, err)
                results: list[dict[str, Any]] = [{"ErrorCode": type(err).__name__}] * len(todo)
            else:
                results = response.get("Entries", [])
            retry = []
            for emission, result in zip(todo, results, strict=False):
                if result.get("EventId") and not result.get("ErrorCode"):
                    done.append(emission)
                else:
                    retry.append(emission)
            retry.extend(todo[len(results) :])
            if not retry:
                return done, []
            todo = retry
            if attempt < self.max_attempts:
                self.sleep(delay)
                delay *= 2
        logger.error("%d event(s) not accepted by EventBridge; kept for the next sweep", len(todo))
        return done, todo

    def _notify(self, emissions: list[Emission]) -> int:
        if self._sns is None and self._sns_factory is not None:
            self._sns = self._sns_factory()
        failures = 0
        for emission in emissions:
            event = eventbridge_event(emission, rule=self.rule_for(emission))
            body = json.dumps(event, ensure_ascii=False)
            for attempt in range(1, self.max_attempts + 1):
                try:
                    self._sns.publish(
                        TopicArn=self.topic_arn,
                        Message=body,
                        Subject=f"package-objects-ready: {emission.bucket}"[:100],
                    )
                    break
                except Exception as err:
                    logger.warning("SNS publish failed (attempt %d): %s", attempt, err)
                    if attempt == self.max_attempts:
                        failures += 1
                    else:
                        self.sleep(FIRST_BACKOFF * 2 ** (attempt - 1))
        return failures


def publish_pending(
    store: BatchStore, publisher: Publisher, clock: Clock = utc_now, *, limit: int = 500
) -> PublishReport:
    """Claim the outbox, publish, and record the outcome; unpublished batches stay for next time."""
    total = PublishReport()
    while True:
        claimed = store.claim_pending(clock(), CLAIM_LEASE, limit=limit)
        if not claimed:
            return total
        report = publisher.publish(claimed)
        if report.published:
            store.mark_published(report.published, clock())
        if report.failed:
            store.release(report.failed)
        total.published.extend(report.published)
        total.failed.extend(report.failed)
        total.sns_failures += report.sns_failures
        if report.failed or len(claimed) < limit:
            return total
