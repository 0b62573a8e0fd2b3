"""`edp demo`: the whole pipeline on one machine, against an in-process AWS emulator.

An instrument uploads experiment folders into a bucket with EventBridge notifications; S3 events
reach an SQS queue; the emitter (`edp run`'s service) batches them and publishes
package-objects-ready events to the EDP bus; a rule sends those to a queue read by the reference
consumer, which builds, validates and pushes Quilt packages (or quarantines them and alerts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edp.errors import EdpError
from edp.settings import Settings

REGION = "us-east-1"
BUCKET = "instrument-bucket"
QUARANTINE = "instrument-quarantine"
BUS = "edp-bus"
S3_QUEUE = "edp-s3-events"
READY_QUEUE = "edp-package-objects-ready"
ALERT_QUEUE = "edp-alerts-inbox"
THRESHOLD_DURATION = 3  # seconds: short, so the demo ends in well under a minute
THRESHOLD_COUNT = 10
IGNORED = "raw/*"
TIME_LIMIT = 75.0  # seconds before the demo gives up and says what is missing
QUIET_PERIOD = 4.0  # seconds with nothing open, pending or queued: the pipeline has settled

GOOD_METADATA = {
    "Author": "EDP demo",
    "ComputerName": "Genome Lab - 1234",
    "Date": "2026-11-25",
    "ProjectID": "YYD",
    "StudyID": "ABC-23-023394",
}


@dataclass(frozen=True)
class Experiment:
    """One folder the instrument writes, and where its package should end up."""

    prefix: str
    files: dict[str, bytes]
    expect: str  # "registry", "quarantine" or "ignored"
    why: str


def experiments() -> list[Experiment]:
    bad = {k: v for k, v in GOOD_METADATA.items() if k != "StudyID"} | {"Date": "25/11/2026"}
    plate = {
        f"well-{row}{col}.csv": f"{row}{col},{ord(row) * col}\n".encode()
        for row in "AB"
        for col in range(1, 7)
    }
    return [
        Experiment(
            "sequencer-a/exp-001/",
            {
                "metadata.json": json.dumps(GOOD_METADATA).encode(),
                "reads R1.fastq": b"@r1\nACGT\n+\nFFFF\n",
                "reads R2.fastq": b"@r1\nTGCA\n+\nFFFF\n",
                "sample sheet.csv": b"sample,barcode\nS1,ACGT\n",
            },
            "registry",
            "quiet for 3 s after its last file (duration trigger)",
        ),
        Experiment(
            "sequencer-a/exp-002/",
            {
                "metadata.json": json.dumps(bad).encode(),
                "reads R1.fastq": b"@r2\nGGGG\n+\nFFFF\n",
            },
            "quarantine",
            "metadata fails the workflow: quarantined, with an SNS alert",
        ),
        Experiment(
            "raw/sequencer-a/scratch/",
            {"tmp-0001.bin": b"\x00" * 64, "tmp-0002.bin": b"\x01" * 64},
            "ignored",
            f"under the ignored prefix {IGNORED!r}: never batched",
        ),
        Experiment(
            "plate-reader/plate-17/",
            {
                "metadata.json": json.dumps(
                    GOOD_METADATA | {"ComputerName": "Plate reader 2"}
                ).encode(),
                **plate,
            },
            "registry",
            f"13 files: the count threshold ({THRESHOLD_COUNT}) closes a batch before the folder is done",
        ),
    ]


class Console:
    """Timestamped progress lines."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def say(self, who: str, text: str) -> None:
        with self.lock:
            self.out.write(f"[{time.monotonic() - self.start:5.1f}s] {who:<10} {text}\n")
            self.out.flush()


