"""The `edp` command line: simulate, run, backfill, status, redrive and demo."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from edp import __version__
from edp.errors import EdpError, SettingsError
from edp.logs import LOG_FORMATS, LOG_LEVELS
from edp.settings import Settings

EXIT_USAGE = 2


def aws_hint(command: str | None) -> str:
    """What to check after an AWS error, naming only flags ``command`` has."""
    region = (
        "AWS_DEFAULT_REGION (or --region)"
        if command in ("run", "redrive")
        else "AWS_DEFAULT_REGION"
    )
    endpoint = "--endpoint-url" if command in ("run", "redrive", "demo") else "AWS_ENDPOINT_URL"
    return f"edp: check {region}, your credentials, and {endpoint} for an emulator"


SETTINGS_HELP = """\
Settings come from flags, else from env vars (EDP_BUCKET_NAME, EDP_BUCKET_IGNORE_PREFIXES,
EDP_BUCKET_PREFIX_DEPTH, EDP_BUCKET_THRESHOLD_DURATION, EDP_BUCKET_THRESHOLD_EVENT_COUNT,
EDP_EVENT_BUS_NAME, EDP_SNS_TOPIC_ARN, EDP_DATABASE_URL, EDP_MARKER_FILES,
EDP_BUCKET_THRESHOLD_MAX_AGE, EDP_DEDUPE_WINDOW, EDP_EVENTBRIDGE_KEYS_ENCODED,
EDP_EVENT_IDS_RELIABLE, EDP_RULES), else defaults.
"""


def _settings_flags(parser: argparse.ArgumentParser, *, db_help: str) -> None:
    group = parser.add_argument_group("batching settings")
    group.add_argument(
        "--bucket",
        action="append",
        metavar="NAME",
        help="only watch this bucket (repeatable; default: every bucket) [EDP_BUCKET_NAME]",
    )
    group.add_argument(
        "--ignore",
        metavar="GLOBS",
        help="comma-separated key patterns to ignore, e.g. 'raw/*,scratch/*' (no wildcard: "
        "a plain prefix) [EDP_BUCKET_IGNORE_PREFIXES]",
    )
    group.add_argument(
        "--prefix-depth",
        metavar="N",
        help="directory segments that make the common prefix (default 2) [EDP_BUCKET_PREFIX_DEPTH]",
    )
    group.add_argument(
        "--threshold-duration",
        metavar="SECONDS",
        help="emit a batch this long after its last event (default 300) "
        "[EDP_BUCKET_THRESHOLD_DURATION]",
    )
    group.add_argument(
        "--threshold-count",
        metavar="N",
        help="emit a batch once it holds this many new files (default 20) "
        "[EDP_BUCKET_THRESHOLD_EVENT_COUNT]",
    )
    group.add_argument(
        "--marker-files",
        metavar="GLOBS",
        help="emit at once when a file with this name arrives, e.g. '_SUCCESS,manifest.json' "
        "(default: off) [EDP_MARKER_FILES]",
    )
    group.add_argument(
        "--max-age",
        metavar="SECONDS",
        help="emit a batch this long after its first event even if it never goes quiet "
        "(default: off) [EDP_BUCKET_THRESHOLD_MAX_AGE]",
    )
    group.add_argument(
        "--dedupe-window",
        metavar="SECONDS",
        help="recognise duplicate deliveries this long after their batch is emitted "
        "(default 86400) [EDP_DEDUPE_WINDOW]",
    )
    group.add_argument(
        "--eventbridge-keys-unencoded",
        action="store_true",
        default=None,
        help="EventBridge input carries raw keys (some emulators); do not URL-decode them "
        "[EDP_EVENTBRIDGE_KEYS_ENCODED=false]",
    )
    group.add_argument(
        "--event-ids-unreliable",
        action="store_true",
        default=None,
        help="the input's sequencers, version ids and event ids do not tell writes apart (some "
        "emulators send the same ones for every write): take no event for a duplicate or stale "
        "[EDP_EVENT_IDS_RELIABLE=false]",
    )
    group.add_argument("--event-bus", metavar="NAME", help="bus to publish to [EDP_EVENT_BUS_NAME]")
    group.add_argument(
        "--sns-topic-arn", metavar="ARN", help="also publish to this topic [EDP_SNS_TOPIC_ARN]"
    )
    group.add_argument(
        "--rules",
        metavar="FILE",
        help="rules per key prefix (YAML or JSON; a path or s3://bucket/key): depth and "
        "thresholds per instrument, see docs/rules.md [EDP_RULES]",
    )
    group.add_argument("--db", metavar="URL", help=db_help)


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {
        "buckets": tuple(args.bucket) if args.bucket else None,
        "ignore_patterns": args.ignore,
        "prefix_depth": args.prefix_depth,
        "threshold_duration": args.threshold_duration,
        "threshold_count": args.threshold_count,
        "marker_files": args.marker_files,
        "max_age": args.max_age,
        "dedupe_window": args.dedupe_window,
        "event_bus": args.event_bus,
        "sns_topic_arn": args.sns_topic_arn,
        "database_url": args.db,
        "eventbridge_keys_encoded": False if args.eventbridge_keys_unencoded else None,
        "event_ids_reliable": False if args.event_ids_unreliable else None,
        "rules": args.rules,
    }
    overrides.update(extra)
    if isinstance(overrides["buckets"], tuple):
        # `--bucket a,b` works like the env var.
        overrides["buckets"] = tuple(
            part.strip()
            for item in overrides["buckets"]
            for part in item.split(",")
            if part.strip()
        )
    return Settings.from_sources(**overrides)


def endpoint_url(value: str | None) -> str | None:
    """``--endpoint-url`` must be an http(s) URL with a host; checked before any client exists."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            "--endpoint-url", value, "an http:// or https:// URL, e.g. http://127.0.0.1:5000"
        )
    return value


