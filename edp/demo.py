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
import shlex
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
from urllib.parse import unquote_plus

from edp.errors import EdpError

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
QUIET_PERIOD = 3.0  # seconds with nothing open, pending, queued or being packaged: settled
PROBE_BUCKET = "edp-demo-probe"
PROBE_QUEUE = "edp-demo-probe-events"
PROBE_KEY = "probe/a b+c.txt"  # a space and a plus: raw and URL-encoded keys differ
PROBE_WAIT = 15.0  # seconds to wait for the probe's S3 events to come through EventBridge

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
def emulator(endpoint_url: str | None, workdir: Path) -> Iterator[tuple[str, int | None]]:
    """(endpoint, pid): the given emulator, or a moto server started here in its own process
    (stopped when the demo ends; with --keep that is at Ctrl-C).

    A separate process keeps the emulator's request handling off this process's GIL, which the
    emitter's timer and the consumer's hashing need.
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


ALREADY_THERE = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists", "ResourceAlreadyExistsException")


def already(create: Callable[..., Any], **kwargs: Any) -> None:
    """Create something that a previous demo on the same emulator may have created already."""
    try:
        create(**kwargs)
    except Exception as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code")
        if code not in ALREADY_THERE:
            raise


def build_stack(client: Callable[[str], Any], workflows_dir: Path) -> Stack:
    s3, sqs, sns, events = client("s3"), client("sqs"), client("sns"), client("events")
    for bucket in (BUCKET, QUARANTINE):
        already(s3.create_bucket, Bucket=bucket)
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
    already(events.create_event_bus, Name=BUS)
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
    busy: int = 0  # messages the consumer has received and not finished with
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Probe:
    """How the emulator's S3 -> EventBridge events differ from AWS's (found by writing a key)."""

    keys_encoded: bool  # AWS URL-encodes keys in EventBridge S3 events; moto does not
    ids_reliable: bool  # distinct writes to one key carry distinct sequencers or version ids

    def describe(self) -> list[str]:
        return [
            "EventBridge S3 keys arrive URL-encoded, as on AWS"
            if self.keys_encoded
            else "EventBridge S3 keys arrive raw, not URL-encoded as on AWS "
            "(so: --eventbridge-keys-unencoded)",
            "two writes to one key carried different sequencers or version ids, as on AWS"
            if self.ids_reliable
            else "two writes to one key carried the same sequencer, version id and event id "
            "(so: --event-ids-unreliable, or the second write would count as a duplicate)",
        ]


def probe_emulator(client: Callable[[str], Any]) -> Probe:
    """Write one key twice into a probe bucket and read the two events EventBridge delivers."""
    s3, sqs, events = client("s3"), client("sqs"), client("events")
    already(s3.create_bucket, Bucket=PROBE_BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=PROBE_BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    url = sqs.create_queue(QueueName=PROBE_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="edp-demo-probe",
        EventPattern=json.dumps(
            {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [PROBE_BUCKET]}},
            }
        ),
    )
    events.put_targets(Rule="edp-demo-probe", Targets=[{"Id": "probe", "Arn": arn}])
    for body in (b"first write", b"second, different write"):
        s3.put_object(Bucket=PROBE_BUCKET, Key=PROBE_KEY, Body=body)
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + PROBE_WAIT
    while len(found) < 2 and time.monotonic() < deadline:
        for message in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            event = json.loads(message["Body"])
            if event.get("detail-type") == "Object Created":
                found.append(event)
    if len(found) < 2:
        raise EdpError(
            f"the emulator delivered {len(found)} of the 2 S3 events expected through "
            f"EventBridge within {PROBE_WAIT:.0f} s: it must support S3 EventBridge "
            "notifications and rules with SQS targets"
        )
    return probe_findings(found)


def probe_findings(found: list[dict[str, Any]]) -> Probe:
    """What two EventBridge events for two distinct writes of PROBE_KEY say about the emulator."""
    raw_keys = {event["detail"]["object"]["key"] for event in found}
    if raw_keys == {PROBE_KEY}:
        encoded = False
    elif {unquote_plus(k) for k in raw_keys} == {PROBE_KEY}:
        encoded = True
    else:
        raise EdpError(f"the probe key {PROBE_KEY!r} arrived as {sorted(raw_keys)}")

    def ids(event: dict[str, Any]) -> tuple[Any, ...]:
        target = event["detail"]["object"]
        version = target.get("version-id")
        return (target.get("sequencer"), None if version == "null" else version)

    # Trust them when they tell the two writes apart: a sequencer that varies, or a version id.
    return Probe(keys_encoded=encoded, ids_reliable=ids(found[0]) != ids(found[1]))


def pipeline_unsettled(
    sqs: Any, stack: Stack, store: Any, tally: Tally, uploads_done: threading.Event
) -> list[str]:
    """Why the pipeline is not settled yet; empty when it is: the instrument finished, no batch is
    open or waiting to publish, every queue of the pipeline is empty (visible and in flight), and
    the consumer is idle."""
    reasons = [] if uploads_done.is_set() else ["the instrument is still writing"]
    if store.open_batches():
        reasons.append(f"{len(store.open_batches())} batch(es) open")
    if store.pending_count():
        reasons.append(f"{store.pending_count()} batch(es) waiting to publish")
    for name, url in (
        (S3_QUEUE, stack.s3_queue_url),
        (READY_QUEUE, stack.ready_queue_url),
        (ALERT_QUEUE, stack.alert_queue_url),
    ):
        counts = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        queued = int(counts["ApproximateNumberOfMessages"]) + int(
            counts["ApproximateNumberOfMessagesNotVisible"]
        )
        if queued:
            reasons.append(f"queue {name} holds {queued} message(s)")
    if tally.busy:
        reasons.append("the consumer is packaging")
    return reasons


@dataclass(frozen=True)
class Row:
    """One line of the summary table, and whether it is what the experiment expects."""

    name: str
    expect: str
    where: str
    statuses: str
    ok: bool
    problem: str = ""


def summary_rows(s3: Any, tally: Tally) -> list[Row]:
    """The facts the table shows and the verdict is drawn from (read once, used for both)."""
    rows = []
    for experiment in experiments():
        name = experiment.prefix.strip("/")
        with tally.lock:
            statuses = [o.status for o in tally.outcomes.get(experiment.prefix, [])]
        shown = ", ".join(statuses) or "-"
        if experiment.expect == "ignored":
            ok, where = not statuses, "(not packaged)"
            problem = "" if ok else f"{name}: expected to be ignored, got {shown}"
        else:
            bucket = BUCKET if experiment.expect == "registry" else QUARANTINE
            where = f"s3://{bucket}"
            # On an emulator that already holds the package (a second run), `unchanged` is right.
            wanted = "pushed" if experiment.expect == "registry" else "quarantined"
            accepted = {"pushed", "unchanged"} if experiment.expect == "registry" else {wanted}
            exists = package_exists(s3, bucket, name)
            ok = exists and bool(accepted & set(statuses))
            problem = (
                ""
                if ok
                else f"{name}: expected {experiment.expect} ({wanted}), got {shown}"
                + ("" if exists else f"; no package in {where}")
            )
        rows.append(Row(name, experiment.expect, where, shown, ok, problem))
    return rows


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
        with tally.lock:
            tally.busy += len(messages)
        for message in messages:
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
            with tally.lock:
                tally.busy -= 1
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
        with emulator(endpoint_url, work) as (endpoint, pid):
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
    from edp_common.clients import make_client

    def client(service: str) -> Any:
        return make_client(service, region=REGION, endpoint_url=endpoint)

    probe = probe_emulator(client)
    for finding in probe.describe():
        console.say("demo", f"emulator check: {finding}")
    stack = build_stack(client, find_workflows())
    console.say(
        "demo",
        f"stack ready: bucket {BUCKET} (EventBridge notifications on), rule aws.s3 -> {S3_QUEUE}, "
        f"bus {BUS} -> {READY_QUEUE}, quarantine {QUARANTINE}, workflow '{stack.workflow}' installed",
    )
    # The emitter is configured exactly as `edp run` with these flags would be (printed by --keep).
    run_args = emitter_args(stack, endpoint, work, probe)
    from edp.cli import build_parser, settings_from_args

    settings = settings_from_args(build_parser().parse_args(["run", *run_args]))
    console.say(
        "demo",
        f"emitter settings: depth {settings.prefix_depth}, count {THRESHOLD_COUNT}, duration {THRESHOLD_DURATION}s, ignore {IGNORED!r}",
    )
    from edp.run import stop_on_signals
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
        settle_failure = _wait_until_settled(console, client, stack, store, tally, uploads_done)
        code = _summary(client, tally, settle_failure, out)
        if keep:
            _keep(out, env, stack, run_args, pid)
            with stop_on_signals(stop):
                watch_batches(console, store, stop, set())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        for name, handler in handlers.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).propagate = True
        store.close()
    return code


def emitter_args(stack: Stack, endpoint: str, work: Path, probe: Probe) -> list[str]:
    """The `edp run` arguments of the demo's emitter (used to configure it, and printed)."""
    args = [
        "--queue-url",
        stack.s3_queue_url,
        "--endpoint-url",
        endpoint,
        "--region",
        REGION,
        "--poll-wait",
        "1",
        "--bucket",
        BUCKET,
        "--ignore",
        IGNORED,
        "--threshold-count",
        str(THRESHOLD_COUNT),
        "--threshold-duration",
        str(THRESHOLD_DURATION),
        "--event-bus",
        BUS,
        "--sns-topic-arn",
        stack.edp_topic_arn,
        "--db",
        f"sqlite:///{work / 'edp.sqlite'}",
    ]
    if not probe.keys_encoded:
        args.append("--eventbridge-keys-unencoded")
    if not probe.ids_reliable:
        args.append("--event-ids-unreliable")
    return args


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


