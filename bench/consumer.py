"""Benchmark of the reference consumer against bare quilt3, on a moto server.

Prints the time to package an N-file prefix with ``consumers.pipeline.package_prefix`` next to a
bare ``quilt3.Package().set_dir(...).push(...)`` of an identical prefix (same run, same server,
same workflow), then the time of a redelivered event for both (ours skips without re-hashing;
quilt3's ``dedupe`` hashes every object again before it compares). moto runs in this process.

    python bench/consumer.py [--files 1000] [--size 1024] [--rounds 1] [--hashing-mode read-bytes]

``--large`` packages few large objects instead (default 16 x 64 MiB, uploaded with S3's
CRC64NVME checksum; ``--uploads`` adds buckets written with the SDK's default CRC32 or with no
checksum) three ways per bucket: the consumer with its defaults (sha2-256-chunked: S3 computes
every hash on scratch copies), bare quilt3, and the consumer with ``hash_type=CRC64NVME``. moto
runs in a process of its own (``--server thread``: in this one). For each side it prints wall
time, the time in ListObjectVersions, the CPU seconds of this process and of moto's, the bytes of
the prefix read with GetObject (the consumer's target: 0) and every S3 request by operation (all
clients: the consumer's and quilt3's), and checks each package with quilt3 against the bytes.

    python bench/consumer.py --large [--files 16] [--mib 64] [--server process|thread]
        [--uploads crc64nvme sdk-default none] [--sides sha bare crc] [--concurrency 32]
        [--py-spy DIR] [--moto-memory]
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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumers.settings import ConsumerSettings

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


def consumer_settings(topic: str, **hashing: Any) -> ConsumerSettings:
    """The reference consumer's settings for both runs (only its hashing settings differ)."""
    from consumers.settings import ConsumerSettings

    return ConsumerSettings(
        workflow="instrument",
        quarantine_bucket=QUARANTINE,
        sns_topic_arn=topic,
        quilt_url="https://quilt.example.com",
        default_metadata=GOOD_META,
        **hashing,
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
    parser.add_argument("--files", type=int, help="files per prefix (1000; 16 with --large)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=1, help="fresh prefixes per side")
    parser.add_argument("--large", action="store_true", help="few large objects (see above)")
    parser.add_argument(
        "--hashing-mode",
        choices=["s3-checksums", "read-bytes"],
        default="s3-checksums",
        help="the consumer's hashing mode in the small-files bench (default s3-checksums)",
    )
    parser.add_argument("--mib", type=int, default=64, help="MiB per object with --large")
    parser.add_argument(
        "--server",
        choices=["thread", "process"],
        help="moto in this process (ThreadedMotoServer, sharing its GIL) or in a process of its"
        " own (default: process with --large, thread otherwise)",
    )
    parser.add_argument(
        "--uploads",
        nargs="+",
        choices=UPLOADS,
        default=["crc64nvme"],
        help="with --large: how the objects are written, one bucket each (see UPLOADS)",
    )
    parser.add_argument(
        "--concurrency", type=int, help="with --large: objects and parts hashed at once (32)"
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=["sha", "bare", "crc"],
        default=["sha", "bare", "crc"],
        help="with --large: which to run (the consumer with sha2-256-chunked or CRC64NVME, bare quilt3)",
    )
    parser.add_argument(
        "--py-spy", type=pathlib.Path, help="with --large: py-spy raw profiles of each side here"
    )
    parser.add_argument(
        "--moto-memory",
        action="store_true",
        help="keep moto's object values in memory (MOTO_S3_DEFAULT_KEY_BUFFER_SIZE 1 GiB): moto"
        " otherwise spools every value over 5 MiB to a temporary file, and copies it there again"
        " for every listing, part copy and completed upload",
    )
    args = parser.parse_args(argv)
    if args.moto_memory:
        os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(1024**3)

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="edp-bench-"))
    fake_aws_env(workdir)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = args.server or ("process" if args.large else "thread")
    stop, server_pid = start_moto(server)
    try:
        if args.large:
            return run_large(
                args.files or 16,
                args.mib,
                uploads=args.uploads,
                server_pid=server_pid,
                server_label=server,
                concurrency=args.concurrency,
                profile=args.py_spy,
                sides=args.sides,
            )
        return run(args.files or 1000, args.size, args.rounds, args.hashing_mode)
    finally:
        stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_moto(how: str) -> tuple[Callable[[], None], int | None]:
    """A moto server for both sides: in this process's threads, or a ``python -m moto.server``
    of its own (its own GIL and interpreter, as S3 is to a client). Sets ``AWS_ENDPOINT_URL``;
    returns how to stop it and its process id (``None`` in this process)."""
    if how == "thread":
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        return server.stop, None
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("moto server did not start")
    os.environ["AWS_ENDPOINT_URL"] = url

    def stop() -> None:
        process.terminate()
        process.wait(timeout=30)

    return stop, process.pid