def _aws_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        help="AWS endpoint for an emulator (moto, LocalStack...), e.g. http://127.0.0.1:5000",
    )
    parser.add_argument("--region", help="AWS region (default: from the environment)")


def _log_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines with a level (default), or JSON lines in Powertools' Logger shape "
        "for CloudWatch or Loki",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, help="least severe level shown (default info)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edp",
        description="Group S3 object events into per-prefix batches and publish one "
        "package-objects-ready event per batch (Quilt EDP compatible).",
        epilog="Run 'edp COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"edp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sim = sub.add_parser(
        "simulate",
        help="play an event stream offline and print what would be published",
        description="Play S3 events (JSON lines, a JSON array, or pretty-printed JSON objects; any "
        "accepted shape or envelope) through the real store and print one EventBridge event per "
        "emission. The clock is each event's own time. The input is streamed. Bad lines are "
        "reported on stderr with their line number (exit 1 if any), then one summary line: "
        "events accepted, dropped by reason, duplicates, stale, emissions.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("file", nargs="?", default="-", help="input file, or - for stdin (default)")
    _settings_flags(sim, db_help="store URL (default: a temporary SQLite file)")
    sim.set_defaults(func=cmd_simulate)

    run = sub.add_parser(
        "run",
        help="long-running service: consume S3 events from SQS, publish batches",
        description="Long-poll an SQS queue of S3 events, store them (messages are deleted only "
        "once stored), and publish each batch within a second of its due time. "
        "SIGINT/SIGTERM stop it cleanly.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--queue-url", required=True, help="SQS queue receiving S3 events")
    _aws_flags(run)
    run.add_argument(
        "--poll-wait",
        type=int,
        default=10,
        metavar="SECONDS",
        help="SQS long-poll wait, 0-20 (default 10; also the longest a stop request waits)",
    )
    run.add_argument(
        "--max-runtime",
        type=float,
        metavar="SECONDS",
        help="stop after this long (> 0; stops within it plus one short receive)",
    )
    run.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log every message and batch (--log-level debug)",
    )
    _log_flags(run)
    _settings_flags(
        run, db_help="store URL (default: SQLite in the user's state dir) [EDP_DATABASE_URL]"
    )
    run.set_defaults(func=cmd_run)

    backfill = sub.add_parser(
        "backfill",
        help="publish one package-objects-ready per prefix for objects already in a bucket",
        description="List s3://bucket[/prefix] (the folders below it concurrently), group the "
        "objects exactly as the emitter groups their events (buckets, ignore patterns, .quilt/, "
        "folder markers, depth, rules), and publish one package-objects-ready per prefix with "
        'trigger "backfill" through the store\'s outbox. A prefix whose listing (keys, sizes, '
        "ETags) has not changed gets the same batch_id, and one already in the outbox is not "
        "sent again: an interrupted run resumes when run again. See docs/backfill.md.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("uri", metavar="s3://BUCKET[/PREFIX]", help="what to backfill")
    backfill.add_argument(
        "--dry-run", action="store_true", help="print the plan (prefixes, counts); publish nothing"
    )
    backfill.add_argument(
        "--modified-since",
        metavar="TIME",
        help="only objects last modified at or after this ISO date/time (UTC by default)",
    )
    backfill.add_argument(
        "--modified-until",
        metavar="TIME",
        help="only objects last modified before this ISO date/time (UTC by default)",
    )
    backfill.add_argument(
        "--rate",
        type=float,
        metavar="N",
        help="publish at most N events per second (default: no cap)",
    )
    backfill.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="folders listed at once (default 8)",
    )
    backfill.add_argument("--endpoint-url", help="AWS endpoint for an emulator")
    backfill.add_argument("--region", help="AWS region (default: from the environment)")
    _settings_flags(backfill, db_help="store URL (its outbox is the journal) [EDP_DATABASE_URL]")
    backfill.set_defaults(func=cmd_backfill)

    status = sub.add_parser(
        "status",
        help="show open batches and counters",
        description="Show open batches (bucket, prefix, files, age, due in) and the counters "
        "(events accepted, dropped by reason, duplicates, emitted by trigger).",
    )
    status.add_argument("--db", metavar="URL", help="store URL [EDP_DATABASE_URL]")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.set_defaults(func=cmd_status)

    redrive = sub.add_parser(
        "redrive",
        help="send dead-lettered messages back to their queue",
        description="Move messages from a dead-letter queue back to the queue they came from "
        "(the emitter's input queue, or a consumer's), once what made them fail is fixed. Each "
        "message is sent first and deleted from the dead-letter queue only once sent, so an "
        "interruption loses nothing (at worst a message is delivered twice, which the emitter "
        "and the consumer recognise).",
        epilog="With --from alone the target is the one queue whose redrive policy names that "
        "dead-letter queue; with --to alone the dead-letter queue is the one its redrive "
        "policy names.",
    )
    redrive.add_argument("--from", dest="source", metavar="DLQ_URL", help="dead-letter queue")
    redrive.add_argument("--to", dest="target", metavar="QUEUE_URL", help="queue to send them to")
    redrive.add_argument(
        "--dry-run", action="store_true", help="only say how many messages would move"
    )
    redrive.add_argument(
        "--max", type=int, metavar="N", help="move at most N messages (default: all)"
    )
    _aws_flags(redrive)
    _log_flags(redrive)
    redrive.set_defaults(func=cmd_redrive)

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on this machine: emulator, emitter, consumer",
        description="Start an AWS emulator, play an instrument uploading experiments, run the "
        "emitter and the reference consumer for real, and show what happens.",
    )
    demo.add_argument(
        "--endpoint-url",
        help="use this emulator instead of starting moto (its credentials: any non-empty "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the demo sets 'demo')",
    )
    demo.add_argument(
        "--workdir", help="directory for the SQLite store and logs (default: temporary)"
    )
    demo.add_argument("--keep", action="store_true", help="leave the emulator running at the end")
    demo.set_defaults(func=cmd_demo)
    return parser


