"""The `edp` command line: simulate, run, backfill, status and demo."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edp.errors import EdpError, SettingsError
from edp.settings import Settings

EXIT_USAGE = 2
AWS_HINT = (
    "edp: check AWS_DEFAULT_REGION (or --region), your credentials, and --endpoint-url "
    "for an emulator"
)

SETTINGS_HELP = """\
Settings come from flags, else from env vars (EDP_BUCKET_NAME, EDP_BUCKET_IGNORE_PREFIXES,
EDP_BUCKET_PREFIX_DEPTH, EDP_BUCKET_THRESHOLD_DURATION, EDP_BUCKET_THRESHOLD_EVENT_COUNT,
EDP_EVENT_BUS_NAME, EDP_SNS_TOPIC_ARN, EDP_DATABASE_URL, EDP_MARKER_FILES,
EDP_BUCKET_THRESHOLD_MAX_AGE, EDP_DEDUPE_WINDOW, EDP_EVENTBRIDGE_KEYS_ENCODED, EDP_RULES),
else defaults.
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edp",
        description="Group S3 object events into per-prefix batches and publish one "
        "package-objects-ready event per batch (Quilt EDP compatible).",
        epilog="Run 'edp COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sim = sub.add_parser(
        "simulate",
        help="play an event stream offline and print what would be published",
        description="Play S3 events (JSON lines, or one JSON array; any accepted shape or envelope) "
        "through the real store and print one EventBridge event per emission. The clock is each "
        "event's own time. Bad lines are reported on stderr with their line number; exit 1 if any.",
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
    run.add_argument("--endpoint-url", help="AWS endpoint for an emulator or S3-compatible service")
    run.add_argument("--region", help="AWS region (default: from the environment)")
    run.add_argument(
        "--poll-wait",
        type=int,
        default=10,
        metavar="SECONDS",
        help="SQS long-poll wait, 0-20 (default 10; also the longest a stop request waits)",
    )
    run.add_argument("--max-runtime", type=float, metavar="SECONDS", help="stop after this long")
    run.add_argument("--verbose", "-v", action="store_true", help="log every message and batch")
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

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on this machine: emulator, emitter, consumer",
        description="Start an AWS emulator, play an instrument uploading experiments, run the "
        "emitter and the reference consumer for real, and show what happens.",
    )
    demo.add_argument("--endpoint-url", help="use this emulator instead of starting one")
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
        if args.file == "-":
            text = sys.stdin.read()
        else:
            try:
                text = Path(args.file).read_text(encoding="utf-8")
            except OSError as err:
                raise EdpError(f"cannot read {args.file}: {err.strerror}") from err
        store = open_store(settings.database_url, secret_arn=settings.database_secret_arn)
        try:
            emitter = Emitter(settings, store, ruleset=ruleset)
            return simulate(text, emitter, sys.stdout, sys.stderr)
        finally:
            store.close()


def cmd_run(args: argparse.Namespace) -> int:
    from edp.service import run_service

    settings = settings_from_args(args)
    if not 0 <= args.poll_wait <= 20:
        raise SettingsError("--poll-wait", args.poll_wait, "0 to 20 seconds (SQS's limit)")
    return run_service(
        settings,
        queue_url=args.queue_url,
        endpoint_url=args.endpoint_url,
        region=args.region,
        poll_wait=args.poll_wait,
        max_runtime=args.max_runtime,
        verbose=args.verbose,
    )


def cmd_backfill(args: argparse.Namespace) -> int:
    from edp.backfill import Progress, describe_plan, parse_time, publish_summary, run_backfill
    from edp.emitter import build_scope
    from edp.publisher import Publisher
    from edp.rules_file import load_rules
    from edp.service import client_factory
    from edp.store import open_store

    settings = settings_from_args(args)
    if args.concurrency < 1:
        raise SettingsError("--concurrency", args.concurrency, "a whole number >= 1")
    since = parse_time("--modified-since", args.modified_since)
    until = parse_time("--modified-until", args.modified_until)
    s3_factory = client_factory("s3", endpoint_url=args.endpoint_url, region=args.region)
    ruleset = load_rules(settings.rules, settings, s3_factory) if settings.rules else None
    scope = build_scope(settings, ruleset)
    store = (
        None
        if args.dry_run
        else open_store(settings.database_url, secret_arn=settings.database_secret_arn)
    )
    publisher = Publisher(
        client_factory("events", endpoint_url=args.endpoint_url, region=args.region),
        settings.event_bus,
        sns_client=client_factory("sns", endpoint_url=args.endpoint_url, region=args.region),
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
    from edp.status import show_status

    settings = Settings.from_sources(database_url=args.db)
    return show_status(settings, as_json=args.json, out=sys.stdout)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from edp.demo import run_demo
    except ImportError as err:
        raise EdpError(
            f"the demo needs the demo extras ({err.name} is missing): pip install -e '.[demo]'"
        ) from err
    return run_demo(endpoint_url=args.endpoint_url, workdir=args.workdir, keep=args.keep)


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
            print(AWS_HINT, file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
