"""The latest revision of a package, read straight from the registry so its hashes can be reused.

quilt3's ``dedupe`` hashes every byte of every object before it compares top hashes. Instead,
after each push the consumer stores a *source listing* next to the registry's manifests
(``.quilt/edp/sources/<name>/<top_hash>.json``): for every entry, the S3 object it was built from
(bucket, key, version id, size, ETag) and its hash. An object of the prefix whose key, version
id, size and ETag all equal the listing's takes that hash; only new or changed objects are hashed
again. This works for unversioned buckets (the ETag changes with the bytes) and for a registry in
another bucket (where the manifest points at copies). Without a listing (a revision pushed by
someone else) an entry whose manifest physical key (bucket, key, version id) and size equal the
object's is reused, for versioned objects only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumers.errors import PackagingError


@dataclass(frozen=True)
class ManifestEntry:
    """Where a package entry's bytes were and what they hashed to."""

    bucket: str | None
    key: str
    version_id: str | None
    size: int
    hash: Mapping[str, Any]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRecord:
    """The S3 object an entry was built from, and the hash its bytes had."""

    bucket: str
    key: str
    version_id: str | None
    size: int
    etag: str
    hash: Mapping[str, Any]


@dataclass(frozen=True)
class LatestRevision:
    """The top hash pointed to by ``latest``, its manifest entries and its source listing."""

    top_hash: str
    entries: Mapping[str, ManifestEntry]
    sources: Mapping[str, SourceRecord] = field(default_factory=dict)
    user_meta: Mapping[str, Any] = field(default_factory=dict)
    packaged_on: str | None = None  # the packaging date recorded with the source listing


SOURCES_PREFIX = ".quilt/edp/sources/"
SOURCES_FORMAT = 1


def sources_key(name: str, top_hash: str) -> str:
    """Where the source listing of revision ``top_hash`` of ``name`` lives in the registry."""
    return f"{SOURCES_PREFIX}{name}/{top_hash}.json"


def save_sources(
    s3: Any,
    registry: str,
    name: str,
    top_hash: str,
    sources: Mapping[str, SourceRecord],
    packaged_on: str | None = None,
) -> None:
    """Store the source listing of a revision (``.quilt/`` keys never reach the emitter)."""
    body = {
        "format": SOURCES_FORMAT,
        "packaged_on": packaged_on,
        "entries": {
            logical_key: {
                "bucket": record.bucket,
                "key": record.key,
                "version_id": record.version_id,
                "size": record.size,
                "etag": record.etag,
                "hash": dict(record.hash),
            }
            for logical_key, record in sorted(sources.items())
        },
    }
    try:
        s3.put_object(
            Bucket=registry,
            Key=sources_key(name, top_hash),
            Body=json.dumps(body, separators=(",", ":")).encode(),
            ContentType="application/json",
        )
    except (ClientError, BotoCoreError) as err:
        raise PackagingError(
            f"could not store the source listing of {name}@{top_hash[:7]}: {err}"
        ) from err


def parse_sources(body: bytes) -> dict[str, SourceRecord]:
    """A stored source listing; an unknown format or a damaged file reads as empty."""
    try:
        document = json.loads(body)
        if document.get("format") != SOURCES_FORMAT:
            return {}
        return {
            logical_key: SourceRecord(
                bucket=str(record["bucket"]),
                key=str(record["key"]),
                version_id=record.get("version_id"),
                size=int(record["size"]),
                etag=str(record["etag"]),
                hash=dict(record["hash"]),
            )
            for logical_key, record in document["entries"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def parse_packaged_on(body: bytes) -> str | None:
    """The packaging date a source listing records, if any."""
    try:
        value = json.loads(body).get("packaged_on")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def load_latest_revision(s3: Any, registry: str, name: str) -> LatestRevision | None:
    """The latest revision of ``name`` in ``s3://registry``, or ``None`` if there is none yet."""
    from quilt3.backends import get_package_registry

    package_registry = get_package_registry(f"s3://{registry}")
    pointer_key = package_registry.pointer_latest_pk(name).path
    pointer = _get_or_none(s3, registry, pointer_key)
    if pointer is None:
        return None
    top_hash = pointer.decode().strip()
    manifest_key = package_registry.manifest_pk(name, top_hash).path
    manifest = _get_or_none(s3, registry, manifest_key)
    if manifest is None:
        return None
    sources_body = _get_or_none(s3, registry, sources_key(name, top_hash))
    return LatestRevision(
        top_hash=top_hash,
        entries=parse_manifest_entries(manifest),
        sources=parse_sources(sources_body) if sources_body is not None else {},
        user_meta=parse_user_meta(manifest),
        packaged_on=parse_packaged_on(sources_body) if sources_body is not None else None,
    )


def parse_user_meta(manifest: bytes) -> dict[str, Any]:
    """The package metadata (``user_meta`` of the manifest's first line); ``{}`` when absent."""
    first_line = manifest.split(b"\n", 1)[0]
    try:
        user_meta = json.loads(first_line).get("user_meta")
    except (ValueError, AttributeError):
        return {}
    return user_meta if isinstance(user_meta, dict) else {}


def parse_manifest_entries(manifest: bytes) -> dict[str, ManifestEntry]:
    """The file entries of a JSONL manifest (the first line is the package metadata)."""
    from quilt3.util import PhysicalKey

    entries: dict[str, ManifestEntry] = {}
    for line in manifest.splitlines()[1:]:
        if not line.strip():
            continue
        record = json.loads(line)
        physical_keys = record.get("physical_keys") or []
        if "logical_key" not in record or not physical_keys or not record.get("hash"):
            continue  # directory-level records and incomplete entries carry nothing to reuse
        physical_key = PhysicalKey.from_url(physical_keys[0])
        entries[record["logical_key"]] = ManifestEntry(
            bucket=physical_key.bucket,
            key=physical_key.path,
            version_id=physical_key.version_id,
            size=int(record["size"]),
            hash=record["hash"],
            meta=record.get("meta") or {},
        )
    return entries


def _get_or_none(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
            return None
        raise PackagingError(f"could not read s3://{bucket}/{key}: {err}") from err
    except BotoCoreError as err:
        raise PackagingError(f"could not read s3://{bucket}/{key}: {err}") from err
    return body