def cmd_simulate(args: argparse.Namespace) -> int:
    from edp.emitter import Emitter
    from edp.simulate import simulate
    from edp.store import open_store

    with tempfile.TemporaryDirectory(prefix="edp-simulate-") as tmp:
        default_db = f"sqlite:///{Path(tmp) / 'simulate.sqlite'}"
        settings = settings_from_args(args, database_url=args.db or default_db)
        ruleset = None
        if settings.rules:
            from edp.rules_file import load_rules

            # Checked before reading the input: a bad rules file is a start-up error.
            ruleset = load_rules(settings.rules, settings)
        with contextlib.ExitStack() as opened:
            if args.file == "-":
                source: IO[bytes] = sys.stdin.buffer
            else:
                try:
                    source = opened.enter_context(Path(args.file).open("rb"))
                except OSError as err:
                    raise EdpError(f"cannot read {args.file}: {err.strerror}") from err
            # The temporary store is deleted at exit: it needs no fsync. A store the user names
            # (--db) keeps its durable commits.
            store = open_store(
                settings.database_url,
                secret_arn=settings.database_secret_arn,
                durable=args.db is not None,
            )
            opened.callback(store.close)
            return simulate(
                source, Emitter(settings, store, ruleset=ruleset), sys.stdout, sys.stderr
            )


