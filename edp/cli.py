"""The `edp` command line: simulate, run, backfill, status, redrive and demo."""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from edp import __version__
from edp.errors import EdpError, SettingsError
from edp.logs import LOG_FORMATS, LOG_LEVELS
from edp.settings import SETTING, SETTINGS, SETTINGS_HELP, Settings, split_list

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


def _settings_flags(
    parser: argparse.ArgumentParser, *, db_help: str, db_from_env: bool = True
) -> None:
    """One flag per declared setting that has one (edp.settings.SETTINGS), its help naming the
    env var it overrides (``db_from_env=False``: the command ignores ``EDP_DATABASE_URL``)."""
    group = parser.add_argument_group("batching settings")
    for setting in SETTINGS:
        if setting.flag is None:
            continue
        text = db_help if setting.field == "database_url" else setting.help
        if setting.field == "database_url" and not db_from_env:
            group.add_argument(setting.flag, metavar=setting.metavar, help=text)
        elif setting.flag_sets is not None:
            suffix = f"{setting.env}={str(setting.flag_sets).lower()}"
            group.add_argument(
                setting.flag, action="store_true", default=None, help=f"{text} [{suffix}]"
            )
        else:
            group.add_argument(
                setting.flag,
                action="append" if setting.repeatable else "store",
                metavar=setting.metavar,
                help=f"{text} [{setting.env}]",
            )


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from the flags ``_settings_flags`` added, else env vars; ``extra`` wins over both."""
    overrides: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.dest is None:
            continue
        value = getattr(args, setting.dest)
        if setting.flag_sets is not None:
            value = setting.flag_sets if value else None
        elif setting.repeatable and value:
            # `--bucket a,b` works like the env var.
            value = tuple(part for item in value for part in split_list(item))
        overrides[setting.field] = value
    overrides.update(extra)
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
        "accepted shape or envelope) through the real store (its own, in memory, unless --db names "
        "one) and print one EventBridge event per emission. The clock is each event's own time. The input is streamed. Bad lines are "
        "reported on stderr with their line number (exit 1 if any), then one summary line: "
        "events accepted, dropped by reason, duplicates, stale, emissions.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("file", nargs="?", default="-", help="input file, or - for stdin (default)")
    _settings_flags(
        sim,
        db_help="store URL (default: memory://, the run's own, gone at exit)",
        db_from_env=False,
    )
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
    _settings_flags(run, db_help="store URL (default: SQLite in the user's state dir)")
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
    _settings_flags(backfill, db_help="store URL (its outbox is the journal)")
    backfill.set_defaults(func=cmd_backfill)

    status = sub.add_parser(
        "status",
        help="show open batches and counters",
        description="Show open batches (bucket, prefix, files, age, due in) and the counters "
        "(events accepted, dropped by reason, duplicates, emitted by trigger).",
    )
    status.add_argument("--db", metavar="URL", help=f"store URL [{SETTING['database_url'].env}]")
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
    from edp.simulate import DEFAULT_STORE, simulate
    from edp.store import open_store

    settings = settings_from_args(args, database_url=args.db or DEFAULT_STORE)
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
        # Without --db the store is simulate's own, in memory: nothing outlives the run, so it
        # needs no durability. A store the user names (--db) keeps its durable commits.
        store = open_store(
            settings.database_url,
            secret_arn=settings.database_secret_arn,
            durable=args.db is not None,
        )
        opened.callback(store.close)
        emitter = Emitter(settings, store, ruleset=ruleset)
        # A batch run whose objects are almost all acyclic: what start-up made is kept out of the
        # cyclic collector's passes, and young passes come every 20,000 allocations, not 700.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(20_000, 10, 10)
        try:
            return simulate(source, emitter, sys.stdout, sys.stderr)
        finally:  # as it was (main() also runs inside other programs, tests)
            gc.set_threshold(*thresholds)
            gc.unfreeze()


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
    from edp.run import stop_on_signals
    from edp_common.clients import client_factory

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
    from edp.store import open_store
    from edp_common.clients import client_factory

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
    names = (SETTING["database_url"].env, SETTING["database_secret_arn"].env)
    env = {name: os.environ.get(name, "") for name in names}
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
