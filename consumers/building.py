"""Build a quilt3 package from ``s3://bucket/prefix``: current objects, ``.quiltignore``, extras, metadata."""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import quilt3
from quilt3.packages import PackageEntry
from quilt3.util import PhysicalKey, QuiltException

from consumers.events import ReadyEvent
from consumers.extras import (
    README,
    SUMMARIZE_AUTO,
    SUMMARIZE_FILE,
    ReadmeFacts,
    auto_summarize,
    resolve_summarize,
    resolve_text,
    summarize_text,
)
from consumers.listing import ObjectVersion, list_current_objects, read_object
from consumers.quiltignore import QUILTIGNORE, is_ignored, parse_quiltignore
from consumers.revision import LatestRevision, SourceRecord
from consumers.settings import ConsumerSettings

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
MetadataHook = Callable[[ReadyEvent], dict[str, Any]]


_NOT_CHECKED: Any = object()


class CheckedPackage(quilt3.Package):
    """A ``quilt3.Package`` whose workflow check can be done once, before ``push``, and whose
    ``push`` skips what quilt3 does only to print.

    ``push`` validates against the registry's workflow (loading its config and schemas) every
    time. The consumer validates first, to tell workflow rejections from other failures and to
    predict the top hash; setting :attr:`checked_workflow` to the result of that check (quilt3's
    ``workflows.validate``: the workflow record, or ``None`` for none) makes ``push`` use it
    instead of checking again. Left unset, ``push`` validates as quilt3's does.

    quilt3's public ``push`` always prints "Package name@short-hash pushed", and to shorten the
    top hash it lists ``.quilt/packages/``: every manifest of every package in the registry, a
    listing that grows with each revision pushed. The consumer discards quilt3's output
    (:func:`consumers.quilt_env.quilt_stdout_captured`), so its ``push`` is quilt3's ``_push``
    with ``print_info=False``: the same manifest, the same copies, no listing.
    """

    checked_workflow: Any = _NOT_CHECKED

    def push(
        self,
        name: str,
        registry: str | None = None,
        dest: Any = None,
        message: str | None = None,
        selector_fn: Any = None,
        *,
        workflow: Any = ...,
        force: bool = False,
        dedupe: bool = False,
    ) -> quilt3.Package:
        pushed: quilt3.Package = self._push(
            name,
            registry,
            dest,
            message,
            selector_fn,
            workflow=workflow,
            print_info=False,
            force=force,
            dedupe=dedupe,
        )
        return pushed

    def _validate_with_workflow(
        self, *, registry: Any, workflow: Any, name: str, message: Any
    ) -> None:
        if self.checked_workflow is _NOT_CHECKED:
            super()._validate_with_workflow(
                registry=registry, workflow=workflow, name=name, message=message
            )
        else:
            self._workflow = self.checked_workflow


@dataclass
class BuiltPackage:
    """A package ready to validate and push, with what went into it.

    ``problem`` is set when the prefix's content itself is unusable (a ``metadata.json`` that is
    not a JSON object): such a package is quarantined, not retried.
    """

    package: CheckedPackage
    metadata: dict[str, Any]
    objects: dict[str, ObjectVersion]
    ignored: list[str]
    skipped: list[str]
    generated: list[str]
    problem: str | None = None
    dated_by_clock: str | None = None  # the metadata key set to today's date, if one was
    packaging_date: str | None = None
    readme: GeneratedReadme | None = None  # set when the README was generated from a template


@dataclass(frozen=True)
class GeneratedReadme:
    """A README written from the settings' template, so it can be written again for another date."""

    template: str
    facts: ReadmeFacts
    path: pathlib.Path


