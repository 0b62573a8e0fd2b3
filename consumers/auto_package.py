"""The reference auto-packaging Lambda: ``package-objects-ready`` events in, Quilt packages out.

Invoked directly by an EventBridge rule (or an SNS subscription), or by an SQS queue, in which
case failures are reported per message in ``batchItemFailures``. Configured by environment
variables, see :data:`consumers.settings.ENV_VARS`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from consumers.errors import BadEventError
from consumers.events import ReadyEvent, parse_ready_events
from consumers.quilt_env import quilt_environment
from consumers.settings import SETTINGS_INPUTS, ConsumerSettings
from edp_common.envelopes import is_sqs_batch

DEFAULT_METRICS_NAMESPACE = "EDP"
DEFAULT_SERVICE = "edp-auto-package"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE)
metrics = Metrics()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point; see the module docstring."""
    # Read at call time (not when Metrics() was made at import), with a default.
    metrics.namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE
    return _logged_and_measured(event, context)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def _logged_and_measured(event: dict[str, Any], context: Any) -> dict[str, Any]:
    quilt_environment()
    settings = _settings(tuple(os.environ.get(name) for name in SETTINGS_INPUTS))
    if is_sqs_batch(event):
        records: list[dict[str, Any]] = event["Records"]
        return _handle_sqs_batch(records, settings)
    outcomes = [_package(ready, settings) for ready in parse_ready_events(event)]
    return {"outcomes": outcomes}


@functools.lru_cache(maxsize=1)
def _settings(env_values: tuple[str | None, ...]) -> ConsumerSettings:
    """Settings built once per container (again only if the environment changed, as in tests)."""
    env = {
        name: value
        for name, value in zip(SETTINGS_INPUTS, env_values, strict=True)
        if value is not None
    }
    return ConsumerSettings.from_env(env)


def _handle_sqs_batch(records: list[dict[str, Any]], settings: ConsumerSettings) -> dict[str, Any]:
    """Process each message alone with Powertools' BatchProcessor; only the failed ones go back
    to the queue (and its DLQ), even when every one fails."""

    def record_handler(record: SQSRecord) -> None:
        try:
            for ready in parse_ready_events(record.body):
                _package(ready, settings)
        except BadEventError as err:
            logger.error("bad event", message_id=record.message_id, error=str(err))
            metrics.add_metric(name="BadEvents", unit=MetricUnit.Count, value=1)
            raise
        except Exception:
            logger.exception("packaging failed", message_id=record.message_id)
            metrics.add_metric(name="PackagingFailures", unit=MetricUnit.Count, value=1)
            raise

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    with processor(records=records, handler=record_handler):
        processor.process()
    return {"batchItemFailures": [dict(item) for item in processor.response()["batchItemFailures"]]}


def _package(ready: ReadyEvent, settings: ConsumerSettings) -> dict[str, Any]:
    from consumers.pipeline import package_prefix  # imports quilt3: after quilt_environment()

    logger.append_keys(bucket=ready.bucket, prefix=ready.prefix, batch_id=ready.batch_id)
    outcome = package_prefix(ready, settings)
    metrics.add_metric(
        name=f"Packages{outcome.status.capitalize()}", unit=MetricUnit.Count, value=1
    )
    logger.info("package outcome", outcome=asdict(outcome))
    return asdict(outcome)
