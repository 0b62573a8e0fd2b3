"""Lambda entry points: `store_in_db` (SQS or EventBridge -> store), `emit_event` (schedule -> bus)
and `backfill` (on demand or on a schedule: objects already in the bucket -> bus).

Thin by design: parse, call the emitter, shape the response. Settings, the store and the clients are
built on the first invocation and reused while the execution environment lives (never at import).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from edp import counters
from edp.clock import Clock, utc_now
from edp.core import Emission
from edp.emitter import Acceptance, Emitter
from edp.errors import BackfillError, BadEventError
from edp.events import Parsed
from edp.publisher import Publisher, PublishReport
from edp.settings import Settings
from edp.store import BatchStore, open_store
from edp.store.urls import redact_url
from edp_common.clients import client_factory, make_client
from edp_common.envelopes import is_sqs_batch

# Powertools reads its own variables; these defaults only matter outside the stack (tests, local).
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "edp")
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EDP"), service=SERVICE)
# Publishing stops this long before the invocation's timeout: the PutEvents call in flight ends
# and its chunk is marked published before the Lambda is stopped; the rest waits, claimable.
PUBLISH_MARGIN = timedelta(seconds=10)


@dataclass
class Runtime:
    """What a warm Lambda keeps between invocations."""

    settings: Settings
    store: BatchStore
    emitter: Emitter
    publisher: Publisher
    clock: Clock


_runtime: Runtime | None = None


def runtime(factory: Callable[[], Runtime] | None = None) -> Runtime:
    """The cached runtime, built on first use (tests pass their own factory or call reset())."""
    global _runtime
    if _runtime is None:
        _runtime = (factory or build_runtime)()
    return _runtime


def reset() -> None:
    """Drop the cached runtime (tests; or after settings change)."""
    global _runtime
    if _runtime is not None:
        _runtime.store.close()
    _runtime = None


def build_runtime(clock: Clock = utc_now) -> Runtime:
    settings = Settings.from_sources()
    store = open_store(settings.database_url, secret_arn=settings.database_secret_arn)
    logger.info(
        "edp runtime ready",
        extra={"store": redact_url(settings.database_url), "bus": settings.event_bus},
    )
    emitter = Emitter(settings, store)
    publisher = Publisher(
        client_factory("events"),
        settings.event_bus,
        sns_client=client_factory("sns"),
        sts_client=client_factory("sts"),
        topic_arn=settings.sns_topic_arn,
        rule_of=emitter.rule_name,
    )
    return Runtime(settings, store, emitter, publisher, clock)


@logger.inject_lambda_context
@metrics.log_metrics
def store_in_db(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Store S3 events. From SQS: bad messages alone go to `batchItemFailures` (then the DLQ)."""
    rt = runtime()
    if not is_sqs_batch(event):
        # Invoked directly by an EventBridge rule (or an S3 notification): one message.
        accepted = _accept(rt, [("event", event)], context)
        if accepted.rejects:
            raise BadEventError(accepted.rejects[0].reason)
        return {"stored": accepted.events}
    # One transaction for every good message; a message the store refuses fails alone (and if
    # the store is down, the exception fails the whole batch, which SQS then retries).
    accepted = _accept(rt, [(r.get("messageId"), r.get("body")) for r in event["Records"]], context)
    for reject in accepted.rejects:
        logger.warning(
            "message not stored" if reject.unstored else "rejected message",
            extra={"message_id": reject.key, "error": reject.reason},
        )
    metrics.add_metric("RejectedMessages", MetricUnit.Count, len(accepted.rejects))
    return {"batchItemFailures": [{"itemIdentifier": r.key} for r in accepted.rejects]}


def _accept(rt: Runtime, messages: list[tuple[Any, Any]], context: Any) -> Acceptance[Any]:
    """Accept the messages; count- and marker-closed batches go out now, not at the next sweep."""
    now = rt.clock()
    accepted = rt.emitter.accept(messages, arrived=now)
    if accepted.parsed:
        record_ingest_metrics(accepted.outcome.counters, accepted.parsed, now)
    record_emission_metrics(accepted.outcome.emissions)
    if accepted.outcome.emissions:
        deadline = _deadline(rt, context)
        record_publish_metrics(rt.emitter.publish(rt.publisher, rt.clock, deadline=deadline))
    return accepted


