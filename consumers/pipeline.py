"""The consumer pipeline: one ``package-objects-ready`` event in, one pushed/unchanged/quarantined package out."""

from __future__ import annotations

import logging
import pathlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import quilt3
import quilt3.workflows
from botocore.exceptions import BotoCoreError, ClientError
from quilt3.backends import get_package_registry

from consumers.alerts import make_alert, publish_alert, quarantine_alert
from consumers.building import (
    BuiltPackage,
    MetadataHook,
    build_package,
    reuse_hashes,
    set_packaging_date,
    source_records,
)
from consumers.clients import Clients
from consumers.errors import AlertError, PackagingError, QuarantineError, WorkflowRejection
from consumers.events import ReadyEvent
from consumers.gateway import RefreshResult, folders_to_refresh, refresh_file_shares
from consumers.hashing import HashReport, S3Hasher, Scratch, hash_entries, summarize
from consumers.listing import UNVERSIONED, ObjectVersion
from consumers.naming import is_valid_package_name, package_name
from consumers.quarantine import push_quarantined, quarantine_package, quarantine_readme
from consumers.quilt_env import quilt_stdout_captured
from consumers.revision import LatestRevision, load_latest_revision, save_sources
from consumers.settings import ConsumerSettings

logger = logging.getLogger(__name__)

Status = Literal["pushed", "unchanged", "quarantined"]


@dataclass(frozen=True)
class PackageOutcome:
    """What happened to one event's package, and where it is."""

    status: Status
    package_name: str
    registry: str
    top_hash: str | None
    message: str = ""


def package_prefix(
    event: ReadyEvent,
    settings: ConsumerSettings,
    *,
    metadata: MetadataHook | None = None,
    name_for: Callable[[str], str] | None = None,
    clients: Clients | None = None,
    clock: Callable[[], datetime] | None = None,
) -> PackageOutcome:
    """Package ``s3://event.bucket/event.prefix`` into the registry, or quarantine it.

    ``metadata(event)`` adds metadata over ``settings.default_metadata`` (the prefix's
    ``metadata.json`` still wins); ``name_for(prefix)`` replaces :func:`consumers.naming.package_name`;
    ``clock`` gives "today" when ``settings.date_key`` is set. Raises :class:`PackagingError`
    for failures worth a retry, ``QuarantineError``/``AlertError`` when quarantining failed.
    """
    clients = clients or Clients()
    clock = clock or (lambda: datetime.now(UTC))
    name = (name_for or package_name)(event.prefix)
    if not is_valid_package_name(name):
        raise PackagingError(
            f"package name {name!r} for prefix {event.prefix!r} is not namespace/name"
        )
    registry = settings.registry or event.bucket

    with tempfile.TemporaryDirectory(prefix="edp-consumer-") as tmp:
        workdir = pathlib.Path(tmp)
        built = build_package(
            event,
            settings,
            s3=clients.s3,
            workdir=workdir,
            metadata=metadata,
            clock=clock,
            package_name=name,
        )
        latest = load_latest_revision(clients.s3, registry, name)
        if not built.objects:
            # All deleted (or all ignored): a package of extras alone would only write them
            # back into an emptied prefix. The latest revision, if any, stays as it is.
            message = f"nothing to package in {event.s3_url}"
            if event.count:
                # The emitter saw files created there: deleted since, or not visible to this
                # role (another bucket, a missing permission). Worth a look either way.
                message += (
                    f" although the event counted {event.count} file(s)"
                    f" ({len(built.ignored)} ignored by .quiltignore)"
                )
                logger.warning(
                    "prefix empty",
                    extra={"package": name, "count": event.count, "ignored": len(built.ignored)},
                )
            else:
                logger.info("prefix empty", extra={"package": name, "ignored": len(built.ignored)})
            return PackageOutcome(
                "unchanged",
                name,
                registry,
                latest.top_hash if latest is not None else None,
                message,
            )
        today = built.packaging_date
        redated = latest is not None and _on_latest_date(built, latest)
        missing = reuse_hashes(built.package, built.objects, latest)
        report = _hash_new_objects(built, settings, clients, event) if missing else HashReport()
        logger.info(
            "package built",
            extra={
                "package": name,
                "registry": registry,
                "entries": len(built.objects) + len(built.generated),
                "ignored": len(built.ignored),
                "hashes_reused": len(built.objects) - missing,
                **summarize(report),
            },
        )
        missing -= report.hashed
        try:
            workflow_data = _validate(built, settings, registry, name)
            if latest is not None:
                predicted = _predicted_top_hash(
                    built.package, settings.message, workflow_data, hash_missing=missing > 0
                )
                if predicted != latest.top_hash and redated and today is not None:
                    set_packaging_date(built, today)  # changed anyway: packaged today
                if predicted == latest.top_hash:
                    logger.info("package unchanged", extra={"package": name, "top_hash": predicted})
                    if not latest.sources:  # made by someone else: list it for next time
                        _save_sources(
                            clients, registry, name, predicted, built, built.package, event
                        )
                    return PackageOutcome(
                        "unchanged", name, registry, predicted, "same as latest revision"
                    )
            built.package.checked_workflow = workflow_data  # push need not load it again
            pushed = _push(built, settings, registry, name, event)
            top_hash = str(pushed.top_hash)
            _save_sources(clients, registry, name, top_hash, built, pushed, event)
        except WorkflowRejection as rejection:
            if redated and today is not None:
                set_packaging_date(built, today)  # the registry's date means nothing there
            return _quarantine(
                event, settings, built, name, registry, str(rejection), clients, workdir
            )

    status: Status = "unchanged" if latest is not None and top_hash == latest.top_hash else "pushed"
    message = f"{status} {name}@{top_hash[:7]} in s3://{registry}"
    if status == "pushed" and settings.file_share_arns:
        failures = _refresh_gateways(event, settings, clients, name)
        if failures:
            message += "; file gateway refresh failed: " + "; ".join(
                r.error or "" for r in failures
            )
    return PackageOutcome(status, name, registry, top_hash, message)


