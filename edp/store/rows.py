"""Rows <-> models for the SQL backends: the same columns, in the same order, everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edp.core import Emission, OpenBatch
from edp.store.base import PendingBatch
from edp.store.timecodec import from_micros, opt_from_micros, opt_micros, to_micros

BATCH_COLUMNS = (
    "bucket, prefix, batch_id, count, changed, first_activity, last_activity, "
    "first_event_time, last_event_time, due_at"
)
OUTBOX_COLUMNS = (
    "batch_id, bucket, prefix, count, trigger, emitted_at, first_event_time, last_event_time"
)


def batch_row(batch: OpenBatch) -> tuple[Any, ...]:
    return (
        batch.bucket,
        batch.prefix,
        batch.batch_id,
        batch.count,
        int(batch.changed),
        to_micros(batch.first_activity),
        to_micros(batch.last_activity),
        to_micros(batch.first_event_time),
        to_micros(batch.last_event_time),
        opt_micros(batch.due_at),
    )


def batch_from_row(row: Sequence[Any]) -> OpenBatch:
    return OpenBatch(
        bucket=row[0],
        prefix=row[1],
        batch_id=row[2],
        count=row[3],
        changed=bool(row[4]),
        first_activity=from_micros(row[5]),
        last_activity=from_micros(row[6]),
        first_event_time=from_micros(row[7]),
        last_event_time=from_micros(row[8]),
        due_at=opt_from_micros(row[9]),
    )


def emission_row(emission: Emission) -> tuple[Any, ...]:
    return (
        emission.batch_id,
        emission.bucket,
        emission.prefix,
        emission.count,
        emission.trigger,
        to_micros(emission.emitted_at),
        to_micros(emission.first_event_time),
        to_micros(emission.last_event_time),
    )


def emission_from_row(row: Sequence[Any]) -> Emission:
    return Emission(
        batch_id=row[0],
        bucket=row[1],
        prefix=row[2],
        count=row[3],
        trigger=row[4],
        emitted_at=from_micros(row[5]),
        first_event_time=from_micros(row[6]),
        last_event_time=from_micros(row[7]),
    )


def pending_select(has_failures: bool) -> str:
    """The SELECT of a pending-batches query: the outbox's unpublished rows with their publish
    failures, when the store has that table (one written before it existed has not)."""
    columns = ", ".join("o." + c.strip() for c in OUTBOX_COLUMNS.split(","))
    if has_failures:
        return (
            f"SELECT {columns}, f.attempts, f.last_error, f.last_attempt_at FROM outbox o "
            "LEFT JOIN publish_failures f ON f.batch_id = o.batch_id WHERE o.published_at IS NULL"
        )
    return f"SELECT {columns}, NULL, NULL, NULL FROM outbox o WHERE o.published_at IS NULL"


def pending_from_row(row: Sequence[Any]) -> PendingBatch:
    """A row of :func:`pending_select` as a PendingBatch."""
    return PendingBatch(
        emission_from_row(row[:-3]),
        attempts=row[-3] or 0,
        last_error=row[-2],
        last_attempt_at=opt_from_micros(row[-1]),
    )
