"""`edp demo`: the whole pipeline, run for real; its verdict, its emulator checks, and --keep."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

import edp.demo
from edp.demo import PROBE_KEY, Probe, Tally, probe_findings, summary_rows


def eventbridge(key: str, **obj: str) -> dict[str, Any]:
    return {"detail-type": "Object Created", "detail": {"object": {"key": key, **obj}}}


def test_probe_reads_aws_shaped_events_as_encoded_with_reliable_ids() -> None:
    encoded = quote_plus(PROBE_KEY, safe="/")
    assert encoded != PROBE_KEY
    found = [eventbridge(encoded, sequencer="0062"), eventbridge(encoded, sequencer="0063")]
    assert probe_findings(found) == Probe(keys_encoded=True, ids_reliable=True)
    versioned = [
        eventbridge(encoded, sequencer="0062", **{"version-id": "v1"}),
        eventbridge(encoded, sequencer="0062", **{"version-id": "v2"}),
    ]
    assert probe_findings(versioned).ids_reliable


def test_probe_reads_moto_shaped_events_as_raw_with_constant_ids() -> None:
    same = {"sequencer": "0055AED6DCD90281E5", "version-id": "null"}
    found = [eventbridge(PROBE_KEY, **same), eventbridge(PROBE_KEY, **same)]
    probe = probe_findings(found)
    assert probe == Probe(keys_encoded=False, ids_reliable=False)
    assert "--eventbridge-keys-unencoded" in probe.describe()[0]
    assert "--event-ids-unreliable" in probe.describe()[1]


def test_the_verdict_and_the_table_come_from_the_same_rows() -> None:
    """A package found in its place with the right outcome is ok in the table and in the verdict."""

    class S3:
        def __init__(self, present: set[str]) -> None:
            self.present = present

        def head_object(self, Bucket: str, Key: str) -> None:
            if f"{Bucket}/{Key}" not in self.present:
                raise KeyError(Key)

    class Outcome:
        def __init__(self, status: str) -> None:
            self.status = status

    tally = Tally()
    tally.outcomes = {
        "sequencer-a/exp-001/": [Outcome("pushed"), Outcome("unchanged")],
        "sequencer-a/exp-002/": [Outcome("quarantined")],
    }
    present = {
        "instrument-bucket/.quilt/named_packages/sequencer-a/exp-001/latest",
        "instrument-quarantine/.quilt/named_packages/sequencer-a/exp-002/latest",
    }
    rows = {row.name: row for row in summary_rows(S3(present), tally)}
    assert rows["sequencer-a/exp-002"].ok and not rows["sequencer-a/exp-002"].problem
    assert rows["sequencer-a/exp-001"].statuses == "pushed, unchanged"
    assert rows["raw/sequencer-a/scratch"].ok
    plate = rows["plate-reader/plate-17"]
    assert not plate.ok and "no package in s3://instrument-bucket" in plate.problem


@pytest.mark.slow
def test_demo_packages_every_experiment_and_keep_keeps_the_pipeline_running(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EDP_", "XDG_"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "edp.cli", "demo", "--keep", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    lines: list[str] = []
    stdout = demo.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()

    def wait_for(pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, "".join(lines)):
            assert time.monotonic() < deadline and demo.poll() is None, "".join(lines)
            time.sleep(0.2)

    try:
        wait_for(r"edp run --queue-url", 150)
        out = "".join(lines)
        assert "Demo finished: every expected package exists." in out
        assert "pipeline settled: yes" in out
        assert re.search(
            r"sequencer-a/exp-001\s+registry\s+s3://instrument-bucket\s+pushed, unchanged\s+ok", out
        )
        assert re.search(
            r"sequencer-a/exp-002\s+quarantine\s+s3://instrument-quarantine\s+quarantined.*ok", out
        )
        assert re.search(r"raw/sequencer-a/scratch\s+ignored\s+\(not packaged\)\s+-\s+ok", out)
        # 13 files: the count batch and the rest may be one revision or two ("pushed, pushed").
        assert re.search(
            r"plate-reader/plate-17\s+registry\s+s3://instrument-bucket\s+pushed(, (pushed|unchanged))+\s+ok",
            out,
        )
        assert "trigger count" in out and "trigger duration" in out
        assert "SNS alert received" in out and "Metadata failed validation" in out
        assert "metadata: {" in out and "reads R1.fastq" in out
        assert "emulator check: EventBridge S3 keys arrive raw" in out  # moto
        # The printed `edp run` line carries every flag the demo's emitter runs with.
        run_line = re.search(r"  edp run (.*)", out)
        assert run_line is not None, out
        command = run_line.group(1)
        for flag in ("--threshold-count 10", "--ignore 'raw/*'", "--sns-topic-arn arn:aws:sns:"):
            assert flag in command
        assert "--eventbridge-keys-unencoded" in command and "--event-ids-unreliable" in command
        # --keep: upload a new folder as a user would, and watch its package appear.
        export_line = re.search(r"export AWS_ENDPOINT_URL=(\S+)", out)
        assert export_line is not None, out
        endpoint = export_line.group(1)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
        )
        metadata = json.dumps(edp.demo.GOOD_METADATA).encode()
        for name, body in {"metadata.json": metadata, "data.csv": b"a,b\n1,2\n"}.items():
            s3.put_object(Bucket="instrument-bucket", Key=f"my-lab/exp-1/{name}", Body=body)
        wait_for(r"pushed my-lab/exp-1 -> s3://instrument-bucket", 60)
        s3.head_object(Bucket="instrument-bucket", Key=".quilt/named_packages/my-lab/exp-1/latest")
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
        reader.join(timeout=10)


@pytest.mark.slow
def test_demo_fails_with_the_reason_when_nothing_is_packaged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(edp.demo, "run_consumer", lambda *args: None)  # nobody packages anything
    monkeypatch.setattr(edp.demo, "TIME_LIMIT", 15.0)
    out = io.StringIO()
    code = edp.demo.run_demo(workdir=str(tmp_path), out=out)
    text = out.getvalue()
    assert code == 1
    verdict = text[text.index("DEMO FAILED") :]
    assert "the pipeline did not settle within 15 s" in verdict
    assert "queue edp-package-objects-ready holds" in verdict  # the ready events nobody read
    assert (
        "these packages do not exist: sequencer-a/exp-001, sequencer-a/exp-002, plate-reader/plate-17"
        in verdict
    )
    assert "pipeline settled: no" in text
