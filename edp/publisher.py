"""Publishing package-objects-ready events: EventBridge PutEvents in chunks of 10, then SNS."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edp.clock import Clock, rfc3339, utc_now, whole_seconds
from edp.core import Emission
from edp.store.base import BatchStore

PUT_EVENTS_MAX_ENTRIES = 10  # PutEvents API limit per call
SOURCE = "com.quiltdata.edp"  # Quilt EDP's source, so existing rules keep matching
DETAIL_TYPE = "package-objects-ready"
DETAIL_VERSION = "0.1"
ARN_PREFIX = "arn:aws:s3:::"  # a bucket's ARN, in the event's resources
MAX_ATTEMPTS = 5
FIRST_BACKOFF = 0.2  # seconds; doubles on every retry
CLAIM_LIMIT = 100  # batches claimed at once: ten PutEvents calls
# How long one claim may be published for: its batches are sent within this, or given back.
CLAIM_BUDGET = timedelta(seconds=30)
# A claim's lease outlives the time allowed to publish it by this much, so a PutEvents call still
# in flight at the deadline ends before anyone else may re-send: the events client's timeouts and
# retries (edp_common.clients) bound one call well within it (a test checks).
LEASE_MARGIN = timedelta(seconds=90)
CLAIM_LEASE = CLAIM_BUDGET + LEASE_MARGIN  # the longest lease any claim gets
DEFAULT_ACCOUNT = "000000000000"  # what `edp simulate` prints: there is no deployment
DEFAULT_REGION = "us-east-1"

logger = logging.getLogger(__name__)


# json.dumps(value, ensure_ascii=False) for what is published or printed, with one encoder made
# once (json.dumps makes one per call when given any argument).
to_json = json.JSONEncoder(ensure_ascii=False).encode


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


# A str as a JSON string, non-ASCII kept: the function to_json's encoder calls for each one.
_json_text: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_AFTER_ID = f', "detail-type": {to_json(DETAIL_TYPE)}, "source": {to_json(SOURCE)}, "account": '
_DETAIL_START = f', "detail": {{"version": {to_json(DETAIL_VERSION)}, "bucket": '


def eventbridge_json(
    emission: Emission,
    *,
    account: str = DEFAULT_ACCOUNT,
    region: str = DEFAULT_REGION,
    event_id: str | None = None,
    rule: str | None = None,
) -> str:
    """``to_json(eventbridge_event(...))``, the same text written directly, in about half the
    time (``edp simulate`` prints one per batch; a test compares the two on any emission)."""
    rule_field = "" if rule is None else f', "rule": {_json_text(rule)}'
    # The times are made of digits, "-", ":", "T", "." and "Z": nothing in them is escaped.
    return (
        f'{{"version": "0", "id": {_json_text(event_id or emission.batch_id)}{_AFTER_ID}'
        f'{_json_text(account)}, "time": "{whole_seconds(emission.emitted_at)}", '
        f'"region": {_json_text(region)}, '
        f'"resources": [{_json_text(ARN_PREFIX + emission.bucket)}]{_DETAIL_START}'
        f'{_json_text(emission.bucket)}, "prefix": {_json_text(emission.prefix)}, '
        f'"count": {int.__repr__(emission.count)}, "trigger": {_json_text(emission.trigger)}, '
        f'"batch_id": {_json_text(emission.batch_id)}, '
        f'"first_event_time": "{rfc3339(emission.first_event_time)}", '
        f'"last_event_time": "{rfc3339(emission.last_event_time)}"{rule_field}}}}}'
    )


def put_events_entry(emission: Emission, event_bus: str, rule: str | None = None) -> dict[str, Any]:
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Resources": [ARN_PREFIX + emission.bucket],
        "Detail": to_json(detail_of(emission, rule)),
        "EventBusName": event_bus,
        "Time": emission.emitted_at,
    }


def eventbridge_event(
    emission: Emission,
    *,
    account: str = DEFAULT_ACCOUNT,
    region: str = DEFAULT_REGION,
    event_id: str | None = None,
    rule: str | None = None,
) -> dict[str, Any]:
    """The whole event as EventBridge delivers it (what `edp simulate` prints and SNS carries).

    ``event_id`` is the id the bus assigned (PutEvents returns it); without one, the batch id.
    """
    return {
        "version": "0",
        "id": event_id or emission.batch_id,
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": whole_seconds(emission.emitted_at),
        "region": region,
        "resources": [ARN_PREFIX + emission.bucket],
        "detail": detail_of(emission, rule),
    }


@dataclass(frozen=True)
class PublishedBatch:
    """A batch the bus accepted, and when it was marked published."""

    emission: Emission
    at: datetime


@dataclass
class PublishReport:
    published: list[str] = field(default_factory=list)  # batch ids, in the order sent
    batches: list[PublishedBatch] = field(default_factory=list)  # the same batches, whole
    failed: list[str] = field(default_factory=list)
    sns_failures: int = 0
    deferred: int = 0  # claimed but not attempted before the deadline or a stop: given back
    errors: dict[str, str] = field(default_factory=dict)  # failed batch_id -> last error


def _never() -> bool:
    return False


class Publisher:
    """Sends emissions to the bus (and the topic); retries failed entries with backoff."""

    def __init__(
        self,
        events_client: Callable[[], Any],
        event_bus: str,
        *,
        sns_client: Callable[[], Any] | None = None,
        sts_client: Callable[[], Any] | None = None,
        topic_arn: str | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
        rule_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._events_factory = events_client
        self._sns_factory = sns_client
        self._sts_factory = sts_client
        self._events: Any = None
        self._sns: Any = None
        self._origin: tuple[str, str] | None = None
        # batch_id -> why the bus last refused it (for `edp status`); cleared when accepted.
        self.last_errors: dict[str, str] = {}
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
        """Send every emission (chunks of 10, each retried up to ``max_attempts`` times)."""
        report = PublishReport()
        for start in range(0, len(emissions), PUT_EVENTS_MAX_ENTRIES):
            chunk = list(emissions[start : start + PUT_EVENTS_MAX_ENTRIES])
            done, failed, sns_failures = self.send(chunk)
            report.published.extend(e.batch_id for e in done)
            report.batches.extend(PublishedBatch(e, utc_now()) for e in done)
            report.failed.extend(e.batch_id for e in failed)
            report.sns_failures += sns_failures
        return report

    def send(
        self,
        chunk: Sequence[Emission],
        *,
        time_left: Callable[[], float] = lambda: math.inf,
        stop: Callable[[], bool] = _never,
    ) -> tuple[list[Emission], list[Emission], int]:
        """One PutEvents chunk (at most 10), then its SNS copies: (accepted, failed, SNS failures).

        Failed entries are retried with backoff while ``time_left()`` allows the wait and
        ``stop()`` is false; a stop or a deadline never interrupts a call in flight.
        """
        accepted, failed = self._put_chunk(list(chunk), time_left, stop)
        sns_failures = self._notify(accepted) if self.topic_arn and accepted else 0
        return [e for e, _ in accepted], failed, sns_failures

    def _put_chunk(
        self, chunk: list[Emission], time_left: Callable[[], float], stop: Callable[[], bool]
    ) -> tuple[list[tuple[Emission, str]], list[Emission]]:
        done: list[tuple[Emission, str]] = []
        todo = chunk
        delay = FIRST_BACKOFF
        for attempt in range(1, self.max_attempts + 1):
            entries = [put_events_entry(e, self.event_bus, self.rule_for(e)) for e in todo]
            try:
                response = self._events_client().put_events(Entries=entries)
            except Exception as err:  # network, throttling, permissions: retried, never dropped
                logger.warning("PutEvents failed (attempt %d): %s", attempt, err)
                results: list[dict[str, Any]] = [
                    {"ErrorCode": type(err).__name__, "ErrorMessage": str(err)}
                ] * len(todo)
            else:
                results = response.get("Entries", [])
            retry = []
            for emission, result in zip(todo, results, strict=False):
                if result.get("EventId") and not result.get("ErrorCode"):
                    done.append((emission, str(result["EventId"])))
                    self.last_errors.pop(emission.batch_id, None)
                else:
                    retry.append(emission)
                    self.last_errors[emission.batch_id] = (
                        f"{result.get('ErrorCode', 'no EventId')}: "
                        f"{result.get('ErrorMessage', '')}".strip(": ")
                    )
            retry.extend(todo[len(results) :])
            if not retry:
                return done, []
            todo = retry
            if attempt == self.max_attempts or stop() or time_left() <= delay:
                break
            self.sleep(delay)
            delay *= 2
            if stop():
                break
        logger.error("%d event(s) not accepted by EventBridge; kept for the next sweep", len(todo))
        return done, todo

    def origin(self) -> tuple[str, str]:
        """(account, region) of the deployment, as the bus puts them in every event: the region
        of the EventBridge client and the account STS names; asked once, when first needed."""
        if self._origin is None:
            events = self._events_client()
            region = getattr(getattr(events, "meta", None), "region_name", None) or DEFAULT_REGION
            try:
                sts = self._sts_factory() if self._sts_factory else _sts_like(events)
                account = str(sts.get_caller_identity()["Account"])
            except Exception as err:  # the copy still goes out; only its account is unknown
                logger.warning("cannot tell the AWS account (STS GetCallerIdentity): %s", err)
                return DEFAULT_ACCOUNT, region
            self._origin = (account, region)
        return self._origin

    def _notify(self, accepted: list[tuple[Emission, str]]) -> int:
        if self._sns is None and self._sns_factory is not None:
            self._sns = self._sns_factory()
        account, region = self.origin()
        failures = 0
        for emission, event_id in accepted:
            # The copy is the event the bus delivered: same id, account, region and time.
            body = eventbridge_json(
                emission,
                account=account,
                region=region,
                event_id=event_id,
                rule=self.rule_for(emission),
            )
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


def _sts_like(events: Any) -> Any:
    """An STS client in the EventBridge client's region, and at its endpoint when that is an
    emulator's (a non-AWS endpoint serves every service), for callers that pass no STS factory."""
    from edp_common.clients import make_client

    endpoint = getattr(events.meta, "endpoint_url", None)
    custom = endpoint if endpoint and "amazonaws.com" not in endpoint else None
    return make_client("sts", region=events.meta.region_name, endpoint_url=custom)