def run(files: int, size: int, rounds: int, hashing_mode: str = "s3-checksums") -> int:
    import boto3
    import quilt3

    from consumers.clients import Clients
    from consumers.events import ReadyEvent
    from consumers.install_workflows import install, plan_install
    from consumers.pipeline import package_prefix

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
    # The consumer's S3 client with botocore's default pool of 10: it hashes 10 objects at a
    # time, as quilt3's hasher does (MAX_CONCURRENCY). The moto server shares this process and
    # its cores, so more threads only contend; the Lambda's client (64) is for real S3 latency.
    clients = Clients(s3=boto3.client("s3"))
    settings = consumer_settings(topic, hashing_mode=hashing_mode)

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
                seconds, outcome = timed(lambda: package_prefix(event, settings, clients=clients))  # noqa: B023
                assert outcome.status == "pushed", outcome
                ours_first.append(seconds)
        seconds, outcome = timed(lambda: package_prefix(event, settings, clients=clients))  # noqa: B023
        assert outcome.status == "unchanged", outcome
        ours_again.append(seconds)
        seconds, _ = timed(lambda: bare_quilt3(bare_bucket, prefix))  # noqa: B023
        bare_again.append(seconds)

    first, bare, again = (statistics.median(x) for x in (ours_first, bare_first, ours_again))
    print(
        f"files per prefix:                   {files} x {size} B (moto server, {rounds} round(s),"
        f" hashing mode {hashing_mode})"
    )
    print(f"bare quilt3 set_dir + push:         {bare:8.2f} s")
    print(
        f"consumer, first event:              {first:8.2f} s  ({first / bare:.0%} of bare quilt3)"
    )
    print(f"consumer, redelivered event:        {again:8.2f} s  ({again / first:.0%} of its first)")
    print(f"bare quilt3 again (dedupe=True):    {statistics.median(bare_again):8.2f} s")
    return 0


class S3Meter:
    """Requests by operation, GetObject bytes of one prefix and seconds spent in
    ListObjectVersions, counted by botocore hooks on every client: the consumer's, and every one
    quilt3 makes (from get_boto3_session).

    The listing time is reported apart because moto deep-copies every version of the bucket it
    lists (bytes included): with large objects one listing takes seconds on moto, and
    milliseconds on S3.
    """

    def __init__(self, bucket: str, prefix: str) -> None:
        self.where = f"/{bucket}/{prefix}"
        self.bytes_read = 0
        self.listing_seconds = 0.0
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.bytes_read, self.listing_seconds, self.requests = 0, 0.0, {}

    def register(self, events: Any) -> None:
        events.register("before-call.s3", self._before)
        events.register("after-call.s3", self._after)

    def _before(self, model: Any, params: Any, context: Any, **kwargs: Any) -> None:
        context["edp_bench_started"] = time.perf_counter()
        name = model.name
        if name.startswith("List"):
            # quilt3 probes each new client with MaxKeys=1 (moto copies the whole bucket anyway)
            query = params.get("query_string", {})
            where = "probe" if str(query.get("max-keys")) == "1" else query.get("prefix", "")
            name = f"{name}({where})"
        with self._lock:
            self.requests[name] = self.requests.get(name, 0) + 1

    def _after(
        self, model: Any, http_response: Any, parsed: Any, context: Any, **kwargs: Any
    ) -> None:
        if model.name == "ListObjectVersions":
            started = context.get("edp_bench_started", time.perf_counter())
            with self._lock:
                self.listing_seconds += time.perf_counter() - started
        elif model.name == "GetObject":
            url = http_response.url.split("?")[0]
            if self.where in url and not url.endswith((".quiltignore", "metadata.json")):
                with self._lock:
                    self.bytes_read += int(parsed.get("ContentLength", 0))