def cmd_run(args: argparse.Namespace) -> int:
    from edp.run import run_service

    settings = settings_from_args(args)
    if not 0 <= args.poll_wait <= 20:
        raise SettingsError("--poll-wait", args.poll_wait, "0 to 20 seconds (SQS's limit)")
    if args.max_runtime is not None and not 0 < args.max_runtime < float("inf"):
        raise SettingsError("--max-runtime", args.max_runtime, "a number of seconds > 0")
    return run_service(
        settings,
        queue_url=args.queue_url,
        endpoint_url=endpoint_url(args.endpoint_url),
        region=args.region,
        poll_wait=args.poll_wait,
        max_runtime=args.max_runtime,
        verbose=args.verbose,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def cmd_redrive(args: argparse.Namespace) -> int:
    import threading

    from edp.logs import command_logging
    from edp.redrive import redrive, resolve_queues
    from edp.run import client_factory, stop_on_signals

    if args.max is not None and args.max < 1:
        raise SettingsError("--max", args.max, "a whole number >= 1")
    make = client_factory("sqs", endpoint_url=endpoint_url(args.endpoint_url), region=args.region)
    stop = threading.Event()
    with (
        command_logging("edp redrive", level=args.log_level or "info", log_format=args.log_format),
        stop_on_signals(stop),
    ):
        sqs = make()
        source, target = resolve_queues(sqs, args.source, args.target)
        report = redrive(
            sqs, source=source, target=target, dry_run=args.dry_run, limit=args.max, stop=stop
        )
    print(report.summary())
    return 1 if report.send_failures else 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from edp.backfill import Progress, describe_plan, parse_time, publish_summary, run_backfill
    from edp.emitter import build_scope
    from edp.publisher import Publisher
    from edp.rules_file import load_rules
    from edp.run import client_factory
    from edp.store import open_store

    settings = settings_from_args(args)
    if args.concurrency < 1:
        raise SettingsError("--concurrency", args.concurrency, "a whole number >= 1")
    since = parse_time("--modified-since", args.modified_since)
    until = parse_time("--modified-until", args.modified_until)
    endpoint = endpoint_url(args.endpoint_url)
    s3_factory = client_factory("s3", endpoint_url=endpoint, region=args.region)
    ruleset = load_rules(settings.rules, settings, s3_factory) if settings.rules else None
    scope = build_scope(settings, ruleset)
    store = (
        None
        if args.dry_run
        else open_store(settings.database_url, secret_arn=settings.database_secret_arn)
    )
    publisher = Publisher(
        client_factory("events", endpoint_url=endpoint, region=args.region),
        settings.event_bus,
        sns_client=client_factory("sns", endpoint_url=endpoint, region=args.region),
        topic_arn=settings.sns_topic_arn,
        rule_of=ruleset.name_for if ruleset else None,
    )
    try:
        plan, report = run_backfill(
            args.uri,
            scope,
            s3=s3_factory(),
            store=store,
            publisher=publisher,
            dry_run=args.dry_run,
            modified_since=since,
            modified_until=until,
            rate=args.rate,
            concurrency=args.concurrency,
            progress=Progress(sys.stderr),
        )
    finally:
        if store is not None:
            store.close()
    if report is None:
        describe_plan(plan, sys.stdout)
    else:
        print(publish_summary(plan, report))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import os

    from edp.status import show_status

    # Only the store's settings: a bad batching env var is no reason for status to fail.
    env = {k: os.environ.get(k, "") for k in ("EDP_DATABASE_URL", "EDP_DATABASE_SECRET_ARN")}
    settings = Settings.from_sources(env=env, database_url=args.db)
    return show_status(settings, as_json=args.json, out=sys.stdout)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from edp.demo import run_demo
    except ImportError as err:
        raise EdpError(
            f"the demo needs the demo extras ({err.name} is missing): pip install -e '.[demo]'"
        ) from err
    return run_demo(
        endpoint_url=endpoint_url(args.endpoint_url), workdir=args.workdir, keep=args.keep
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as err:
        print(f"edp: {err}", file=sys.stderr)
        return EXIT_USAGE
    except EdpError as err:
        print(f"edp: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edp: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if type(err).__module__.startswith(("botocore", "boto3")):
            # Credentials, region, endpoint or permission problems: say which, no traceback.
            print(f"edp: error: AWS: {err}", file=sys.stderr)
            print(aws_hint(getattr(args, "command", None)), file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
