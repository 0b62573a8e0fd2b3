"""The latest revision of a package, read straight from the registry so its hashes can be reused.

quilt3's ``dedupe`` hashes every byte of every object before it compares top hashes. Here an
object whose (logical key, bucket, key, version id, size) equals the latest manifest's entry takes
that entry's hash instead; only new or changed objects are hashed again. Version ids make the
match exact: an object version's bytes never change. Unversioned objects (version ``null``) are
always hashed again, because S3 can replace their bytes under the same key.
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
class LatestRevision:
    """The top hash pointed to by ``latest`` and the entries of its manifest."""

    top_hash: str
    entries: Mapping[str, ManifestEntry]


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
    return LatestRevision(top_hash=top_hash, entries=parse_manifest_entries(manifest))


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