def moto_storage() -> str:
    buffer = os.environ.get("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE")
    return (
        f", values in memory up to {int(buffer) // 1024**2} MiB"
        if buffer
        else ", values > 5 MiB in temporary files"
    )


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid``; this process's when ``None``."""
    if pid is None:
        return time.process_time()
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# How the large objects are written. "crc64nvme": PutObject with ChecksumAlgorithm=CRC64NVME (a
# full-object CRC64NVME). "sdk-default": a plain put_object with the client's defaults; boto3 >=
# 1.36 sends a CRC32 (request_checksum_calculation=when_supported), which S3 stores. "none": no
# checksum sent (request_checksum_calculation=when_required); S3 then stores a full-object
# CRC64NVME of its own, moto stores none (an emulator difference: see docs/hashing.md).
UPLOADS = ("crc64nvme", "sdk-default", "none")


def upload_large(s3: Any, bucket: str, prefix: str, files: int, size: int, how: str) -> None:
    import boto3
    from botocore.config import Config

    client = s3
    extra: dict[str, str] = {}
    if how == "crc64nvme":
        extra = {"ChecksumAlgorithm": "CRC64NVME"}
    elif how == "none":
        client = boto3.client("s3", config=Config(request_checksum_calculation="when_required"))

    def put(index: int) -> None:
        block = bytes((index * 7 + i) % 256 for i in range(1 << 16))
        client.put_object(
            Bucket=bucket,
            Key=f"{prefix}data/file-{index:03d}.bin",
            Body=block * (size // len(block)),
            **extra,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, range(files)))


