"""`edp simulate`: play an event stream through the real store and print what would be published."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from edp.core import Emission, emission_order
from edp.emitter import Emitter
from edp.errors import BadEventError
from edp.events import Parsed, parse_message
from edp.publisher import eventbridge_event

CHUNK_EVENTS = 1000  # events per store transaction; chunking does not change the output
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)  # "after the last event": every batch falls due


def read_messages(text: str) -> Iterator[tuple[int, Any]]:
    """(line number, message) pairs: JSON lines, or one JSON array spread over any lines.

    Lines are yielded as text; the caller parses each one and reports those that are not JSON.
    """
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):  # not one array (or too deep): read it line by line
            document = None
        if isinstance(document, list):
            yield from enumerate(document, start=1)
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def simulate(
    text: str,
    emitter: Emitter,
    out: IO[str],
    err: IO[str],
    *,
    account: str = "000000000000",
    region: str | None = None,
) -> int:
    """Play ``text`` through ``emitter``; print emissions to ``out`` and rejects to ``err``.

    Returns 1 when any message was rejected, else 0.
    """
    region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    rejected = 0
    pending: list[Parsed] = []
    pending_events = 0
    chunk_start: datetime | None = None
    # Within one store transaction the batches that the chunk closes keep their identities for the
    # whole chunk; a chunk shorter than the dedupe window cannot outlive any of them.
    window = timedelta(seconds=emitter.settings.dedupe_window)

    def emit(emissions: list[Emission]) -> None:
        ordered = sorted(emissions, key=emission_order)
        for emission in ordered:
            event = eventbridge_event(
                emission, account=account, region=region, rule=emitter.rule_name(emission.prefix)
            )
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
        # Printing is publishing here: the outbox records it, as `edp status` shows.
        by_time: dict[datetime, list[str]] = {}
        for emission in ordered:
            by_time.setdefault(emission.emitted_at, []).append(emission.batch_id)
        for moment, batch_ids in by_time.items():
            emitter.store.mark_published(batch_ids, moment)

    def flush() -> None:
        nonlocal pending, pending_events
        if not pending:
            return
        outcome = emitter.ingest(pending, arrived=None)
        emissions = list(outcome.emissions)
        clock = max((e.event_time for p in pending for e in p.events), default=None)
        if clock is not None:
            emissions.extend(emitter.close_due(clock))
        emit(emissions)
        pending, pending_events = [], 0

    for number, message in read_messages(text):
        try:
            parsed = parse_message(
                message, eventbridge_keys_encoded=emitter.settings.eventbridge_keys_encoded
            )
        except BadEventError as error:
            rejected += 1
            err.write(f"line {number}: {error}\n")
            continue
        first = min((e.event_time for e in parsed.events), default=None)
        last = max((e.event_time for e in parsed.events), default=None)
        if chunk_start is not None and last is not None and last - chunk_start >= window:
            flush()
            chunk_start = None
        if chunk_start is None and first is not None:
            chunk_start = first
        pending.append(parsed)
        pending_events += len(parsed.events)
        if pending_events >= CHUNK_EVENTS:
            flush()
            chunk_start = None
    flush()
    # After the last event, every open batch is emitted when it falls due.
    emit(emitter.close_due(FAR_FUTURE))
    out.flush()
    return 1 if rejected else 0