class ConsoleLogHandler(logging.Handler):
    def __init__(self, console: Console, who: str) -> None:
        super().__init__(logging.INFO)
        self.console, self.who = console, who

    def emit(self, record: logging.LogRecord) -> None:
        self.console.say(self.who, record.getMessage())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def emulator(
    endpoint_url: str | None, keep: bool, workdir: Path
) -> Iterator[tuple[str, int | None]]:
    """(endpoint, pid): the given emulator, or a moto server started here in its own process.

    A separate process keeps the emulator's request handling off this process's GIL, which the
    emitter's timer and the consumer's hashing need, and lets `--keep` leave it running.
    """
    if endpoint_url:
        yield endpoint_url, None
        return
    try:
        import moto.server  # noqa: F401
    except ImportError as err:
        raise EdpError("the demo needs moto's server: pip install -e '.[demo]'") from err
    port = free_port()
    log = (workdir / "moto.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal reaches the demo, which stops it itself
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise EdpError(f"the moto server exited at start (see {workdir / 'moto.log'})")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise EdpError("the moto server did not start within 30 s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        log.close()
        if not keep:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def point_at(endpoint: str, workdir: Path) -> dict[str, str]:
    """Environment that sends boto3, quilt3 and `edp run` to the emulator (set before quilt3 loads)."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": REGION,
        "QUILT_DISABLE_USAGE_METRICS": "true",
        "QUILT_MINIMIZE_STDOUT": "true",
        "XDG_DATA_HOME": str(workdir / "quilt-data"),
        "XDG_CACHE_HOME": str(workdir / "quilt-cache"),
        "XDG_CONFIG_HOME": str(workdir / "quilt-config"),
    }
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    return env


@dataclass
class Stack:
    """What the CloudFormation stacks would create, made directly in the emulator."""

    s3_queue_url: str
    ready_queue_url: str
    alert_queue_url: str
    edp_topic_arn: str
    alert_topic_arn: str
    workflow: str


def build_stack(client: Callable[[str], Any], workflows_dir: Path) -> Stack:
    s3, sqs, sns, events = client("s3"), client("sqs"), client("sns"), client("events")
    for bucket in (BUCKET, QUARANTINE):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    s3_url, s3_arn = queue(S3_QUEUE)
    events.put_rule(
        Name="edp-s3-object-events",
        EventPattern=json.dumps(
            {
                "source": ["aws.s3"],
                "detail-type": ["Object Created", "Object Deleted"],
                "detail": {"bucket": {"name": [BUCKET]}},
            }
        ),
    )
    events.put_targets(Rule="edp-s3-object-events", Targets=[{"Id": "buffer", "Arn": s3_arn}])
    events.create_event_bus(Name=BUS)
    ready_url, ready_arn = queue(READY_QUEUE)
    events.put_rule(
        Name="edp-package-objects-ready",
        EventBusName=BUS,
        EventPattern=json.dumps(
            {"source": ["com.quiltdata.edp"], "detail-type": ["package-objects-ready"]}
        ),
    )
    events.put_targets(
        Rule="edp-package-objects-ready",
        EventBusName=BUS,
        Targets=[{"Id": "consumer", "Arn": ready_arn}],
    )
    edp_topic = sns.create_topic(Name="edp-package-objects-ready")["TopicArn"]
    alert_topic = sns.create_topic(Name="edp-packaging-alerts")["TopicArn"]
    alert_url, alert_arn = queue(ALERT_QUEUE)
    sns.subscribe(
        TopicArn=alert_topic,
        Protocol="sqs",
        Endpoint=alert_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    from consumers.install_workflows import install, plan_install

    install(plan_install(workflows_dir, BUCKET), s3)
    import yaml

    config = yaml.safe_load((workflows_dir / "config.yml").read_text(encoding="utf-8"))
    return Stack(
        s3_url, ready_url, alert_url, edp_topic, alert_topic, str(config["default_workflow"])
    )


def find_workflows() -> Path:
    """The example workflow shipped with the toolkit (repository checkout or installed copy)."""
    import consumers

    for candidate in (
        Path(consumers.__file__).resolve().parent.parent / "workflows",
        Path(consumers.__file__).resolve().parent / "workflows",
        Path.cwd() / "workflows",
    ):
        if (candidate / "config.yml").is_file():
            return candidate
    raise EdpError("cannot find the example workflows/ folder (run the demo from a checkout)")


@dataclass
class Tally:
    """What the consumer did, by package."""

    outcomes: dict[str, list[Any]] = field(default_factory=dict)
    alerts: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_activity: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self) -> None:
        with self.lock:
            self.last_activity = time.monotonic()


def play_instrument(client: Callable[[str], Any], console: Console, done: threading.Event) -> None:
    """Upload each experiment's files a little apart, as an instrument would."""
    s3 = client("s3")
    try:
        for experiment in experiments():
            console.say(
                "instrument",
                f"writing s3://{BUCKET}/{experiment.prefix} ({len(experiment.files)} files)",
            )
            for name, body in experiment.files.items():
                s3.put_object(Bucket=BUCKET, Key=experiment.prefix + name, Body=body)
                time.sleep(0.1)
            time.sleep(0.4)
        console.say("instrument", "finished writing")
    finally:
        done.set()


def run_consumer(
    client: Callable[[str], Any],
    stack: Stack,
    console: Console,
    tally: Tally,
    stop: threading.Event,
) -> None:
    """The reference consumer: read package-objects-ready events and package each prefix."""
    from consumers.clients import Clients
    from consumers.events import parse_ready_events
    from consumers.pipeline import package_prefix
    from consumers.settings import ConsumerSettings

    settings = ConsumerSettings(
        quarantine_bucket=QUARANTINE,
        sns_topic_arn=stack.alert_topic_arn,
        quilt_url="http://localhost:3000",
        workflow=stack.workflow,
        default_metadata={},
    )
    sqs = client("sqs")
    clients = Clients(factory=client)
    while not stop.is_set():
        messages = sqs.receive_message(
            QueueUrl=stack.ready_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        for message in messages:
            tally.touch()
            for event in parse_ready_events(message["Body"]):
                console.say(
                    "consumer",
                    f"package-objects-ready s3://{event.bucket}/{event.prefix}: {event.count} file(s), trigger {event.trigger}",
                )
                try:
                    outcome = package_prefix(event, settings, clients=clients)
                except Exception as err:  # shown and counted; the demo then fails with the reason
                    tally.errors.append(f"{event.prefix}: {err}")
                    console.say("consumer", f"FAILED {event.prefix}: {err}")
                    continue
                with tally.lock:
                    tally.outcomes.setdefault(event.prefix, []).append(outcome)
                where = f"s3://{outcome.registry}"
                detail = (
                    f" ({outcome.message})"
                    if outcome.message and outcome.status != "quarantined"
                    else ""
                )
                console.say(
                    "consumer",
                    f"{outcome.status} {outcome.package_name} -> {where}"
                    f"{' @' + outcome.top_hash[:10] if outcome.top_hash else ''}{detail}",
                )
            sqs.delete_message(
                QueueUrl=stack.ready_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            tally.touch()
        alerts = sqs.receive_message(QueueUrl=stack.alert_queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        for alert in alerts:
            body = alert["Body"]
            subject = alert.get("MessageAttributes", {}).get("Subject", {}).get("StringValue", "")
            tally.alerts.append({"subject": subject, "message": body})
            console.say(
                "alert",
                "SNS alert received:\n"
                + "\n".join("             | " + line for line in body.splitlines()),
            )
            sqs.delete_message(QueueUrl=stack.alert_queue_url, ReceiptHandle=alert["ReceiptHandle"])


def package_exists(s3: Any, bucket: str, name: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=f".quilt/named_packages/{name}/latest")
    except Exception:
        return False
    return True


def run_demo(
    *,
    endpoint_url: str | None = None,
    workdir: str | None = None,
    keep: bool = False,
    out: IO[str] | None = None,
) -> int:
    out = out or sys.stdout
    console = Console(out)
    with tempfile.TemporaryDirectory(prefix="edp-demo-", ignore_cleanup_errors=True) as tmp:
        work = Path(workdir or (tempfile.mkdtemp(prefix="edp-demo-") if keep else tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        with emulator(endpoint_url, keep, work) as (endpoint, pid):
            # quilt3 prints its own lines when it pushes; keep them out of the demo's story.
            saved = dict(os.environ)
            try:
                with (work / "quilt3.log").open("a") as quiet, contextlib.redirect_stdout(quiet):
                    return _run(console, endpoint, work, keep, out, pid)
            finally:
                # The demo points this process at the emulator; leave the caller's environment as it was.
                os.environ.clear()
                os.environ.update(saved)


def _run(
    console: Console, endpoint: str, work: Path, keep: bool, out: IO[str], pid: int | None
) -> int:
    env = point_at(endpoint, work)
    started = f" (moto server, pid {pid})" if pid else ""
    console.say("demo", f"AWS emulator at {endpoint}{started}; state in {work}")
    import boto3

    session_lock = threading.Lock()

    def client(service: str) -> Any:
        with session_lock:  # boto3's default session is not thread-safe while it creates clients
            return boto3.session.Session().client(
                service, region_name=REGION, endpoint_url=endpoint
            )  # type: ignore[call-overload]

    stack = build_stack(client, find_workflows())
    console.say(
        "demo",
        f"stack ready: bucket {BUCKET} (EventBridge notifications on), rule aws.s3 -> {S3_QUEUE}, "
        f"bus {BUS} -> {READY_QUEUE}, quarantine {QUARANTINE}, workflow '{stack.workflow}' installed",
    )
    settings = Settings(
        buckets=(BUCKET,),
        ignore_patterns=(IGNORED,),
        threshold_duration=THRESHOLD_DURATION,
        threshold_count=THRESHOLD_COUNT,
        event_bus=BUS,
        sns_topic_arn=stack.edp_topic_arn,
        database_url=f"sqlite:///{work / 'edp.sqlite'}",
        eventbridge_keys_encoded=False,  # moto sends EventBridge keys unencoded
    )
    console.say(
        "demo",
        f"emitter settings: depth {settings.prefix_depth}, count {THRESHOLD_COUNT}, duration {THRESHOLD_DURATION}s, ignore {IGNORED!r}",
    )
    from edp.service import Service
    from edp.store import open_store

    store = open_store(settings.database_url)
    stop = threading.Event()
    service = Service(
        settings,
        store,
        queue_url=stack.s3_queue_url,
        sqs_client=lambda: client("sqs"),
        events_client=lambda: client("events"),
        sns_client=lambda: client("sns"),
        stop=stop,
        poll_wait=1,
        exclusive_store=True,
    )
    # The emitter's progress lines, and the consumer's warnings (its outcomes are shown below).
    loggers = {"edp.service": ("emitter", logging.INFO), "consumers": ("consumer", logging.WARNING)}
    handlers = {name: ConsoleLogHandler(console, who) for name, (who, _) in loggers.items()}
    for name, handler in handlers.items():
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(loggers[name][1])
        logging.getLogger(name).propagate = False
    tally = Tally()
    uploads_done = threading.Event()
    threads = [
        threading.Thread(target=service.run, name="edp-run", daemon=True),
        threading.Thread(
            target=run_consumer,
            args=(client, stack, console, tally, stop),
            name="consumer",
            daemon=True,
        ),
        threading.Thread(
            target=play_instrument,
            args=(client, console, uploads_done),
            name="instrument",
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        result = _wait_until_settled(console, client, store, tally, uploads_done)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        for name, handler in handlers.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).propagate = True
        store.close()
    code = _summary(console, client, tally, result, out)
    if keep:
        _keep(out, env, stack, settings, endpoint, pid)
    return code


def missing_packages(s3: Any) -> list[str]:
    """Names of the expected packages not yet in their registry (or quarantine)."""
    return [
        e.prefix.strip("/")
        for e in experiments()
        if e.expect != "ignored"
        and not package_exists(
            s3, BUCKET if e.expect == "registry" else QUARANTINE, e.prefix.strip("/")
        )
    ]


def _wait_until_settled(
    console: Console,
    client: Callable[[str], Any],
    store: Any,
    tally: Tally,
    uploads_done: threading.Event,
) -> str:
    """Watch the store until every expected package exists and nothing moves; '' or the reason."""
    s3 = client("s3")
    deadline = time.monotonic() + TIME_LIMIT
    seen_open: set[str] = set()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        for batch in store.open_batches():
            if batch.batch_id not in seen_open:
                seen_open.add(batch.batch_id)
                console.say("emitter", f"batch opened for s3://{batch.bucket}/{batch.prefix}")
        if not uploads_done.is_set():
            continue
        quiet = time.monotonic() - tally.last_activity > QUIET_PERIOD
        if (
            not missing_packages(s3)
            and quiet
            and not store.open_batches()
            and not store.pending_count()
        ):
            return ""
    missing_names = missing_packages(s3)
    if missing_names:
        return f"after {TIME_LIMIT:.0f} s these packages do not exist: {', '.join(missing_names)}"
    return f"the pipeline did not settle within {TIME_LIMIT:.0f} s (batches still opening: a packaging loop?)"


def _summary(
    console: Console, client: Callable[[str], Any], tally: Tally, failure: str, out: IO[str]
) -> int:
    import quilt3

    s3 = client("s3")
    rows = []
    problems = [failure] if failure else []
    problems += tally.errors
    for experiment in experiments():
        name = experiment.prefix.strip("/")
        outcomes = tally.outcomes.get(experiment.prefix, [])
        statuses = ", ".join(o.status for o in outcomes) or "-"
        if experiment.expect == "ignored":
            ok = not outcomes
            where = "(not packaged)"
        else:
            bucket = BUCKET if experiment.expect == "registry" else QUARANTINE
            ok = package_exists(s3, bucket, name)
            where = f"s3://{bucket}"
        if not ok:
            problems.append(f"{name}: expected {experiment.expect}, got {statuses}")
        rows.append([name, experiment.expect, where, statuses, "ok" if ok else "MISSING"])
    widths = [
        max(len(r[i]) for r in [["PACKAGE", "EXPECTED", "WHERE", "EVENTS HANDLED", "CHECK"], *rows])
        for i in range(5)
    ]
    out.write("\nSummary\n")
    for row in [["PACKAGE", "EXPECTED", "WHERE", "EVENTS HANDLED", "CHECK"], *rows]:
        out.write(
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )
    for experiment in experiments():
        out.write(f"  - {experiment.prefix}: {experiment.why}\n")
    if tally.alerts:
        out.write(f"\n{len(tally.alerts)} SNS alert(s) sent for quarantined packages.\n")
    good = next(e for e in experiments() if e.expect == "registry")
    name = good.prefix.strip("/")
    if package_exists(s3, BUCKET, name):
        package = quilt3.Package.browse(name, registry=f"s3://{BUCKET}")
        out.write(
            f"\nBrowse a package: quilt3.Package.browse({name!r}, registry='s3://{BUCKET}')\n"
        )
        for key, entry in sorted(package.walk()):
            out.write(f"  {key:<24} {entry.size:>6} bytes\n")
        out.write("  metadata: " + json.dumps(package.meta, sort_keys=True) + "\n")
    if problems:
        out.write("\nDEMO FAILED:\n" + "".join(f"  - {p}\n" for p in problems))
        return 1
    out.write("\nDemo finished: every expected package exists.\n")
    return 0


def _keep(
    out: IO[str],
    env: dict[str, str],
    stack: Stack,
    settings: Settings,
    endpoint: str,
    pid: int | None,
) -> None:
    out.write("\nThe emulator keeps running. Point boto3, quilt3 and `edp run` at it with:\n\n")
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "QUILT_DISABLE_USAGE_METRICS",
    ):
        out.write(f"  export {name}={env[name]}\n")
    out.write(
        f"\n  edp run --queue-url {stack.s3_queue_url} --endpoint-url {endpoint} --bucket {BUCKET} "
        f"--event-bus {BUS} --eventbridge-keys-unencoded --threshold-duration {THRESHOLD_DURATION} "
        f"--db {settings.database_url}\n"
        f"  python -c \"import quilt3; print(list(quilt3.list_packages('s3://{BUCKET}')))\"\n"
    )
    if pid:
        out.write(
            f"\nThe emulator (moto server, pid {pid}) keeps running; stop it with: kill {pid}\n"
        )
    out.flush()
