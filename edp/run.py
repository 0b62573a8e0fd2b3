"""`edp run`'s wiring: real boto3 clients, start-up checks, signal handlers, progress logging,
and the store, around the polling loop of :mod:`edp.service`."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from edp.errors import ServiceError, SettingsError
from edp.logs import command_logging
from edp.service import Service
from edp.settings import Settings
from edp.store import open_store
from edp.store.urls import redact_url
from edp_common.clients import client_factory

EXIT_INTERRUPTED = 130  # a second stop signal: exit at once, as a shell does after Ctrl-C

logger = logging.getLogger(__name__)


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


DENIED_CODES = ("AccessDenied", "AccessDeniedException", "AuthorizationError")


def check_queue(sqs: Any, queue_url: str) -> None:
    """Fail fast with a clear message when the queue cannot be read; warn when no DLQ is set."""
    try:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
        ).get("Attributes", {})
    except Exception as err:
        raise ServiceError(
            f"cannot read queue {queue_url}: {err} (check --queue-url, --region, "
            "--endpoint-url and the credentials)"
        ) from err
    if "RedrivePolicy" not in attributes:
        logger.warning(
            "queue %s has no dead-letter queue: a bad message will be received again every "
            "visibility timeout (%s s) forever; set a RedrivePolicy",
            queue_url,
            attributes.get("VisibilityTimeout", "?"),
        )
        return
    try:
        dlq = json.loads(attributes["RedrivePolicy"]).get("deadLetterTargetArn", "?")
    except (ValueError, AttributeError):
        dlq = "?"
    logger.info("start-up check: queue %s can be read (dead-letter queue %s)", queue_url, dlq)


def check_bus(events: Any, bus: str) -> None:
    """The bus must exist: without it every batch would wait in the outbox, retried forever."""
    try:
        events.describe_event_bus(Name=bus)
    except Exception as err:
        if _error_code(err) in DENIED_CODES:
            logger.warning(
                "start-up check: cannot check event bus %s (no events:DescribeEventBus "
                "permission?): %s",
                bus,
                err,
            )
            return
        raise ServiceError(
            f"event bus {bus} cannot be used: {err} (check --event-bus / EDP_EVENT_BUS_NAME, "
            "--region and --endpoint-url)"
        ) from err
    logger.info("start-up check: event bus %s exists", bus)


def check_topic(sns: Any, topic_arn: str) -> None:
    """The topic, when one is set, must exist (its copies would otherwise all fail)."""
    try:
        sns.get_topic_attributes(TopicArn=topic_arn)
    except Exception as err:
        if _error_code(err) in DENIED_CODES:
            logger.warning(
                "start-up check: cannot check topic %s (no sns:GetTopicAttributes permission?): %s",
                topic_arn,
                err,
            )
            return
        raise ServiceError(
            f"SNS topic {topic_arn} cannot be used: {err} (check --sns-topic-arn / "
            "EDP_SNS_TOPIC_ARN)"
        ) from err
    logger.info("start-up check: SNS topic %s exists", topic_arn)


class DeadlineQueue:
    """An SQS client whose long polls never wait past ``deadline`` (a monotonic time), so
    ``--max-runtime N`` stops within N seconds plus one short receive, not N plus ``--poll-wait``."""

    def __init__(
        self, sqs: Any, deadline: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._sqs = sqs
        self._deadline = deadline
        self._monotonic = monotonic

    def receive_message(self, **kwargs: Any) -> Any:
        left = max(0, math.ceil(self._deadline - self._monotonic()))
        kwargs["WaitTimeSeconds"] = min(int(kwargs.get("WaitTimeSeconds", 0)), left)
        return self._sqs.receive_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``; a second one exits at once (safe: the store is transactional,
    unstored messages reappear on the queue, closed batches stay in the outbox)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("%s again: exiting now", name)
            os._exit(EXIT_INTERRUPTED)
        logger.warning("%s: stopping after this receive (send again to exit at once)", name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def progress_on_stderr(
    verbose: bool, *, log_format: str = "text", log_level: str | None = None
) -> Iterator[None]:
    """Progress lines on stderr for the `edp` loggers while the service runs (see edp.logs)."""
    level = log_level or ("debug" if verbose else "info")
    with command_logging("edp run", level=level, log_format=log_format):
        yield


def run_service(
    settings: Settings,
    *,
    queue_url: str,
    endpoint_url: str | None = None,
    region: str | None = None,
    poll_wait: int = 10,
    max_runtime: float | None = None,
    verbose: bool = False,
    log_format: str = "text",
    log_level: str | None = None,
) -> int:
    """`edp run`: wire real clients, the store and signal handlers; run until stopped; exit code."""
    if max_runtime is not None and not 0 < max_runtime < math.inf:
        raise SettingsError("--max-runtime", max_runtime, "a number of seconds > 0")
    stop = threading.Event()
    started = time.monotonic()
    with (
        progress_on_stderr(verbose, log_format=log_format, log_level=log_level),
        stop_on_signals(stop),
    ):
        sqs: Any = client_factory("sqs", endpoint_url=endpoint_url, region=region)()
        check_queue(sqs, queue_url)
        # Made now, not at the first publish, so the first batch is not late by a client's setup.
        events = client_factory("events", endpoint_url=endpoint_url, region=region)()
        check_bus(events, settings.event_bus)
        sns_factory = client_factory("sns", endpoint_url=endpoint_url, region=region)
        if settings.sns_topic_arn:
            sns = sns_factory()
            check_topic(sns, settings.sns_topic_arn)
            sns_factory = lambda: sns  # noqa: E731
        if max_runtime is not None:
            sqs = DeadlineQueue(sqs, started + max_runtime)
        store = open_store(settings.database_url, secret_arn=settings.database_secret_arn)
        try:
            service = Service(
                settings,
                store,
                queue_url=queue_url,
                sqs_client=lambda: sqs,
                events_client=lambda: events,
                sns_client=sns_factory,
                s3_client=client_factory("s3", endpoint_url=endpoint_url, region=region),
                stop=stop,
                poll_wait=poll_wait,
                exclusive_store=store.exclusive,
            )
            logger.info(
                "polling %s (store %s, bus %s%s; duration %d s, count %d); Ctrl-C to stop",
                queue_url,
                redact_url(settings.database_url),
                settings.event_bus,
                f", topic {settings.sns_topic_arn}" if settings.sns_topic_arn else "",
                settings.threshold_duration,
                settings.threshold_count,
            )
            timer = None
            if max_runtime is not None:
                timer = threading.Timer(
                    max(0.0, started + max_runtime - time.monotonic()), stop.set
                )
                timer.daemon = True
                timer.start()
            try:
                stats = service.run()
            finally:
                if timer is not None:
                    timer.cancel()
            backlog = service.emitter.backlog()
            logger.info(
                "stopped after %.1f s: %s; %d batch(es) open, %d waiting to be published",
                time.monotonic() - started,
                stats.summary(),
                backlog.open,
                backlog.pending,
            )
        finally:
            store.close()
    return 0
