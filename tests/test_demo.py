"""`edp demo`: the whole pipeline, run for real, and its failure path."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

import edp.demo

pytestmark = pytest.mark.slow


def test_demo_packages_every_experiment_and_keep_leaves_the_emulator_running(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EDP_", "XDG_"))}
    result = subprocess.run(
        [sys.executable, "-m", "edp.cli", "demo", "--keep", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    out = result.stdout
    pid = int(re.search(r"moto server, pid (\d+)", out).group(1))  # type: ignore[union-attr]
    try:
        assert result.returncode == 0, out + result.stderr
        assert "Demo finished: every expected package exists." in out
        assert re.search(
            r"sequencer-a/exp-001\s+registry\s+s3://instrument-bucket\s+pushed.*ok", out
        )
        assert re.search(
            r"sequencer-a/exp-002\s+quarantine\s+s3://instrument-quarantine\s+quarantined.*ok", out
        )
        assert re.search(r"raw/sequencer-a/scratch\s+ignored\s+\(not packaged\)\s+-\s+ok", out)
        assert "trigger count" in out and "trigger duration" in out
        assert "SNS alert received" in out and "Metadata failed validation" in out
        assert "metadata: {" in out and "reads R1.fastq" in out
        # --keep: the emulator is still up and holds the packages.
        endpoint = re.search(r"export AWS_ENDPOINT_URL=(\S+)", out).group(1)  # type: ignore[union-attr]
        assert f"--endpoint-url {endpoint}" in out
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        keys = [
            o["Key"]
            for o in s3.list_objects_v2(
                Bucket="instrument-bucket", Prefix=".quilt/named_packages/"
            )["Contents"]
        ]
        assert any(k.startswith(".quilt/named_packages/sequencer-a/exp-001/") for k in keys)
    finally:
        os.kill(pid, signal.SIGTERM)


def test_demo_fails_with_the_reason_when_a_package_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(edp.demo, "run_consumer", lambda *args: None)  # nobody packages anything
    monkeypatch.setattr(edp.demo, "TIME_LIMIT", 12.0)
    out = io.StringIO()
    code = edp.demo.run_demo(workdir=str(tmp_path), out=out)
    text = out.getvalue()
    assert code == 1
    assert "DEMO FAILED" in text
    assert (
        "these packages do not exist: sequencer-a/exp-001, sequencer-a/exp-002, plate-reader/plate-17"
        in text
    )
