"""Hashes for package entries without their bytes passing through the consumer.

quilt3 hashes an S3 entry by reading every byte of it. S3 already knows, or can compute, the
same values: for each entry still without a hash (after reuse from the latest revision), in order

1. **the object's own checksum**, when it maps exactly onto a quilt3 hash type: a full-object
   ``ChecksumCRC64NVME`` is quilt3's ``CRC64NVME``; a full-object ``ChecksumSHA256`` of an object
   of one quilt3 chunk (at most 8 MiB) gives ``sha2-256-chunked`` by hashing it once more; a
   composite ``ChecksumSHA256`` whose parts are exactly quilt3's chunks *is* ``sha2-256-chunked``;
2. **S3 computes it**: a ``CopyObject`` of the exact version to a scratch key with
   ``ChecksumAlgorithm`` (one chunk for SHA-256, up to 5 GB for CRC64NVME), or a multipart
   upload whose ``UploadPartCopy`` parts are quilt3's chunks (per-part checksums combined here,
   then the upload is aborted); the scratch copy is deleted, and the scratch location is under
   ``.quilt/`` (never seen by the emitter) or in a bucket of its own, never the source key;
3. **reading the bytes** as quilt3 does (its chunk layout and checksum classes), only when S3
   refused (permissions, KMS, an emulator without the API) or the mode is ``read-bytes``;
   counted and logged.

The rules that decide (which checksum maps onto which hash) are pure functions; ``S3Hasher``
makes the requests, many objects at a time.
"""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from quilt3 import checksums

from consumers.errors import CopyRefused, PackagingError
from consumers.listing import ObjectVersion
from consumers.settings import (
    HASH_CRC64NVME,
    HASH_SHA256_CHUNKED,
    HASH_TYPES,
    HASHING_MODES,
    HASHING_READ_BYTES,
    HASHING_S3_CHECKSUMS,
)

logger = logging.getLogger(__name__)

SHA256_CHUNKED = HASH_SHA256_CHUNKED  # == quilt3's checksums.SHA256_CHUNKED_HASH_NAME
CRC64NVME = HASH_CRC64NVME  # == quilt3's checksums.CRC64NVME_HASH_NAME
DEFAULT_HASH_TYPE = SHA256_CHUNKED  # what every quilt3 since 6.0 and every catalog can verify
MODE_S3_CHECKSUMS = HASHING_S3_CHECKSUMS
MODE_READ_BYTES = HASHING_READ_BYTES

SCRATCH_PREFIX = (
    ".quilt/edp/scratch/"  # in the source bucket unless configured: .quilt/ never feeds the emitter
)
COPY_OBJECT_MAX_SIZE = 5 * 1024**3  # CopyObject's limit; larger objects go through UploadPartCopy
HASH_CONCURRENCY = 32  # objects hashed at once (capped by the S3 client's connection pool)
READ_CHUNK = 1024 * 1024  # bytes read per call when falling back to reading
MAX_PARTS_LISTED = 10_000  # S3's multipart limit: GetObjectAttributes lists every part
DELETE_OBJECTS_MAX_KEYS = 1000  # DeleteObjects API limit
# Source errors that mean the object changed under us: retry the event rather than fall back.
SOURCE_GONE = frozenset({"NoSuchKey", "NoSuchVersion", "PreconditionFailed", "412", "404"})

Method = Literal["checksum", "copy", "read", "empty"]
_S3_ALGORITHM = {SHA256_CHUNKED: "SHA256", CRC64NVME: "CRC64NVME"}


# --- pure rules ---------------------------------------------------------------------------------


def chunk_sizes(size: int) -> list[int]:
    """quilt3's chunk layout of an object of ``size`` bytes (8 MiB chunks, doubled past 10,000)."""
    chunk = checksums.get_checksum_chunksize(size)
    return [min(chunk, size - start) for start in range(0, size, chunk)]