def merge_metadata(
    defaults: Mapping[str, Any],
    from_hook: Mapping[str, Any] | None,
    from_file: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Package metadata: settings defaults, then the hook's, then the prefix's ``metadata.json``.

    Later sources win key by key (a shallow merge, as Quilt's packaging service does).
    """
    merged: dict[str, Any] = dict(defaults)
    merged.update(from_hook or {})
    merged.update(from_file or {})
    return merged


def generated_files(
    settings: ConsumerSettings,
    s3: Any,
    facts: ReadmeFacts,
    logical_keys: list[str],
    readme_template: str,
) -> dict[str, str]:
    """The files added when the prefix lacks them, with their configured texts.

    ``logical_keys`` are the package's entries, for the default ``quilt_summarize.json``.
    """
    files = {
        README: facts.fill(readme_template),
        QUILTIGNORE: resolve_text(settings.quiltignore_text, s3, QUILTIGNORE),
    }
    if settings.summarize is not None:
        content = resolve_summarize(settings.summarize, s3)
        if content == SUMMARIZE_AUTO:
            content = auto_summarize(logical_keys, settings.summarize_chart)
        if content:  # an empty list would show nothing: no file then
            files[SUMMARIZE_FILE] = summarize_text(list(content))
    return files


def set_packaging_date(built: BuiltPackage, date: str) -> bool:
    """Make ``date`` the packaging date of ``built`` (metadata date key, README); return whether
    anything changed. Used to compare with the latest revision on its own date."""
    changed = False
    if built.dated_by_clock is not None and built.metadata[built.dated_by_clock] != date:
        built.metadata = {**built.metadata, built.dated_by_clock: date}
        built.package.set_meta(built.metadata)
        changed = True
    if built.readme is not None and built.readme.facts.date != date:
        facts = dataclasses.replace(built.readme.facts, date=date)
        text = facts.fill(built.readme.template)
        if text != built.readme.facts.fill(built.readme.template):
            built.readme.path.write_text(text, encoding="utf-8")
            built.package.set(README, str(built.readme.path))  # drops the old hash
            changed = True
        built.readme = dataclasses.replace(built.readme, facts=facts)
    built.packaging_date = date
    return changed


def build_package(
    event: ReadyEvent,
    settings: ConsumerSettings,
    *,
    s3: Any,
    workdir: pathlib.Path,
    metadata: MetadataHook | None = None,
    clock: Callable[[], datetime] | None = None,
    package_name: str = "",
) -> BuiltPackage:
    """Build (without hashing or pushing) the package of ``event``'s prefix.

    ``clock`` gives the packaging date (``settings.date_key``, the README's ``${date}``).
    """
    bucket, prefix = event.bucket, event.prefix
    objects = list_current_objects(s3, bucket, prefix)
    by_logical_key = {obj.key[len(prefix) :]: obj for obj in objects}

    # The prefix's own .quiltignore, else the one about to be added: either way the package's
    # .quiltignore describes the package (and the next run, which finds ours, agrees).
    if QUILTIGNORE in by_logical_key:
        raw = read_object(s3, bucket, by_logical_key[QUILTIGNORE])
        rules = parse_quiltignore(raw.decode("utf-8", errors="replace"))
    else:
        rules = parse_quiltignore(resolve_text(settings.quiltignore_text, s3, QUILTIGNORE))

    problem = None
    from_file = None
    if METADATA_FILE in by_logical_key:
        from_file, problem = _read_metadata_file(s3, bucket, by_logical_key[METADATA_FILE])
    from_hook = metadata(event) if metadata is not None else None
    meta = merge_metadata(settings.default_metadata, from_hook, from_file)
    if clock is None:
        raise ValueError("build_package needs a clock: it gives the packaging date")
    today = clock().date().isoformat()
    dated_by_clock = None
    if settings.date_key is not None and settings.date_key not in meta:
        meta[settings.date_key] = today
        dated_by_clock = settings.date_key

    package = CheckedPackage()
    kept: dict[str, ObjectVersion] = {}
    ignored, skipped = [], []
    for logical_key, obj in by_logical_key.items():
        if is_ignored(logical_key, rules):
            ignored.append(logical_key)
            continue
        entry = PackageEntry(PhysicalKey(bucket, obj.key, obj.version_id), obj.size, None, None)
        try:
            package.set(logical_key, entry)
        except QuiltException as err:  # "." or ".." segments: not a valid logical key
            logger.warning("skipping key", extra={"key": obj.key, "reason": str(err)})
            skipped.append(logical_key)
            continue
        kept[logical_key] = obj

    facts = ReadmeFacts(
        package=package_name,
        source=event.s3_url,
        workflow=settings.workflow or "(the registry's default)",
        function=settings.function_name or "consumers.auto_package",
        date=today,
    )
    generated = []
    readme = None
    readme_template = resolve_text(settings.readme_text, s3, README)
    extras = generated_files(settings, s3, facts, sorted(kept), readme_template)
    for logical_key, text in extras.items():
        # Never shadow an object of the prefix, even an ignored one: pushing into the watched
        # bucket would overwrite it.
        if logical_key in package or logical_key in by_logical_key:
            continue
        path = workdir / logical_key
        path.write_text(text, encoding="utf-8")
        package.set(logical_key, str(path))
        generated.append(logical_key)
        if logical_key == README:
            readme = GeneratedReadme(template=readme_template, facts=facts, path=path)

    package.set_meta(meta)
    return BuiltPackage(
        package=package,
        metadata=meta,
        objects=kept,
        ignored=ignored,
        skipped=skipped,
        generated=generated,
        problem=problem,
        dated_by_clock=dated_by_clock,
        packaging_date=today,
        readme=readme,
    )


def reuse_hashes(
    package: quilt3.Package, objects: Mapping[str, ObjectVersion], latest: LatestRevision | None
) -> int:
    """Give entries the hashes they can have without reading S3 bytes; return how many lack one.

    ``objects`` maps logical keys to the listed objects. Local files (the generated extras, a few
    bytes each) are hashed here. An S3 entry takes the hash of the latest revision's source
    listing when key, version id, size and ETag all match; failing that (no listing), the
    manifest's hash when its physical key (with a real version id) and size match.
    """
    from quilt3 import checksums

    missing = 0
    for logical_key, entry in package.walk():
        if entry.hash is not None:
            continue
        physical_key = entry.physical_key
        if physical_key.is_local():
            data = pathlib.Path(physical_key.path).read_bytes()
            value = checksums.calculate_multipart_checksum_bytes(
                data, checksum_type=checksums.DEFAULT_HASH
            )
            entry.hash = {"type": checksums.DEFAULT_HASH, "value": value}
            continue
        reused = _reusable_hash(logical_key, physical_key, objects.get(logical_key), latest)
        if reused is None:
            missing += 1
        else:
            entry.hash = dict(reused)
    return missing


def _reusable_hash(
    logical_key: str,
    physical_key: PhysicalKey,
    obj: ObjectVersion | None,
    latest: LatestRevision | None,
) -> Mapping[str, Any] | None:
    if latest is None or obj is None:
        return None
    source = latest.sources.get(logical_key)
    if source is not None:
        if (source.bucket, source.key, source.version_id, source.size, source.etag) == (
            physical_key.bucket,
            obj.key,
            obj.version_id,
            obj.size,
            obj.etag,
        ) and obj.etag:
            return source.hash
        return None
    previous = latest.entries.get(logical_key)
    if (
        previous is not None
        and obj.is_versioned
        and not previous.meta
        and (previous.bucket, previous.key, previous.version_id, previous.size)
        == (physical_key.bucket, obj.key, obj.version_id, obj.size)
    ):
        return previous.hash
    return None


def source_records(
    built: quilt3.Package,
    pushed: quilt3.Package,
    objects: Mapping[str, ObjectVersion],
    bucket: str,
) -> dict[str, SourceRecord]:
    """The source listing of a pushed package (see ``consumers.revision``).

    Hashes come from the pushed package (the manifest's), else from the built one.
    Generated extras are left out: they were not listed (the next event finds them by the
    manifest's version ids, or hashes them: a few bytes).
    """
    records = {}
    for logical_key, entry in built.walk():
        obj = objects.get(logical_key)
        if obj is None:
            continue
        # What the manifest records: push re-hashes the copies it makes (as sha2-256-chunked).
        hash_obj = pushed[logical_key].hash if logical_key in pushed else None
        if hash_obj is None:
            hash_obj = entry.hash
        if hash_obj is None:
            continue
        records[logical_key] = SourceRecord(
            bucket=bucket,
            key=obj.key,
            version_id=obj.version_id,
            size=obj.size,
            etag=obj.etag,
            hash=dict(hash_obj),
        )
    return records


def _read_metadata_file(
    s3: Any, bucket: str, obj: ObjectVersion
) -> tuple[dict[str, Any] | None, str | None]:
    raw = read_object(s3, bucket, obj)
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, f"{METADATA_FILE} at s3://{bucket}/{obj.key} is not valid JSON: {err}"
    if not isinstance(value, dict):
        return (
            None,
            f"{METADATA_FILE} at s3://{bucket}/{obj.key} must hold a JSON object, not {type(value).__name__}",
        )
    return value, None