def publish_pending(
    store: BatchStore,
    publisher: Publisher,
    clock: Clock = utc_now,
    *,
    deadline: datetime | None = None,
    stop: Callable[[], bool] = _never,
    limit: int = CLAIM_LIMIT,
) -> PublishReport:
    """Claim the outbox and publish it until it is empty, ``deadline`` comes, or ``stop()``.

    Each PutEvents chunk is marked published as soon as the bus accepts it, so a crash re-sends at
    most the chunk in flight. A claim is published for at most CLAIM_BUDGET (and never past the
    deadline) under a lease LEASE_MARGIN longer, so no other emitter takes over a batch that may
    still be on its way; what was not attempted in time is given back for the next sweep. When a
    chunk still fails after its retries, the bus is failing: the sweep stops there.
    """
    total = PublishReport()
    while not stop():
        now = clock()
        until = now + CLAIM_BUDGET if deadline is None else min(deadline, now + CLAIM_BUDGET)
        if until <= now:
            return total
        claimed = store.claim_pending(now, (until - now) + LEASE_MARGIN, limit=limit)
        if not claimed:
            return total

        def time_left(until: datetime = until) -> float:
            return (until - clock()).total_seconds()

        for start in range(0, len(claimed), PUT_EVENTS_MAX_ENTRIES):
            chunk = claimed[start : start + PUT_EVENTS_MAX_ENTRIES]
            if stop() or time_left() <= 0:
                rest = [e.batch_id for e in claimed[start:]]
                store.release(rest)
                total.deferred += len(rest)
                return total
            done, failed, sns_failures = publisher.send(chunk, time_left=time_left, stop=stop)
            if done:
                at = clock()
                store.mark_published([e.batch_id for e in done], at)
                total.published.extend(e.batch_id for e in done)
                total.batches.extend(PublishedBatch(e, at) for e in done)
            total.sns_failures += sns_failures
            if failed:
                total.failed.extend(e.batch_id for e in failed)
                errors = {
                    e.batch_id: publisher.last_errors.pop(e.batch_id, "not accepted by EventBridge")
                    for e in failed
                }
                total.errors.update(errors)
                store.record_failures(errors, clock())  # for `edp status`: attempts, last error
                rest = [e.batch_id for e in claimed[start + PUT_EVENTS_MAX_ENTRIES :]]
                store.release([e.batch_id for e in failed] + rest)
                total.deferred += len(rest)
                return total
        if len(claimed) < limit:
            return total
    return total