def empty_hash(hash_type: str) -> dict[str, str]:
    """The hash of a 0-byte object (no request needed)."""
    return {
        "type": hash_type,
        "value": checksums.calculate_multipart_checksum_bytes(b"", checksum_type=hash_type),
    }


def _strip_parts_suffix(value: str) -> str:
    """``"<base64>-<parts>"`` (composite checksums in HeadObject and CompleteMultipartUpload) -> ``<base64>``."""
    return value.split("-", 1)[0]


def hash_from_checksum(
    checksum: Mapping[str, Any] | None,
    part_sizes: list[int] | None,
    size: int,
    hash_type: str,
) -> dict[str, str] | None:
    """The quilt3 hash an object's own S3 checksum gives, or ``None`` when it maps onto none.

    ``checksum`` is the ``Checksum`` of ``GetObjectAttributes`` (``ChecksumSHA256``,
    ``ChecksumCRC64NVME``, ``ChecksumType``...); ``part_sizes`` the sizes of its parts when it
    was uploaded in parts. A CRC64NVME is used only when ``hash_type`` is CRC64NVME (quilt3 < 7.2
    cannot verify it); a SHA-256 that maps exactly is used whatever ``hash_type`` is.
    """
    if not checksum:
        return None
    checksum_type = checksum.get("ChecksumType")
    crc = checksum.get("ChecksumCRC64NVME")
    if crc and hash_type == CRC64NVME and checksum_type in (None, "FULL_OBJECT"):
        return {"type": CRC64NVME, "value": _strip_parts_suffix(crc)}
    sha = checksum.get("ChecksumSHA256")
    if not sha:
        return None
    if checksum_type is None:
        checksum_type = "COMPOSITE" if "-" in sha or part_sizes else "FULL_OBJECT"
    value = _strip_parts_suffix(sha)
    if checksum_type == "FULL_OBJECT":
        if len(chunk_sizes(size)) != 1:
            return None  # a full-object SHA-256 of several chunks is not a hash of chunk hashes
        return {"type": SHA256_CHUNKED, "value": checksums._simple_s3_to_quilt_checksum(value)}
    if checksum_type == "COMPOSITE" and part_sizes == chunk_sizes(size):
        return {"type": SHA256_CHUNKED, "value": value}
    return None


def may_map(checksum_algorithms: tuple[str, ...] | None, hash_type: str) -> bool:
    """Whether an object whose listing reports ``checksum_algorithms`` may have a usable checksum.

    ``None`` (the listing said nothing) may; a listed CRC32 alone may not: no request is spent
    asking for its attributes.
    """
    if checksum_algorithms is None:
        return True
    usable = {"SHA256", "CRC64NVME"} if hash_type == CRC64NVME else {"SHA256"}
    return bool(usable & set(checksum_algorithms))


def combine_part_checksums(hash_type: str, parts: list[tuple[str, int]]) -> dict[str, str]:
    """The quilt3 hash of an object from the base64 S3 checksums of its chunks, in order.

    SHA-256: the hash of the concatenated chunk digests; CRC64NVME: the CRCs combined. Both use
    quilt3's own calculator classes, so the rule is quilt3's.
    """
    calculator = checksums.MultiPartChecksumCalculator.get_calculator_cls(hash_type)
    decoded = [(base64.b64decode(value), size) for value, size in parts]
    if hash_type == CRC64NVME:
        crc_parts = [
            checksums.ChecksumPart(int.from_bytes(raw, checksums.CRC64_BYTEORDER), size)  # type: ignore[arg-type]
            for raw, size in decoded
        ]
        return {"type": hash_type, "value": calculator.combine_parts(crc_parts)}
    sha_parts = [checksums.ChecksumPart(raw, size) for raw, size in decoded]
    return {"type": hash_type, "value": calculator.combine_parts(sha_parts)}


def hash_from_copy_checksum(hash_type: str, value: str, size: int) -> dict[str, str]:
    """The quilt3 hash from the checksum S3 computed over a whole copied object."""
    value = _strip_parts_suffix(value)
    if hash_type == SHA256_CHUNKED:
        return {"type": hash_type, "value": checksums._simple_s3_to_quilt_checksum(value)}
    return {"type": hash_type, "value": value}


