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

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from edp.clock import Clock, utc_now
from edp.core import Emission
from edp.counters import DROPPED_PREFIX
from edp.emitter import Emitter
from edp.errors import BadEventError
from edp.events import Parsed, parse_message
from edp.publisher import Publisher, PublishReport, publish_pending
from edp.settings import Settings, redact_url
from edp.store import BatchStore, open_store

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
        lambda: boto3.client("events"),
        settings.event_bus,
        sns_client=lambda: boto3.client("sns"),
        sts_client=lambda: boto3.client("sts"),
        topic_arn=settings.sns_topic_arn,
        rule_of=emitter.rule_name,
    )
    return Runtime(settings, store, emitter, publisher, clock)


@logger.inject_lambda_context
@metrics.log_metrics
def store_in_db(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Store S3 events. From SQS: bad messages alone go to `batchItemFailures` (then the DLQ)."""
    rt = runtime()
    encoded = rt.settings.eventbridge_keys_encoded
    if not _is_sqs_batch(event):
        # Invoked directly by an EventBridge rule (or an S3 notification): one message.
        parsed = parse_message(event, eventbridge_keys_encoded=encoded)
        _ingest(rt, [parsed], context)
        return {"stored": len(parsed.events)}

    collected: list[tuple[str, Parsed]] = []

    def record_handler(record: SQSRecord) -> None:
        try:
            collected.append(
                (record.message_id, parse_message(record.body, eventbridge_keys_encoded=encoded))
            )
        except BadEventError as err:
            logger.warning(
                "rejected message", extra={"message_id": record.message_id, "error": str(err)}
            )
            raise

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    with processor(records=event["Records"], handler=record_handler):
        processor.process()
    failures = [dict(item) for item in processor.response()["batchItemFailures"]]
    # One transaction for every good message; a message the store refuses fails alone (and if
    # the store is down, the exception fails the whole batch, which SQS then retries).
    unstored = _ingest(rt, [parsed for _, parsed in collected], context)
    for index in unstored:
        message_id = collected[index][0]
        logger.warning("message not stored", extra={"message_id": message_id})
        failures.append({"itemIdentifier": message_id})
    metrics.add_metric("RejectedMessages", MetricUnit.Count, len(failures))
    return {"batchItemFailures": failures}


def _is_sqs_batch(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def _ingest(rt: Runtime, parsed: list[Parsed], context: Any) -> list[int]:
    """Store the messages; the indexes of those the store refused (see Emitter.ingest_isolated)."""
    if not parsed:
        return []
    now = rt.clock()
    outcome, unstored = rt.emitter.ingest_isolated(parsed, arrived=now)
    record_ingest_metrics(outcome.counters, parsed, now)
    record_emission_metrics(outcome.emissions)
    if outcome.emissions:
        # Count- and marker-triggered batches go out now, not at the next scheduled sweep.
        record_publish_metrics(
            publish_pending(rt.store, rt.publisher, rt.clock, deadline=_deadline(rt, context))
        )
    return unstored


@logger.inject_lambda_context
@metrics.log_metrics
def emit_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Scheduled: close every due batch, (re-)send everything unpublished, report backlog metrics."""
    rt = runtime()
    now = rt.clock()
    closed = rt.emitter.close_due(now)
    report = publish_pending(rt.store, rt.publisher, rt.clock, deadline=_deadline(rt, context))
    record_emission_metrics(closed)
    record_publish_metrics(report)
    purged = rt.store.purge(now, rt.emitter.rules.dedupe_window)
    open_batches = rt.store.open_batches()
    metrics.add_metric("OpenBatches", MetricUnit.Count, len(open_batches))
    oldest = min((b.first_activity for b in open_batches), default=None)
    age = (now - oldest).total_seconds() if oldest else 0.0
    metrics.add_metric("OldestOpenBatchAgeSeconds", MetricUnit.Seconds, age)
    for emission in closed:
        logger.info(
            "batch closed",
            extra={
                "bucket": emission.bucket,
                "prefix": emission.prefix,
                "trigger": emission.trigger,
                "count": emission.count,
                "batch_id": emission.batch_id,
            },
        )
    return {
        "closed": len(closed),
        "published": len(report.published),
        "failed": len(report.failed),
        "open": len(open_batches),
        "purged": purged,
    }


def _deadline(rt: Runtime, context: Any) -> datetime | None:
    """When publishing must stop in this invocation: its remaining time less PUBLISH_MARGIN."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return rt.clock() + timedelta(milliseconds=remaining()) - PUBLISH_MARGIN


def record_ingest_metrics(counters: Counter[str], parsed: list[Parsed], now: datetime) -> None:
    metrics.add_metric("EventsAccepted", MetricUnit.Count, counters.get("accepted", 0))
    metrics.add_metric("DuplicateEvents", MetricUnit.Count, counters.get("duplicate", 0))
    metrics.add_metric("StaleEvents", MetricUnit.Count, counters.get("stale", 0))
    for name, value in sorted(counters.items()):
        if name.startswith(DROPPED_PREFIX):
            _dimensioned("EventsDropped", "Reason", name[len(DROPPED_PREFIX) :], value)
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
    from edp.backfill import BackfillError, parse_time, run_backfill

    rt = runtime()
    options = event if isinstance(event, dict) else {}
    uris = options.get("uris") or [f"s3://{bucket}" for bucket in rt.settings.buckets]
    if isinstance(uris, str):
        uris = [uris]
    if not uris:
        raise BackfillError("no bucket to backfill: set EDP_BUCKET_NAME or pass 'uris'")
    rate = options.get("rate")
    s3 = boto3.client("s3")
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