class PySpy:
    """``py-spy record`` of a process while one side runs (raw collapsed stacks in ``folder``)."""

    def __init__(self, folder: pathlib.Path | None) -> None:
        self.folder = folder
        self.running: list[Any] = []

    def start(self, label: str, pids: dict[str, int]) -> None:
        import subprocess

        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for role, pid in pids.items():
            out = self.folder / f"{label}-{role}.txt"
            self.running.append(
                subprocess.Popen(
                    [
                        *("py-spy", "record", "--format", "raw", "-r", "50", "--threads"),
                        *("--nonblocking", "-o", str(out), "-p", str(pid)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        import signal

        for process in self.running:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        self.running = []


def run_large(
    files: int,
    mib: int,
    *,
    uploads: list[str],
    server_pid: int | None,
    server_label: str,
    concurrency: int | None = None,
    profile: pathlib.Path | None = None,
    sides: list[str] | None = None,
) -> int:
    import boto3
    import botocore.loaders
    import botocore.session
    import quilt3
    import quilt3.data_transfer
    from botocore.config import Config

    import consumers.hashing
    from consumers.clients import Clients
    from consumers.events import ReadyEvent
    from consumers.install_workflows import install, plan_install
    from consumers.pipeline import package_prefix

    if concurrency:
        consumers.hashing.HASH_CONCURRENCY = concurrency
    pool_size = max(64, concurrency or 0)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=QUARANTINE)
    topic = boto3.client("sns").create_topic(Name="bench-alerts")["TopicArn"]
    size = mib * 1024 * 1024
    prefix = "instrument/run/"
    make_session = quilt3.data_transfer.get_boto3_session
    loader = botocore.loaders.create_loader()
    meter = S3Meter("", prefix)

    def counted_session(*args: Any, **kwargs: Any) -> Any:
        # The sessions quilt3 makes (no Quilt login here: plain boto3 sessions) share one model
        # loader, as the test suite does, on both sides: otherwise each parses the S3 model again
        # (~0.3 s, several per push), a fixed cost that hides what hashing costs.
        core = botocore.session.Session()
        core.register_component("data_loader", loader)
        session = boto3.Session(botocore_session=core)
        meter.register(session.events)
        return session

    quilt3.data_transfer.get_boto3_session = counted_session  # count quilt3's own requests too
    spy = PySpy(profile)
    pids = {"client": os.getpid()}
    if server_pid is not None:
        pids["server"] = server_pid

    def bare(bucket: str) -> str:
        package = quilt3.Package().set_dir(".", f"s3://{bucket}/{prefix}")
        package.set_meta(GOOD_META)
        pushed = package.push(
            "bench/bare",
            registry=f"s3://{bucket}",
            message="Created by EDP",
            workflow="instrument",
            force=True,
        )
        return str(pushed.top_hash)

    def ours(bucket: str, hash_type: str, name: str) -> str:
        settings = consumer_settings(topic, hash_type=hash_type)
        client = boto3.client("s3", config=Config(max_pool_connections=pool_size))
        meter.register(client.meta.events)
        outcome = package_prefix(
            ReadyEvent(bucket=bucket, prefix=prefix),
            settings,
            name_for=lambda _: name,
            clients=Clients(s3=client),
        )
        assert outcome.status == "pushed", outcome
        return str(outcome.top_hash)

    print(
        f"objects: {files} x {mib} MiB = {files * mib / 1024:.2f} GiB per bucket; moto server"
        f" {server_label}{moto_storage()}; hashing concurrency {concurrency or consumers.hashing.HASH_CONCURRENCY}"
    )
    for how in uploads:
        # One bucket per upload variant: moto's listing copies the whole bucket.
        bucket = f"bench-large-{how}"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        install(
            plan_install(pathlib.Path(__file__).resolve().parent.parent / "workflows", bucket), s3
        )
        print(f"uploading {files} x {mib} MiB ({how}) ...", file=sys.stderr)
        upload_large(s3, bucket, prefix, files, size, how)
        stored = s3.get_object_attributes(
            Bucket=bucket, Key=f"{prefix}data/file-000.bin", ObjectAttributes=["Checksum"]
        ).get("Checksum", {})
        meter.where = f"/{bucket}/{prefix}"
        results = []
        runs = {
            "sha": (
                "consumer, sha2-256-chunked (S3 computes)",
                lambda: ours(bucket, "sha2-256-chunked", "bench/sha"),  # noqa: B023
                "bench/sha",
            ),
            "bare": ("bare quilt3 set_dir + push", lambda: bare(bucket), "bench/bare"),  # noqa: B023
            "crc": (
                "consumer, CRC64NVME",
                lambda: ours(bucket, "CRC64NVME", "bench/crc"),  # noqa: B023
                "bench/crc",
            ),
        }
        for label, action, name in (runs[side] for side in runs if side in (sides or runs)):
            meter.reset()
            spy.start(f"{server_label}-{how}-{name.split('/')[1]}", pids)
            cpu_before = cpu_seconds(None), cpu_seconds(server_pid) if server_pid else 0.0
            seconds, _ = timed(action)
            cpu = (
                cpu_seconds(None) - cpu_before[0],
                (cpu_seconds(server_pid) - cpu_before[1] if server_pid else 0.0),
            )
            spy.stop()
            results.append(
                (label, seconds, meter.listing_seconds, meter.bytes_read, name, cpu, meter.requests)
            )

        bare_seconds, bare_listing, bare_cpu = next(
            ((r[1], r[2], sum(r[5])) for r in results if r[4] == "bench/bare"),
            (float("nan"), 0.0, float("nan")),
        )
        checksums = ", ".join(f"{k}={v}" for k, v in sorted(stored.items())) or "none"
        print(f"\nuploads {how}: stored checksum of file-000: {checksums}")
        # CPU: this process (the clients; with --server thread, the server too) and the moto
        # server process; on a shared machine they vary less than wall time does.
        print(
            f"{'':41s} {'wall':>8s} {'vs bare':>8s} {'listing':>8s} {'w/o listing':>12s}"
            f" {'cpu here':>9s} {'cpu moto':>9s} {'cpu vs bare':>11s}  bytes read"
        )
        for label, seconds, listing, read, _, cpu, _ in results:
            print(
                f"{label:41s} {seconds:7.2f}s {seconds / bare_seconds:8.1%} {listing:7.2f}s"
                f" {(seconds - listing) / (bare_seconds - bare_listing):12.1%}"
                f" {cpu[0]:8.2f}s {cpu[1]:8.2f}s {sum(cpu) / bare_cpu:11.1%}  {read:,}"
            )
        for label, *_, requests in results:
            print(
                f"  requests, {label}: "
                + ", ".join(f"{op} {n}" for op, n in sorted(requests.items()))
            )
        for *_, name, _, _ in results:
            package = quilt3.Package.browse(name, registry=f"s3://{bucket}")
            types = sorted({entry.hash["type"] for _, entry in package.walk()})
            ok = package.verify(f"s3://{bucket}/{prefix}", extra_files_ok=True)
            print(f"  verify {name}: {ok} ({', '.join(types)})")
    quilt3.data_transfer.get_boto3_session = make_session
    return 0


if __name__ == "__main__":
    sys.exit(main())