def uses_copy_object(hash_type: str, size: int, copy_limit: int = COPY_OBJECT_MAX_SIZE) -> bool:
    """Whether one CopyObject gives the hash (else a multipart copy in quilt3's chunks does).

    A SHA-256 over a whole object is quilt3's hash only for a single chunk; a CRC64NVME always is.
    """
    if hash_type == SHA256_CHUNKED:
        return len(chunk_sizes(size)) == 1 and size <= copy_limit
    return size <= copy_limit


@dataclass(frozen=True)
class Scratch:
    """Where server-side copies go: ``bucket`` ``None`` means the source object's own bucket."""

    bucket: str | None = None
    prefix: str = SCRATCH_PREFIX

    @classmethod
    def parse(cls, location: str | None) -> Scratch:
        """``""``/``None`` -> ``<source bucket>/.quilt/edp/scratch/``; ``[s3://]bucket[/prefix]``."""
        text = (location or "").strip().removeprefix("s3://").strip("/")
        if not text:
            return cls()
        bucket, _, prefix = text.partition("/")
        return cls(bucket=bucket, prefix=f"{prefix}/" if prefix else "")

    def key_for(self, source_bucket: str) -> tuple[str, str]:
        return self.bucket or source_bucket, f"{self.prefix}{uuid.uuid4().hex}"

    def feeds_emitter(self, source_bucket: str) -> bool:
        """Whether copies here would be new objects of the watched bucket (outside ``.quilt/``)."""
        return (self.bucket or source_bucket) == source_bucket and not self.prefix.startswith(
            ".quilt/"
        )


# --- requests -----------------------------------------------------------------------------------


@dataclass
class HashReport:
    """How the entries without a hash got one: counts, and bytes read through the consumer."""

    from_checksums: int = 0
    computed_by_s3: int = 0
    empty: int = 0
    read: int = 0
    bytes_read: int = 0
    fallback_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def hashed(self) -> int:
        return self.from_checksums + self.computed_by_s3 + self.empty + self.read


@dataclass(frozen=True)
class _Result:
    hash: dict[str, str]
    method: Method
    bytes_read: int = 0
    reason: str = ""


