"""Metadata of each package this consumer pushes: edit it to describe your data.

Pure: it sees only the event, never AWS, so it is tested without moto. The
keys returned here are layered over ``PACKAGE_METADATA`` (the Lambda's fixed
defaults, e.g. ProjectID and StudyID); a ``metadata.json`` file inside the
prefix overrides both. The fields below fit the EDP toolkit's example
``instrument`` workflow; change them to fit your registry's workflow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consumers.events import ReadyEvent

AUTHOR = "EDP"


def package_metadata(event: ReadyEvent) -> dict[str, Any]:
    """The metadata for the package made from ``event``'s prefix."""
    metadata: dict[str, Any] = {
        "Author": AUTHOR,
        "ComputerName": instrument_of(event.prefix),
        "edp": {
            "source": event.s3_url,
            "batch_id": event.batch_id,
            "trigger": event.trigger,
            "count": event.count,
        },
    }
    date = run_date(event)
    if date is not None:
        metadata["Date"] = date
    return metadata


def instrument_of(prefix: str) -> str:
    """The first folder of the prefix: where the instrument writes, e.g. ``seq-01``."""
    return next((segment for segment in prefix.split("/") if segment), prefix)


def run_date(event: ReadyEvent) -> str | None:
    """The day (YYYY-MM-DD, UTC) the batch's first file arrived, when the event says it."""
    moment = event.first_event_time or event.last_event_time
    if moment is None:
        return None
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).date().isoformat()
