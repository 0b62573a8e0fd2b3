"""Benchmark of the reference consumer against bare quilt3, on a moto server in this process.

Prints the time to package an N-file prefix with ``consumers.pipeline.package_prefix`` next to a
bare ``quilt3.Package().set_dir(...).push(...)`` of an identical prefix (same run, same server,
same workflow), then the time of a redelivered event for both (ours skips without re-hashing;
quilt3's ``dedupe`` hashes every object again before it compares).

    python bench/consumer.py [--files 1000] [--size 1024] [--rounds 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

GOOD_META = {
    "Author": "EDP",
    "ComputerName": "Genome Lab - 1234",
    "Date": "2022-12-08",
    "ProjectID": "YYD",
    "StudyID": "ABC-23-023394",
}
QUARANTINE = "bench-quarantine"


def fake_aws_env(workdir: pathlib.Path) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        QUILT_DISABLE_USAGE_METRICS="true",
        QUILT_MINIMIZE_STDOUT="true",
        XDG_DATA_HOME=str(workdir / "data"),
        XDG_CACHE_HOME=str(workdir / "cache"),
        XDG_CONFIG_HOME=str(workdir / "config"),
    )


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def upload_prefix(s3: Any, bucket: str, prefix: str, files: int, size: int) -> None:
    def put(index: int) -> None:
        body = (f"{prefix}{index}\n".encode() * size)[:size]
        s3.put_object(Bucket=bucket, Key=f"{prefix}data/file-{index:05d}.bin", Body=body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, range(files)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=1, help="fresh prefixes per side")
    args = parser.parse_args(argv)

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="edp-bench-"))
    fake_aws_env(workdir)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        return run(args.files, args.size, args.rounds)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(files: int, size: int, rounds: int) -> int:
    import boto3
    import quilt3

    from consumers.events import ReadyEvent
    from consumers.install_workflows import install, plan_install
    from consumers.pipeline import package_prefix
    from consumers.settings import ConsumerSettings

    s3 = boto3.client("s3")
    sns = boto3.client("sns")
    workflows = pathlib.Path(__file__).resolve().parent.parent / "workflows"

    def new_bucket(name: str, *, registry: bool = True) -> str:
        # One bucket per side and round: moto lists versions bucket-wide, so a shared bucket
        # would make later measurements slower than earlier ones.
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if registry:
            install(plan_install(workflows, name), s3)
        return name

    new_bucket(QUARANTINE, registry=False)
    topic = sns.create_topic(Name="bench-alerts")["TopicArn"]
    settings = ConsumerSettings(
        workflow="instrument",
        quarantine_bucket=QUARANTINE,
        sns_topic_arn=topic,
        quilt_url="https://quilt.example.com",
        default_metadata=GOOD_META,
    )

    def bare_quilt3(bucket: str, prefix: str) -> str:
        package = quilt3.Package().set_dir(".", f"s3://{bucket}/{prefix}")
        package.set_meta(GOOD_META)
        pushed = package.push(
            prefix.strip("/"),
            registry=f"s3://{bucket}",
            message="Created by EDP",
            workflow="instrument",
            force=True,
            dedupe=True,
        )
        return str(pushed.top_hash)

    ours_first, ours_again, bare_first, bare_again = [], [], [], []
    for round_number in range(rounds):
        prefix = "instrument/exp/"
        ours_bucket = new_bucket(f"bench-ours-{round_number}")
        bare_bucket = new_bucket(f"bench-bare-{round_number}")
        print(f"uploading 2 x {files} files of {size} bytes ...", file=sys.stderr)
        upload_prefix(s3, ours_bucket, prefix, files, size)
        upload_prefix(s3, bare_bucket, prefix, files, size)
        event = ReadyEvent(bucket=ours_bucket, prefix=prefix)
        # Alternate which side goes first, so warm-up favours neither.
        order = ["bare", "ours"] if round_number % 2 == 0 else ["ours", "bare"]
        for side in order:
            if side == "bare":
                seconds, _ = timed(lambda: bare_quilt3(bare_bucket, prefix))  # noqa: B023
                bare_first.append(seconds)
            else:
                seconds, outcome = timed(lambda: package_prefix(event, settings))  # noqa: B023
                assert outcome.status == "pushed", outcome
                ours_first.append(seconds)
        seconds, outcome = timed(lambda: package_prefix(event, settings))  # noqa: B023
        assert outcome.status == "unchanged", outcome
        ours_again.append(seconds)
        seconds, _ = timed(lambda: bare_quilt3(bare_bucket, prefix))  # noqa: B023
        bare_again.append(seconds)

    first, bare, again = (statistics.median(x) for x in (ours_first, bare_first, ours_again))
    print(
        f"files per prefix:                   {files} x {size} B (moto server, {rounds} round(s))"
    )
    print(f"bare quilt3 set_dir + push:         {bare:8.2f} s")
    print(
        f"consumer, first event:              {first:8.2f} s  ({first / bare:.0%} of bare quilt3)"
    )
    print(f"consumer, redelivered event:        {again:8.2f} s  ({again / first:.0%} of its first)")
    print(f"bare quilt3 again (dedupe=True):    {statistics.median(bare_again):8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
