"""Crash test: `edp run` is killed (SIGKILL) between closing a batch and recording it as sent.

After a restart on the same SQLite file the batch reaches the bus with the batch_id the outbox held
before the restart: once when the kill came before PutEvents, and (at least once delivery) a second
time, with the same batch_id, when it came after PutEvents but before the store recorded it.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import load_event
from tests.service.service_aws import Pipeline, build_pipeline
from tests.service.service_processes import HERE, EdpRun

CRASHING_RUN = HERE / "crashing_edp_run.py"


def run_args(aws: Pipeline, db_path: Path) -> list[str]:
    return aws.run_args(f"sqlite:///{db_path}", "--threshold-duration", "1")


def outbox(db_path: Path) -> list[tuple[str, int | None]]:
    """(batch_id, published_at) of every closed batch, read straight from the file."""
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT batch_id, published_at FROM outbox ORDER BY batch_id").fetchall()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("crash_at", "deliveries"),
    [("after-close", 1), ("before-put", 1), ("after-put", 2)],
)
def test_a_batch_survives_a_kill_between_closing_and_publishing(
    moto_endpoint: str,
    tmp_path: Path,
    edp_runs: list[EdpRun],
    crash_at: str,
    deliveries: int,
) -> None:
    aws = build_pipeline(moto_endpoint)
    db_path = tmp_path / "edp.sqlite"
    aws.send(load_event("s3_notification_put"))  # two files under sequencer-1/exp-7/

    doomed = EdpRun(
        run_args(aws, db_path),
        tmp_path / "doomed.log",
        script=CRASHING_RUN,
        env={"EDP_TEST_CRASH_AT": crash_at},
    )
    edp_runs.append(doomed)
    assert doomed.wait(timeout=20) == -signal.SIGKILL, doomed.stderr()

    # The events were stored (so the message was deleted) and the batch closed, not recorded sent.
    assert aws.queue_depth(aws.input_url) == 0
    ((batch_id, published_at),) = outbox(db_path)
    assert published_at is None
    before = aws.published(timeout=0.5)
    assert len(before) == (1 if crash_at == "after-put" else 0)

    restarted = EdpRun(run_args(aws, db_path), tmp_path / "restarted.log")
    edp_runs.append(restarted)
    after = aws.published(expect=1, timeout=15)
    after += aws.published(timeout=1.5)  # nothing more arrives
    restarted.process.send_signal(signal.SIGTERM)
    assert restarted.wait() == 0, restarted.stderr()

    delivered = before + after
    assert len(delivered) == deliveries, restarted.stderr()
    assert {e["detail"]["batch_id"] for e in delivered} == {batch_id}
    assert {(e["detail"]["prefix"], e["detail"]["count"]) for e in delivered} == {
        ("sequencer-1/exp-7/", 2)
    }
    ((_, published_at),) = outbox(db_path)
    assert published_at is not None