def _hash_new_objects(
    built: BuiltPackage, settings: ConsumerSettings, clients: Clients, event: ReadyEvent
) -> HashReport:
    """Hash the objects reuse left without a hash, from S3's checksums (see consumers.hashing)."""
    scratch = Scratch.parse(settings.hash_scratch)
    if scratch.feeds_emitter(event.bucket):
        raise PackagingError(
            f"hash_scratch s3://{event.bucket}/{scratch.prefix} is in the watched bucket outside "
            ".quilt/: its copies would be packaged; use a prefix under .quilt/ or another bucket"
        )
    hasher = S3Hasher(
        clients.s3, hash_type=settings.hash_type, mode=settings.hashing_mode, scratch=scratch
    )
    return hash_entries(built.package, built.objects, event.bucket, hasher)


def _on_latest_date(built: BuiltPackage, latest: LatestRevision) -> bool:
    """Give the package the latest revision's packaging date, to compare like with like.

    The packaging date (``PACKAGE_DATE_KEY``, the README's ``${date}``) would make a redelivery
    (or the consumer's own writes coming back) on a later day always look changed. Returns
    whether anything changed; the caller puts today's date back if the package differs anyway.
    """
    date = latest.packaged_on
    if date is None and built.dated_by_clock is not None:
        previous = latest.user_meta.get(built.dated_by_clock)
        date = previous if isinstance(previous, str) else None
    if date is None or date == built.packaging_date:
        return False
    today = built.packaging_date
    changed = set_packaging_date(built, date)
    if not changed:
        built.packaging_date = today
    return changed


def _validate(built: BuiltPackage, settings: ConsumerSettings, registry: str, name: str) -> Any:
    """Run the registry's workflow on the package; a rejection becomes :class:`WorkflowRejection`.

    quilt3 signals "no workflow config", "unknown workflow" and "workflow required" with plain
    ``QuiltException`` and a bad config with ``ConfigurationError``: all of them, not only
    ``WorkflowValidationError``, mean the package cannot go to this registry as it is.
    """
    if built.problem is not None:
        raise WorkflowRejection(built.problem)
    try:
        return quilt3.workflows.validate(
            registry=get_package_registry(f"s3://{registry}"),
            workflow=settings.workflow_argument,
            name=name,
            pkg=built.package,
            message=settings.message,
        )
    except quilt3.util.QuiltException as err:
        raise WorkflowRejection(str(err)) from err