@logger.inject_lambda_context
@metrics.log_metrics
def emit_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Scheduled: close every due batch, (re-)send everything unpublished, report backlog metrics."""
    rt = runtime()
    swept = rt.emitter.sweep(rt.publisher, rt.clock, deadline=_deadline(rt, context))
    record_emission_metrics(swept.closed)
    record_publish_metrics(swept.publish)
    backlog = rt.emitter.backlog()
    metrics.add_metric("OpenBatches", MetricUnit.Count, backlog.open)
    oldest = backlog.oldest_activity
    age = (rt.clock() - oldest).total_seconds() if oldest else 0.0
    metrics.add_metric("OldestOpenBatchAgeSeconds", MetricUnit.Seconds, age)
    for emission in swept.closed:
        logger.info("batch closed", extra={k: getattr(emission, k) for k in CLOSED_FIELDS})
    return {
        "closed": len(swept.closed),
        "published": swept.published,
        "failed": swept.failed,
        "open": backlog.open,
        "purged": swept.purged,
    }


CLOSED_FIELDS = ("bucket", "prefix", "trigger", "count", "batch_id")


def _deadline(rt: Runtime, context: Any) -> datetime | None:
    """When publishing must stop in this invocation: its remaining time less PUBLISH_MARGIN."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return rt.clock() + timedelta(milliseconds=remaining()) - PUBLISH_MARGIN


def record_ingest_metrics(counts: Counter[str], parsed: list[Parsed], now: datetime) -> None:
    metrics.add_metric("EventsAccepted", MetricUnit.Count, counts.get(counters.ACCEPTED, 0))
    metrics.add_metric("DuplicateEvents", MetricUnit.Count, counts.get(counters.DUPLICATE, 0))
    metrics.add_metric("StaleEvents", MetricUnit.Count, counts.get(counters.STALE, 0))
    for reason, value in counters.by_reason(counts).items():
        _dimensioned("EventsDropped", "Reason", reason, value)
    times = [e.event_time for p in parsed for e in p.events]
    if times:
        lag = max(0.0, (now - min(times)).total_seconds())
        metrics.add_metric("IngestLagSeconds", MetricUnit.Seconds, lag)


def record_emission_metrics(emissions: list[Emission]) -> None:
    for trigger, value in sorted(Counter(e.trigger for e in emissions).items()):
        _dimensioned("BatchesEmitted", "Trigger", trigger, value)


def record_publish_metrics(report: PublishReport) -> None:
    metrics.add_metric("BatchesPublished", MetricUnit.Count, len(report.published))
    metrics.add_metric(
        "PublishFailures", MetricUnit.Count, len(report.failed) + report.sns_failures
    )


def _dimensioned(name: str, dimension: str, value_name: str, value: int) -> None:
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=value,
        namespace=metrics.namespace,
    ) as metric:
        # The same `service` dimension as every other metric, so a dashboard can filter by stack.
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name=dimension, value=value_name)


@logger.inject_lambda_context
@metrics.log_metrics
def backfill(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Publish one backfill batch per prefix of the watched bucket(s), through the outbox.

    The event may set ``uris`` (default: ``s3://<bucket>`` for every watched bucket), ``dry_run``,
    ``modified_since``, ``modified_until`` and ``rate`` (events per second); a scheduled event
    carries none of them unless the rule's input does. A run cut short by the Lambda timeout
    resumes at the next invocation: batches already in the outbox are not sent again.
    """
    from edp.backfill import parse_time, run_backfill

    rt = runtime()
    options = event if isinstance(event, dict) else {}
    uris = options.get("uris") or [f"s3://{bucket}" for bucket in rt.settings.buckets]
    if isinstance(uris, str):
        uris = [uris]
    if not uris:
        raise BackfillError("no bucket to backfill: set EDP_BUCKET_NAME or pass 'uris'")
    rate = options.get("rate")
    s3 = make_client("s3")
    results = []
    for uri in uris:
        plan, report = run_backfill(
            str(uri),
            rt.emitter.scope,
            s3=s3,
            store=rt.store,
            publisher=rt.publisher,
            dry_run=bool(options.get("dry_run", False)),
            modified_since=parse_time("modified_since", options.get("modified_since")),
            modified_until=parse_time("modified_until", options.get("modified_until")),
            rate=float(rate) if rate is not None else None,
            clock=rt.clock,
        )
        result = {
            "uri": uri,
            "prefixes": len(plan.batches),
            "objects": plan.objects,
            "listed": plan.listed,
            "list_requests": plan.requests,
        }
        metrics.add_metric("BackfillPrefixes", MetricUnit.Count, len(plan.batches))
        if report is not None:
            result.update(published=report.published, already=report.already)
            metrics.add_metric("BackfillBatchesPublished", MetricUnit.Count, report.published)
        logger.info("backfill", extra=result)
        results.append(result)
    return {"results": results}
