"""`edp status`: open batches and counters, as tables or JSON."""

from __future__ import annotations

import json
from datetime import datetime
from typing import IO, Any

from edp.clock import Clock, rfc3339, utc_now
from edp.core import OpenBatch
from edp.counters import GROUPS, group_of
from edp.settings import Settings
from edp.store import PendingBatch, open_store
from edp.store.urls import redact_url

PENDING_SHOWN = 20  # batches waiting to publish listed in the table (the JSON lists 100)


def human_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h03m``, ``1d04h``; negative values are shown as ``now``."""
    if seconds < 0:
        return "now"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def batch_view(batch: OpenBatch, now: datetime) -> dict[str, Any]:
    return {
        "bucket": batch.bucket,
        "prefix": batch.prefix,
        "files": batch.count,
        "batch_id": batch.batch_id,
        "first_activity": rfc3339(batch.first_activity),
        "last_activity": rfc3339(batch.last_activity),
        "age_seconds": round((now - batch.first_activity).total_seconds(), 3),
        "due_at": rfc3339(batch.due_at) if batch.due_at else None,
        "due_in_seconds": (
            round((batch.due_at - now).total_seconds(), 3) if batch.due_at else None
        ),
    }


def pending_view(item: PendingBatch, now: datetime) -> dict[str, Any]:
    emission = item.emission
    return {
        "bucket": emission.bucket,
        "prefix": emission.prefix,
        "files": emission.count,
        "trigger": emission.trigger,
        "batch_id": emission.batch_id,
        "closed_at": rfc3339(emission.emitted_at),
        "age_seconds": round((now - emission.emitted_at).total_seconds(), 3),
        "attempts": item.attempts,
        "last_error": item.last_error,
        "last_attempt_at": rfc3339(item.last_attempt_at) if item.last_attempt_at else None,
    }


def one_line(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def show_status(settings: Settings, *, as_json: bool, out: IO[str], clock: Clock = utc_now) -> int:
    """Print what the store holds. Opens it read-only: a wrong URL is an error, never a new store."""
    store = open_store(
        settings.database_url, secret_arn=settings.database_secret_arn, read_only=True
    )
    try:
        now = clock()
        store_name = redact_url(store.url)
        batches = [batch_view(b, now) for b in store.open_batches()]
        counters = store.counters()
        pending = store.pending_count()
        waiting = [pending_view(p, now) for p in store.pending(limit=100)]
    finally:
        store.close()
    if as_json:
        json.dump(
            {
                "store": store_name,
                "now": rfc3339(now),
                "open_batches": batches,
                "pending_publish": pending,
                "waiting_to_publish": waiting,
                "counters": counters,
            },
            out,
            indent=2,
        )
        out.write("\n")
        return 0
    out.write(f"Store: {store_name}\n")
    out.write(f"Open batches: {len(batches)}   waiting to publish: {pending}\n\n")
    if batches:
        rows = [
            [
                b["bucket"],
                b["prefix"],
                str(b["files"]),
                human_seconds(b["age_seconds"]),
                human_seconds(b["due_in_seconds"]) if b["due_in_seconds"] is not None else "-",
            ]
            for b in batches
        ]
        out.write(table(["BUCKET", "PREFIX", "FILES", "AGE", "DUE IN"], rows) + "\n\n")
    if waiting:
        rows = [
            [
                w["bucket"],
                w["prefix"],
                str(w["files"]),
                human_seconds(w["age_seconds"]),
                str(w["attempts"]),
                one_line(w["last_error"]) if w["last_error"] else "-",
            ]
            for w in waiting[:PENDING_SHOWN]
        ]
        out.write("Waiting to publish (closed, not yet accepted by the bus):\n")
        headers = ["BUCKET", "PREFIX", "FILES", "AGE", "ATTEMPTS", "LAST ERROR"]
        out.write(table(headers, rows) + "\n")
        if pending > len(rows):
            out.write(f"... and {pending - len(rows)} more (--json lists up to 100)\n")
        out.write("\n")
    groups: dict[str, list[list[str]]] = {group: [] for group in GROUPS}
    for name, value in counters.items():
        group = group_of(name)
        label = name if group == "events" else f"{group} ({name.partition(':')[2]})"
        groups[group].append([label, str(value)])
    rows = [row for group in GROUPS for row in groups[group]]
    out.write(table(["COUNTER", "VALUE"], rows or [["(none yet)", "0"]]) + "\n")
    return 0
