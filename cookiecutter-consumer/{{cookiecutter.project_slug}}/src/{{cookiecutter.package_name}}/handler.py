"""Lambda entry point: package every package-objects-ready batch of the event with Quilt.

Thin on purpose: parse the event, call the consumers library, shape the reply.
What goes into each package is decided in ``metadata.py``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from consumers.events import parse_ready_events
from consumers.pipeline import package_prefix
from consumers.settings import ConsumerSettings

from {{ cookiecutter.package_name }}.metadata import package_metadata

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Package each batch; a failure raises, so Lambda retries and then dead-letters the event."""
    settings = ConsumerSettings.from_env()
    packages = []
    for ready in parse_ready_events(event):
        outcome = asdict(package_prefix(ready, settings, metadata=package_metadata))
        logger.info("batch handled", extra={"outcome": outcome})
        packages.append(outcome)
    return {"packages": packages}
