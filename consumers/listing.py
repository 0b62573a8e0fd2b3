"""What is in an S3 prefix right now: the latest version of every object, read without hashing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumers.errors import PackagingError

# list_object_versions reports unversioned objects with this version id.
UNVERSIONED = "null"


@dataclass(frozen=True)
class ObjectVersion:
    """The current version of one object: enough to tell whether it changed, without its bytes."""

    key: str
    version_id: str | None
    size: int
    etag: str
    # The checksum algorithms S3's listing reports (e.g. ("CRC64NVME",)); None when the listing
    # says nothing (moto, older S3-compatible stores): the hasher then asks for them.
    checksum_algorithms: tuple[str, ...] | None = field(default=None, compare=False)

    @property
    def is_versioned(self) -> bool:
        return self.version_id not in (None, UNVERSIONED)


def list_current_objects(s3: Any, bucket: str, prefix: str) -> list[ObjectVersion]:
    """Latest version of each object under ``prefix`` (delete markers and folder markers left out)."""
    objects = []
    try:
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                if not version.get("IsLatest") or version["Key"].endswith("/"):
                    continue
                objects.append(
                    ObjectVersion(
                        key=version["Key"],
                        version_id=version.get("VersionId"),
                        size=int(version["Size"]),
                        etag=version.get("ETag", ""),
                        checksum_algorithms=tuple(version["ChecksumAlgorithm"])
                        if "ChecksumAlgorithm" in version
                        else None,
                    )
                )
    except (ClientError, BotoCoreError) as err:
        raise PackagingError(f"could not list s3://{bucket}/{prefix}: {err}") from err
    objects.sort(key=lambda obj: obj.key)
    return objects


def read_object(s3: Any, bucket: str, obj: ObjectVersion) -> bytes:
    """The bytes of exactly the listed version of ``obj``."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": obj.key}
    if obj.version_id is not None:
        kwargs["VersionId"] = obj.version_id
    try:
        body: bytes = s3.get_object(**kwargs)["Body"].read()
    except (ClientError, BotoCoreError) as err:
        raise PackagingError(f"could not read s3://{bucket}/{obj.key}: {err}") from err
    return body