def _predicted_top_hash(
    package: quilt3.Package, message: str, workflow_data: Any, *, hash_missing: bool
) -> str:
    """The top hash ``push`` would produce, computed before anything is copied or written.

    Hashes still missing after reuse (new or changed objects) are computed with quilt3's own
    parallel hasher, as ``push`` would; ``push`` then finds them set and does not hash again.
    Uses quilt3 internals (``_calculate_missing_hashes``, ``_set_commit_message``, ``_workflow``)
    because quilt3 has no public "what would the top hash be" call; the redelivery tests catch
    any change in them.
    """
    if hash_missing:
        try:
            with quilt_stdout_captured():
                package._calculate_missing_hashes()
        except Exception as err:
            raise PackagingError(f"could not hash the package's objects: {err}") from err
    package._set_commit_message(message)
    package._workflow = workflow_data
    top_hash: str = package.top_hash
    return top_hash


def _push(
    built: BuiltPackage, settings: ConsumerSettings, registry: str, name: str, event: ReadyEvent
) -> quilt3.Package:
    try:
        with quilt_stdout_captured():
            pushed = built.package.push(
                name,
                registry=f"s3://{registry}",
                dest=_destination(event, registry),
                message=settings.message,
                workflow=settings.workflow_argument,
                force=True,
                dedupe=True,
            )
            if pushed is built.package:
                # dedupe found this revision already latest (pushed since we looked) and gave
                # back the local package, whose entries may lack hashes: complete them.
                pushed._calculate_missing_hashes()
    except Exception as err:  # quilt3 raises a zoo of types; all are worth a retry here
        raise PackagingError(f"could not push package {name} to s3://{registry}: {err}") from err
    logger.info(
        "package pushed", extra={"package": name, "registry": registry, "top_hash": pushed.top_hash}
    )
    return pushed


def _save_sources(
    clients: Clients,
    registry: str,
    name: str,
    top_hash: str,
    built: BuiltPackage,
    pushed: quilt3.Package,
    event: ReadyEvent,
) -> None:
    """Record where each entry came from, so the next event can skip hashing unchanged objects.

    A failure only costs the next event some hashing: logged, never fatal.
    """
    objects = dict(built.objects)
    objects.update(_landed_extras(clients, built, pushed, event))
    records = source_records(built.package, pushed, objects, event.bucket)
    try:
        save_sources(clients.s3, registry, name, top_hash, records, built.packaging_date)
    except PackagingError as err:
        logger.warning("source listing not stored", extra={"package": name, "error": str(err)})


def _landed_extras(
    clients: Clients, built: BuiltPackage, pushed: quilt3.Package, event: ReadyEvent
) -> dict[str, ObjectVersion]:
    """The generated extras that ``push`` wrote into the prefix, as the next listing will see them."""
    landed = {}
    for logical_key in built.generated:
        if logical_key not in pushed:
            continue
        physical_key = pushed[logical_key].physical_key
        if physical_key.bucket != event.bucket or physical_key.path != event.prefix + logical_key:
            continue
        kwargs = {"Bucket": physical_key.bucket, "Key": physical_key.path}
        if physical_key.version_id not in (None, UNVERSIONED):
            kwargs["VersionId"] = physical_key.version_id
        try:
            head = clients.s3.head_object(**kwargs)
        except (ClientError, BotoCoreError):
            continue  # it is hashed again next time: a few bytes
        landed[logical_key] = ObjectVersion(
            key=physical_key.path,
            version_id=head.get("VersionId", UNVERSIONED),
            size=int(head["ContentLength"]),
            etag=head.get("ETag", ""),
        )
    return landed


def _destination(event: ReadyEvent, registry: str) -> Callable[..., str] | None:
    """Where pushed files (only the generated extras) land.

    Packaging into the watched bucket puts them in the prefix itself, whatever the package's
    name: the next listing then finds them at the same logical keys and versions the manifest
    records, so a redelivery (or the emitter seeing those writes) changes nothing. quilt3's
    default, ``<registry>/<name>/``, would be a different folder for any prefix depth but 2,
    and packaging it would feed the loop. Into another registry, quilt3's default applies.
    """
    if registry != event.bucket:
        return None
    prefix = event.prefix

    def into_prefix(logical_key: str, entry: Any) -> str:
        return f"s3://{registry}/{quote(prefix + logical_key)}"

    return into_prefix


