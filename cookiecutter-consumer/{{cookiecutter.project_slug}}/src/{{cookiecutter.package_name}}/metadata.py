"""Metadata of each package this consumer pushes: edit this to describe your data.

Pure: it sees only the event, never AWS, so it is tested without moto. Keys set
here override ``PACKAGE_METADATA`` (the Lambda's defaults); a ``metadata.json``
file inside the prefix overrides both.
"""

from __future__ import annotations

from typing import Any

from consumers.events import ReadyEvent


def package_metadata(event: ReadyEvent) -> dict[str, Any]:
    """The metadata for the package made from ``event``'s prefix."""
    metadata: dict[str, Any] = {
        "source": event.s3_url,
        "edp": {"batch_id": event.batch_id, "trigger": event.trigger, "count": event.count},
    }
    if event.last_event_time:
        metadata["edp"]["last_event_time"] = event.last_event_time
    return metadata
