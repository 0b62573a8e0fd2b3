"""Log lines of the long-running commands (`edp run`, `edp redrive`): a level on every line, as
plain text for a terminal or journald, or as JSON in Powertools' Logger shape for CloudWatch/Loki."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
SERVICE_NAME = "edp"  # the `service` field of JSON lines, as Powertools' POWERTOOLS_SERVICE_NAME


def text_formatter(command: str) -> logging.Formatter:
    """``2026-11-25 22:26:35,056 INFO edp run: published ...`` (UTC)."""
    formatter = logging.Formatter(f"%(asctime)s %(levelname)s {command}: %(message)s")
    formatter.converter = time.gmtime
    return formatter


def json_formatter(command: str) -> logging.Formatter:
    """Powertools' own formatter: ``{"level", "location", "message", "timestamp", "service", ...}``
    plus ``command``, so the lines read like the Lambda's."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    return LambdaPowertoolsFormatter(service=SERVICE_NAME, utc=True, command=command)


@contextmanager
def command_logging(
    command: str,
    *,
    level: str = "info",
    log_format: str = "text",
    stream: IO[str] | None = None,
    logger_names: tuple[str, ...] = ("edp",),
) -> Iterator[logging.Handler]:
    """Send the ``edp`` loggers to stderr (or ``stream``) while the command runs."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        json_formatter(command) if log_format == "json" else text_formatter(command)
    )
    saved = []
    for name in logger_names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.addHandler(handler)
        logger.setLevel(level.upper())
    try:
        yield handler
    finally:
        for logger, previous in saved:
            logger.removeHandler(handler)
            logger.setLevel(previous)