def watch_batches(
    console: Console, store: Any, stop: threading.Event, seen: set[str], until: float | None = None
) -> None:
    """Say when a batch opens, until ``stop`` is set (or ``until``, a monotonic time)."""
    while not stop.is_set() and (until is None or time.monotonic() < until):
        for batch in store.open_batches():
            if batch.batch_id not in seen:
                seen.add(batch.batch_id)
                console.say("emitter", f"batch opened for s3://{batch.bucket}/{batch.prefix}")
        stop.wait(0.25)


def _wait_until_settled(
    console: Console,
    client: Callable[[str], Any],
    stack: Stack,
    store: Any,
    tally: Tally,
    uploads_done: threading.Event,
) -> str:
    """Wait until the pipeline has settled and stayed so for QUIET_PERIOD; '' or why not."""
    sqs = client("sqs")
    deadline = time.monotonic() + TIME_LIMIT
    seen_open: set[str] = set()
    settled_since: float | None = None
    reasons: list[str] = []
    never = threading.Event()
    while time.monotonic() < deadline:
        watch_batches(console, store, never, seen_open, until=time.monotonic() + 0.25)
        reasons = pipeline_unsettled(sqs, stack, store, tally, uploads_done)
        if reasons:
            settled_since = None
        elif settled_since is None:
            settled_since = time.monotonic()
        elif time.monotonic() - settled_since >= QUIET_PERIOD:
            return ""
    return f"the pipeline did not settle within {TIME_LIMIT:.0f} s: " + (
        "; ".join(reasons) or "it settled only just now"
    )


