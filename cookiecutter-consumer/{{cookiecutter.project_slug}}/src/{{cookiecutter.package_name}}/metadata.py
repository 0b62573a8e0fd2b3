"""Metadata of each package this consumer pushes: edit it to describe your data.

Pure: it sees only the event, never AWS, so it is tested without moto. The
keys returned here are layered over ``PACKAGE_METADATA`` (the Lambda's fixed
defaults, e.g. ProjectID and StudyID); a ``metadata.json`` file inside the
prefix overrides both. The fields below fit the EDP toolkit's example
``instrument`` workflow; change them to fit your registry's workflow. Its
required ``Date`` is added by the library (``PACKAGE_DATE_KEY``, the stack's
``PackageDateKey``): the packaging date, kept while the package is unchanged.

Return only what describes the *files*, never what describes one delivery
(``batch_id``, ``count``, ``trigger``, event times). The consumer's own
``README.md`` and ``.quiltignore`` land in the prefix and come back as a new
batch; with the same files and the same metadata the package is ``unchanged``
and the loop stops there. Metadata that differs per batch would make a new
revision for every batch instead.
"""

from __future__ import annotations

from typing import Any

from consumers.events import ReadyEvent

AUTHOR = "EDP"


def package_metadata(event: ReadyEvent) -> dict[str, Any]:
    """The metadata for the package made from ``event``'s prefix."""
    return {
        "Author": AUTHOR,
        "ComputerName": instrument_of(event.prefix),
        "edp": {"source": event.s3_url},
    }


def instrument_of(prefix: str) -> str:
    """The first folder of the prefix: where the instrument writes, e.g. ``seq-01``."""
    return next((segment for segment in prefix.split("/") if segment), prefix)