class S3Hasher:
    """Gets quilt3 hashes of S3 object versions from S3 (see the module docstring).

    ``s3`` is a boto3 client (thread-safe). ``concurrency`` (objects at once, and parts of
    multipart copies at once) defaults to ``HASH_CONCURRENCY`` capped by the client's connection
    pool, so threads never queue for connections (the reference Lambda's client has 64).
    ``copy_limit`` is CopyObject's size limit (lowered in tests to exercise the multipart path).
    """

    def __init__(
        self,
        s3: Any,
        *,
        hash_type: str = DEFAULT_HASH_TYPE,
        mode: str = MODE_S3_CHECKSUMS,
        scratch: Scratch | None = None,
        concurrency: int | None = None,
        copy_limit: int = COPY_OBJECT_MAX_SIZE,
    ) -> None:
        if hash_type not in HASH_TYPES:
            raise ValueError(f"hash_type must be one of {HASH_TYPES}, got {hash_type!r}")
        if mode not in HASHING_MODES:
            raise ValueError(f"mode must be one of {HASHING_MODES}, got {mode!r}")
        self.s3 = s3
        self.hash_type = hash_type
        self.mode = mode
        self.scratch = scratch or Scratch()
        self.concurrency = concurrency or min(HASH_CONCURRENCY, _pool_size(s3))
        self.copy_limit = copy_limit
        self._parts_pool: ThreadPoolExecutor | None = None
        # Scratch copies to delete once the package's objects are hashed, in DeleteObjects
        # batches (one request per 1,000 copies instead of one each); None: delete at once.
        self._to_delete: list[tuple[str, str, str | None]] | None = None
        self._to_delete_lock = threading.Lock()

    # one call per package ------------------------------------------------------------------

    def hash_objects(
        self, bucket: str, objects: Mapping[str, ObjectVersion]
    ) -> tuple[dict[str, dict[str, str]], HashReport]:
        """Hash every object of ``objects`` (logical key -> object); many at a time."""
        report = HashReport()
        hashes: dict[str, dict[str, str]] = {}
        if not objects:
            return hashes, report
        # Largest first: the long multipart copies start early instead of trailing at the end.
        ordered = sorted(objects.items(), key=lambda item: item[1].size, reverse=True)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="edp-hash")
        parts = ThreadPoolExecutor(self.concurrency, thread_name_prefix="edp-hash-part")
        self._parts_pool = parts
        self._to_delete = []
        try:
            futures = {
                logical_key: pool.submit(self.hash_object, bucket, obj)
                for logical_key, obj in ordered
            }
            for logical_key, future in futures.items():
                result = future.result()
                hashes[logical_key] = result.hash
                _count(report, result, logical_key)
        finally:
            # On a failure the objects not started yet are dropped; the running ones finish,
            # so every scratch copy made is known before the batch delete.
            pool.shutdown(wait=True, cancel_futures=True)
            parts.shutdown(wait=True)
            self._parts_pool = None
            with self._to_delete_lock:
                to_delete, self._to_delete = self._to_delete, None
            self._delete_scratch_batch(to_delete or [])
        if report.read:
            logger.warning(
                "hashed by reading bytes",
                extra={
                    "objects_read": report.read,
                    "bytes_read": report.bytes_read,
                    "reasons": dict(list(report.fallback_reasons.items())[:10]),
                },
            )
        return hashes, report

    def hash_object(self, bucket: str, obj: ObjectVersion) -> _Result:
        """The quilt3 hash of one object version, by the first method S3 allows."""
        if obj.size == 0:
            return _Result(empty_hash(self.hash_type), "empty")
        if self.mode == MODE_READ_BYTES:
            return self._read(bucket, obj, reason="hashing mode read-bytes")
        own = (
            self._own_checksum(bucket, obj)
            if may_map(obj.checksum_algorithms, self.hash_type)
            else None
        )
        if own is not None:
            return _Result(own, "checksum")
        try:
            return _Result(self._copy_checksum(bucket, obj), "copy")
        except CopyRefused as refused:
            return self._read(bucket, obj, reason=str(refused))

    # 1. the object's own checksum ---------------------------------------------------------

    def _own_checksum(self, bucket: str, obj: ObjectVersion) -> dict[str, str] | None:
        try:
            attributes = self.s3.get_object_attributes(
                **_source(bucket, obj),
                ObjectAttributes=["Checksum", "ObjectParts", "ObjectSize"],
                MaxParts=MAX_PARTS_LISTED,
            )
        except ClientError as err:
            _raise_if_source_gone(err, bucket, obj)
            logger.info("no checksum attributes", extra={"key": obj.key, "error": _error_code(err)})
            return None
        except BotoCoreError as err:
            raise PackagingError(
                f"could not read s3://{bucket}/{obj.key}'s checksum: {err}"
            ) from err
        parts = attributes.get("ObjectParts") or {}
        listed = parts.get("Parts") or []
        part_sizes = None
        if (
            listed
            and len(listed) == parts.get("TotalPartsCount")
            and all("Size" in p for p in listed)
        ):
            part_sizes = [int(p["Size"]) for p in sorted(listed, key=lambda p: p["PartNumber"])]
        checksum = dict(attributes.get("Checksum") or {})
        if parts.get("TotalPartsCount") and "ChecksumType" not in checksum:
            checksum["ChecksumType"] = "COMPOSITE"  # uploaded in parts: never a full-object SHA-256
        return hash_from_checksum(checksum, part_sizes, obj.size, self.hash_type)

    # 2. S3 computes it on a scratch copy --------------------------------------------------

    def _copy_checksum(self, bucket: str, obj: ObjectVersion) -> dict[str, str]:
        if uses_copy_object(self.hash_type, obj.size, self.copy_limit):
            return self._copy_object(bucket, obj)
        return self._multipart_copy(bucket, obj)

    def _copy_object(self, bucket: str, obj: ObjectVersion) -> dict[str, str]:
        algorithm = _S3_ALGORITHM[self.hash_type]
        scratch_bucket, scratch_key = self.scratch.key_for(bucket)
        response = self._call(
            "CopyObject",
            bucket,
            obj,
            self.s3.copy_object,
            Bucket=scratch_bucket,
            Key=scratch_key,
            CopySource=_source(bucket, obj),
            **_if_match(obj),
            ChecksumAlgorithm=algorithm,
            TaggingDirective="REPLACE",  # no tags: no s3:PutObjectTagging on the scratch prefix
        )
        self._delete_scratch(scratch_bucket, scratch_key, response.get("VersionId"))
        value = (response.get("CopyObjectResult") or {}).get(f"Checksum{algorithm}")
        if not value:
            raise CopyRefused(f"CopyObject returned no {algorithm} checksum")
        return hash_from_copy_checksum(self.hash_type, value, obj.size)

    def _multipart_copy(self, bucket: str, obj: ObjectVersion) -> dict[str, str]:
        algorithm = _S3_ALGORITHM[self.hash_type]
        scratch_bucket, scratch_key = self.scratch.key_for(bucket)
        upload = self._call(
            "CreateMultipartUpload",
            bucket,
            obj,
            self.s3.create_multipart_upload,
            Bucket=scratch_bucket,
            Key=scratch_key,
            ChecksumAlgorithm=algorithm,
            ChecksumType="FULL_OBJECT" if self.hash_type == CRC64NVME else "COMPOSITE",
        )
        upload_id = upload["UploadId"]
        completed = False
        try:
            sizes = chunk_sizes(obj.size)
            results = self._copy_parts(bucket, obj, scratch_bucket, scratch_key, upload_id, sizes)
            values = [result.get(f"Checksum{algorithm}") for result in results]
            if all(values):
                return combine_part_checksums(
                    self.hash_type, [(str(v), size) for v, size in zip(values, sizes, strict=True)]
                )
            # An emulator that copies parts without checksums (moto): complete the upload and
            # read the checksum S3 keeps for the whole copy, in the same chunk layout.
            completed = True
            done = self._call(
                "CompleteMultipartUpload",
                bucket,
                obj,
                self.s3.complete_multipart_upload,
                Bucket=scratch_bucket,
                Key=scratch_key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": number, "ETag": result["ETag"]}
                        for number, result in enumerate(results, 1)
                    ]
                },
            )
            try:
                value = done.get(f"Checksum{algorithm}") or self._scratch_checksum(
                    scratch_bucket, scratch_key, done.get("VersionId"), algorithm
                )
            finally:
                self._delete_scratch(scratch_bucket, scratch_key, done.get("VersionId"))
            if not value:
                raise CopyRefused(f"multipart copy returned no {algorithm} checksum")
            return {"type": self.hash_type, "value": _strip_parts_suffix(value)}
        finally:
            if not completed:
                self._abort(scratch_bucket, scratch_key, upload_id)

    def _copy_parts(
        self,
        bucket: str,
        obj: ObjectVersion,
        scratch_bucket: str,
        scratch_key: str,
        upload_id: str,
        sizes: list[int],
    ) -> list[dict[str, Any]]:
        def copy_part(number: int, start: int, size: int) -> dict[str, Any]:
            response = self._call(
                "UploadPartCopy",
                bucket,
                obj,
                self.s3.upload_part_copy,
                Bucket=scratch_bucket,
                Key=scratch_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=_source(bucket, obj),
                CopySourceRange=f"bytes={start}-{start + size - 1}",
                **_if_match(obj),
            )
            part: dict[str, Any] = response["CopyPartResult"]
            return part

        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        pool = self._parts_pool
        if pool is None:  # hash_object called on its own: parts one after the other
            return [
                copy_part(n, s, z) for n, (s, z) in enumerate(zip(starts, sizes, strict=True), 1)
            ]
        futures: list[Future[dict[str, Any]]] = [
            pool.submit(copy_part, n, s, z)
            for n, (s, z) in enumerate(zip(starts, sizes, strict=True), 1)
        ]
        return [future.result() for future in futures]

    def _scratch_checksum(
        self, scratch_bucket: str, scratch_key: str, version_id: str | None, algorithm: str
    ) -> str | None:
        kwargs: dict[str, Any] = {"Bucket": scratch_bucket, "Key": scratch_key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            attributes = self.s3.get_object_attributes(**kwargs, ObjectAttributes=["Checksum"])
        except ClientError as err:
            raise CopyRefused(
                f"GetObjectAttributes on the scratch copy: {_error_code(err)}"
            ) from err
        value: str | None = (attributes.get("Checksum") or {}).get(f"Checksum{algorithm}")
        return value

    def _call(
        self,
        operation: str,
        bucket: str,
        obj: ObjectVersion,
        call: Callable[..., Any],
        **kwargs: Any,
    ) -> Any:
        try:
            return call(**kwargs)
        except ClientError as err:
            _raise_if_source_gone(err, bucket, obj)
            raise CopyRefused(f"{operation}: {_error_code(err)}") from err
        except BotoCoreError as err:
            raise PackagingError(f"{operation} of s3://{bucket}/{obj.key} failed: {err}") from err

    def _delete_scratch(
        self, scratch_bucket: str, scratch_key: str, version_id: str | None
    ) -> None:
        """Delete a scratch copy (its version, so no delete marker is left), now or in a batch."""
        with self._to_delete_lock:
            if self._to_delete is not None:
                self._to_delete.append((scratch_bucket, scratch_key, version_id))
                return
        self._delete_scratch_batch([(scratch_bucket, scratch_key, version_id)])

    def _delete_scratch_batch(self, copies: list[tuple[str, str, str | None]]) -> None:
        by_bucket: dict[str, list[dict[str, str]]] = {}
        for scratch_bucket, scratch_key, version_id in copies:
            target = {"Key": scratch_key}
            if version_id:
                target["VersionId"] = version_id
            by_bucket.setdefault(scratch_bucket, []).append(target)
        for scratch_bucket, targets in by_bucket.items():
            for start in range(0, len(targets), DELETE_OBJECTS_MAX_KEYS):
                batch = targets[start : start + DELETE_OBJECTS_MAX_KEYS]
                try:
                    response = self.s3.delete_objects(
                        Bucket=scratch_bucket, Delete={"Objects": batch, "Quiet": True}
                    )
                    errors = response.get("Errors", [])
                except (ClientError, BotoCoreError) as err:
                    errors = [{"Key": target["Key"], "Message": str(err)} for target in batch]
                if errors:
                    logger.warning(
                        "scratch copies not deleted",
                        extra={
                            "bucket": scratch_bucket,
                            "count": len(errors),
                            "first": f"{errors[0].get('Key')}: {errors[0].get('Message')}",
                        },
                    )

    def _abort(self, scratch_bucket: str, scratch_key: str, upload_id: str) -> None:
        try:
            self.s3.abort_multipart_upload(
                Bucket=scratch_bucket, Key=scratch_key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError) as err:
            logger.warning(
                "scratch upload not aborted",
                extra={"bucket": scratch_bucket, "key": scratch_key, "error": str(err)},
            )

    # 3. read the bytes, as quilt3 does ----------------------------------------------------

    def _read(self, bucket: str, obj: ObjectVersion, *, reason: str) -> _Result:
        """quilt3's hash from the bytes: its chunk layout, its calculator classes, ranged GETs."""
        calculator_cls = checksums.MultiPartChecksumCalculator.get_calculator_cls(self.hash_type)
        parts = []
        read = 0
        start = 0
        for size in chunk_sizes(obj.size):
            calculator = calculator_cls()
            kwargs: dict[str, Any] = {
                **_source(bucket, obj),
                "Range": f"bytes={start}-{start + size - 1}",
            }
            if not obj.is_versioned and obj.etag:
                kwargs["IfMatch"] = obj.etag
            try:
                body = self.s3.get_object(**kwargs)["Body"]
                while chunk := body.read(READ_CHUNK):
                    calculator.update(chunk)
                    read += len(chunk)
            except ClientError as err:
                _raise_if_source_gone(err, bucket, obj)
                raise PackagingError(f"could not read s3://{bucket}/{obj.key}: {err}") from err
            except BotoCoreError as err:
                raise PackagingError(f"could not read s3://{bucket}/{obj.key}: {err}") from err
            parts.append(calculator.digest(size))
            start += size
        value = calculator_cls.combine_parts(parts)
        return _Result({"type": self.hash_type, "value": value}, "read", read, reason)


def _count(report: HashReport, result: _Result, logical_key: str) -> None:
    if result.method == "checksum":
        report.from_checksums += 1
    elif result.method == "copy":
        report.computed_by_s3 += 1
    elif result.method == "empty":
        report.empty += 1
    else:
        report.read += 1
        report.bytes_read += result.bytes_read
        report.fallback_reasons[logical_key] = result.reason


def _if_match(obj: ObjectVersion) -> dict[str, str]:
    """Copy only the bytes that were listed: a changed object fails with PreconditionFailed."""
    return {"CopySourceIfMatch": obj.etag} if obj.etag else {}


def _pool_size(s3: Any) -> int:
    """The connection pool of a boto3 client (botocore's default is 10)."""
    config = getattr(getattr(s3, "meta", None), "config", None)
    size = getattr(config, "max_pool_connections", None)
    return size if isinstance(size, int) and size > 0 else 10


def _source(bucket: str, obj: ObjectVersion) -> dict[str, str]:
    source = {"Bucket": bucket, "Key": obj.key}
    if obj.is_versioned and obj.version_id:
        source["VersionId"] = obj.version_id
    return source


def _error_code(err: ClientError) -> str:
    error = err.response.get("Error", {})
    return f"{error.get('Code', '?')} {error.get('Message', '')}".strip()


def _raise_if_source_gone(err: ClientError, bucket: str, obj: ObjectVersion) -> None:
    if err.response.get("Error", {}).get("Code") in SOURCE_GONE:
        raise PackagingError(
            f"s3://{bucket}/{obj.key} changed while it was being packaged "
            f"({_error_code(err)}): retry the event"
        ) from err


def missing_s3_hashes(
    package: Any, objects: Mapping[str, ObjectVersion]
) -> dict[str, ObjectVersion]:
    """The listed objects whose package entries still lack a hash (after reuse)."""
    return {
        logical_key: objects[logical_key]
        for logical_key, entry in package.walk()
        if entry.hash is None and not entry.physical_key.is_local() and logical_key in objects
    }


def hash_entries(
    package: Any, objects: Mapping[str, ObjectVersion], bucket: str, hasher: S3Hasher
) -> HashReport:
    """Give every S3 entry of ``package`` still without a hash its quilt3 hash, from S3."""
    todo = missing_s3_hashes(package, objects)
    hashes, report = hasher.hash_objects(bucket, todo)
    for logical_key, value in hashes.items():
        package[logical_key].hash = value
    return report


def summarize(report: HashReport) -> dict[str, int]:
    """The report as log fields."""
    return {
        "hashes_from_checksums": report.from_checksums,
        "hashes_computed_by_s3": report.computed_by_s3,
        "hashes_of_empty_objects": report.empty,
        "objects_read": report.read,
        "bytes_read": report.bytes_read,
    }