def _summary(client: Callable[[str], Any], tally: Tally, failure: str, out: IO[str]) -> int:
    import quilt3

    s3 = client("s3")
    rows = summary_rows(s3, tally)  # the table and the verdict both come from these
    problems = [failure] if failure else []
    missing = [r.name for r in rows if r.expect != "ignored" and "no package in" in r.problem]
    if missing:
        problems.append(f"these packages do not exist: {', '.join(missing)}")
    problems += [r.problem for r in rows if r.problem]
    problems += tally.errors
    headers = ["PACKAGE", "EXPECTED", "WHERE", "EVENTS HANDLED", "CHECK"]
    cells = [[r.name, r.expect, r.where, r.statuses, "ok" if r.ok else "FAILED"] for r in rows]
    widths = [max(len(r[i]) for r in [headers, *cells]) for i in range(5)]
    out.write("\nSummary\n")
    for row in [headers, *cells]:
        out.write(
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )
    for experiment in experiments():
        out.write(f"  - {experiment.prefix}: {experiment.why}\n")
    out.write(
        "  pipeline settled: "
        + ("no" if failure else "yes (no batch open or waiting, every queue empty, consumer idle)")
        + "\n"
    )
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
        out.flush()
        return 1
    out.write("\nDemo finished: every expected package exists.\n")
    out.flush()
    return 0


def _keep(
    out: IO[str], env: dict[str, str], stack: Stack, run_args: list[str], pid: int | None
) -> None:
    endpoint = env["AWS_ENDPOINT_URL"]
    out.write(
        "\n--keep: the emulator, the emitter and the consumer keep running until Ctrl-C.\n"
        "In another terminal, point the AWS CLI, boto3 and quilt3 at the emulator (any non-empty "
        "fake credentials do):\n\n"
    )
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "QUILT_DISABLE_USAGE_METRICS",
    ):
        out.write(f"  export {name}={shlex.quote(env[name])}\n")
    meta = shlex.quote(json.dumps(GOOD_METADATA))
    out.write(
        "\nthen upload a folder and watch its package appear here (a folder needs a metadata.json "
        "the workflow accepts, or it is quarantined):\n\n"
        "  mkdir -p my-exp && echo 'a,b' > my-exp/data.csv && "
        f"echo {meta} > my-exp/metadata.json\n"
        f"  aws s3 cp --recursive my-exp s3://{BUCKET}/my-lab/exp-1/\n"
        f"  python -c \"import quilt3; print(list(quilt3.list_packages('s3://{BUCKET}')))\"\n"
        f"\nThe emitter running here is `edp run` with these flags (after Ctrl-C, against an "
        f"emulator still at {endpoint}):\n\n  edp run {shlex.join(run_args)}\n"
        f"\nThe consumer reads {stack.ready_queue_url} and packages with the workflow "
        f"'{stack.workflow}', quarantining to s3://{QUARANTINE} with alerts to "
        f"{stack.alert_topic_arn}.\n"
    )
    if pid:
        out.write(f"The emulator is a moto server (pid {pid}); Ctrl-C stops it too.\n")
    out.flush()