def _quarantine(
    event: ReadyEvent,
    settings: ConsumerSettings,
    built: BuiltPackage,
    name: str,
    registry: str,
    error: str,
    clients: Clients,
    workdir: pathlib.Path,
) -> PackageOutcome:
    """Push the rejected package to the quarantine bucket and alert, unless it is already there.

    The same skip-when-unchanged check as the registry path: a redelivered rejected prefix (or
    one that comes again unchanged) finds its revision as the quarantine's ``latest`` and gives
    ``unchanged`` with no push and no second alert.
    """
    quarantine = settings.quarantine_bucket
    logger.warning("workflow rejected package", extra={"package": name, "error": error})
    readme = quarantine_readme(
        package_name=name, source=event.s3_url, workflow=settings.workflow, error=error
    )
    try:
        latest = load_latest_revision(clients.s3, quarantine, name)
        today = built.packaging_date
        redated = latest is not None and _on_latest_date(built, latest)
        quarantined = quarantine_package(built.package, readme=readme, workdir=workdir)
        if latest is not None:
            missing = reuse_hashes(quarantined, built.objects, latest)
            predicted = _predicted_top_hash(
                quarantined, settings.message, None, hash_missing=missing > 0
            )
            if predicted != latest.top_hash and redated and today is not None:
                set_packaging_date(built, today)  # changed anyway: quarantined today
                quarantined = quarantine_package(built.package, readme=readme, workdir=workdir)
            if predicted == latest.top_hash:
                logger.info(
                    "quarantined package unchanged", extra={"package": name, "top_hash": predicted}
                )
                return PackageOutcome(
                    "unchanged",
                    name,
                    quarantine,
                    predicted,
                    f"already quarantined, same as latest revision in s3://{quarantine}: {error}",
                )
        pushed = push_quarantined(
            quarantined, name=name, quarantine_bucket=quarantine, message=settings.message
        )
        top_hash = str(pushed.top_hash)
    except Exception as err:
        # Tell people both failures, then let the event be retried.
        alert = make_alert(
            f"EDP: package {name} rejected and quarantine failed",
            f"Package {name} from {event.s3_url} failed workflow "
            f"{settings.workflow or '(registry default)'} and could not be pushed to "
            f"{quarantine}.\n\nWorkflow error:\n{error}\n\nQuarantine error:\n{err}\n",
        )
        try:
            publish_alert(clients.sns, settings.sns_topic_arn, alert)
        except AlertError:
            logger.exception("alert about the failed quarantine failed too")
        if isinstance(err, QuarantineError):
            raise
        raise QuarantineError(f"could not quarantine package {name}: {err}") from err
    # Quarantined entries point at copies: list their sources so a redelivery reuses the hashes.
    _save_sources(clients, quarantine, name, top_hash, built, pushed, event)
    alert = quarantine_alert(
        workflow=settings.workflow,
        package_name=name,
        bucket=event.bucket,
        prefix=event.prefix,
        registry=registry,
        quarantine_bucket=quarantine,
        quilt_url=settings.quilt_url,
        error=error,
    )
    publish_alert(clients.sns, settings.sns_topic_arn, alert)
    return PackageOutcome("quarantined", name, quarantine, top_hash, error)


def _refresh_gateways(
    event: ReadyEvent, settings: ConsumerSettings, clients: Clients, name: str
) -> list[RefreshResult]:
    registry = settings.registry or event.bucket
    results = refresh_file_shares(
        clients.storagegateway,
        settings.file_share_arns,
        # _destination: into another registry, quilt3 copies the files to <registry>/<name>/.
        folders_to_refresh(event.prefix, name, copied=registry != event.bucket),
        max_attempts=settings.gateway_max_attempts,
    )
    failures = [result for result in results if not result.ok]
    if failures:
        alert = make_alert(
            f"EDP: file gateway refresh failed for {name}",
            f"Package {name} was pushed from {event.s3_url}, but RefreshCache failed, so file "
            "gateway clients may not see the new files until the next refresh:\n\n"
            + "\n".join(f"{r.file_share_arn}: {r.error}" for r in failures),
        )
        try:
            publish_alert(clients.sns, settings.sns_topic_arn, alert)
        except AlertError:
            logger.exception("alert about the gateway refresh failed")
    return failures


__all__ = ["LatestRevision", "PackageOutcome", "package_prefix"]
