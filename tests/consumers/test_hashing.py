"""The hashing rules (pure), and the S3 paths moto cannot model, with botocore's Stubber.

moto lists no parts in GetObjectAttributes and returns no checksums from UploadPartCopy, so the
composite SHA-256 mapping and the combine-part-checksums-then-abort path (what real S3 does) are
tested here against stubbed responses built from real bytes; every value is checked against
quilt3's own hash of those bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import awscrt.checksums
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from quilt3 import checksums

from consumers.errors import PackagingError, SettingsError
from consumers.hashing import (
    CRC64NVME,
    SHA256_CHUNKED,
    S3Hasher,
    Scratch,
    chunk_sizes,
    combine_part_checksums,
    hash_from_checksum,
    may_map,
    uses_copy_object,
)
from consumers.listing import ObjectVersion
from consumers.settings import ConsumerSettings

MiB = 1024 * 1024
BUCKET = "instrument"
VERSION = "v1"
ETAG = '"etag-1"'


def payload(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def quilt_hash(data: bytes, hash_type: str) -> dict[str, str]:
    return {
        "type": hash_type,
        "value": checksums.calculate_multipart_checksum_bytes(data, checksum_type=hash_type),
    }


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def sha256_b64(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


def crc64_b64(data: bytes) -> str:
    return b64(awscrt.checksums.crc64nvme(data).to_bytes(8, "big"))


def pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    out, start = [], 0
    for size in sizes:
        out.append(data[start : start + size])
        start += size
    return out


def test_hash_type_names_are_quilt3s_own() -> None:
    assert (SHA256_CHUNKED, CRC64NVME) == (
        checksums.SHA256_CHUNKED_HASH_NAME,
        checksums.CRC64NVME_HASH_NAME,
    )


@pytest.mark.parametrize(
    ("size", "sizes"),
    [
        (0, []),
        (1, [1]),
        (8 * MiB, [8 * MiB]),
        (8 * MiB + 1, [8 * MiB, 1]),
        (20 * MiB, [8 * MiB, 8 * MiB, 4 * MiB]),
    ],
)
def test_chunk_sizes_are_quilt3s_layout(size: int, sizes: list[int]) -> None:
    assert chunk_sizes(size) == sizes


def test_chunks_double_past_ten_thousand_parts() -> None:
    sizes = chunk_sizes(100 * 1024**3)
    assert len(sizes) <= 10_000 and sizes[0] == 16 * MiB and sum(sizes) == 100 * 1024**3


def test_full_object_sha256_of_one_chunk_is_hashed_once_more() -> None:
    data = payload(3 * MiB)
    checksum = {"ChecksumSHA256": sha256_b64(data), "ChecksumType": "FULL_OBJECT"}
    assert hash_from_checksum(checksum, None, len(data), SHA256_CHUNKED) == quilt_hash(
        data, SHA256_CHUNKED
    )
    # Whatever the preferred type: quilt3 >= 6 reads sha2-256-chunked.
    assert hash_from_checksum(checksum, None, len(data), CRC64NVME) == quilt_hash(
        data, SHA256_CHUNKED
    )


def test_full_object_sha256_of_several_chunks_maps_onto_nothing() -> None:
    data = payload(9 * MiB)
    checksum = {"ChecksumSHA256": sha256_b64(data), "ChecksumType": "FULL_OBJECT"}
    assert hash_from_checksum(checksum, None, len(data), SHA256_CHUNKED) is None


def composite(data: bytes, sizes: list[int]) -> str:
    digests = b"".join(hashlib.sha256(p).digest() for p in pieces(data, sizes))
    return f"{sha256_b64(digests)}-{len(sizes)}"


def test_composite_sha256_in_quilt3s_chunks_is_sha2_256_chunked() -> None:
    data = payload(17 * MiB + 3)
    sizes = chunk_sizes(len(data))
    checksum = {"ChecksumSHA256": composite(data, sizes), "ChecksumType": "COMPOSITE"}
    assert hash_from_checksum(checksum, sizes, len(data), SHA256_CHUNKED) == quilt_hash(
        data, SHA256_CHUNKED
    )


def test_composite_sha256_in_other_parts_maps_onto_nothing() -> None:
    data = payload(17 * MiB)
    sizes = [6 * MiB, 6 * MiB, 5 * MiB]
    checksum = {"ChecksumSHA256": composite(data, sizes), "ChecksumType": "COMPOSITE"}
    assert hash_from_checksum(checksum, sizes, len(data), SHA256_CHUNKED) is None
    assert hash_from_checksum(checksum, None, len(data), SHA256_CHUNKED) is None  # parts unknown


def test_crc64nvme_is_used_only_when_it_is_the_hash_type() -> None:
    data = payload(10 * MiB)
    checksum = {"ChecksumCRC64NVME": crc64_b64(data), "ChecksumType": "FULL_OBJECT"}
    assert hash_from_checksum(checksum, None, len(data), CRC64NVME) == quilt_hash(data, CRC64NVME)
    assert hash_from_checksum(checksum, None, len(data), SHA256_CHUNKED) is None


@pytest.mark.parametrize(
    "checksum", [None, {}, {"ChecksumCRC32": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}]
)
def test_other_checksums_map_onto_nothing(checksum: Any) -> None:
    assert hash_from_checksum(checksum, None, 100, SHA256_CHUNKED) is None
    assert hash_from_checksum(checksum, None, 100, CRC64NVME) is None


@pytest.mark.parametrize("hash_type", [SHA256_CHUNKED, CRC64NVME])
def test_part_checksums_combine_into_quilt3s_hash(hash_type: str) -> None:
    data = payload(20 * MiB + 7)
    sizes = chunk_sizes(len(data))
    one = sha256_b64 if hash_type == SHA256_CHUNKED else crc64_b64
    parts = [(one(p), len(p)) for p in pieces(data, sizes)]
    assert combine_part_checksums(hash_type, parts) == quilt_hash(data, hash_type)


def test_copy_object_only_where_one_whole_object_checksum_is_the_hash() -> None:
    assert uses_copy_object(SHA256_CHUNKED, 8 * MiB)
    assert not uses_copy_object(SHA256_CHUNKED, 8 * MiB + 1)
    assert uses_copy_object(CRC64NVME, 5 * 1024**3)
    assert not uses_copy_object(CRC64NVME, 5 * 1024**3 + 1)


def test_scratch_defaults_inside_the_watched_bucket_and_says_when_it_would_feed_the_emitter() -> (
    None
):
    default = Scratch.parse(None)
    assert (default.bucket, default.prefix) == (None, ".quilt/edp/scratch/")
    assert not default.feeds_emitter("instrument")
    own = Scratch.parse("s3://edp-scratch")
    assert (own.bucket, own.prefix) == ("edp-scratch", "")
    assert not own.feeds_emitter("instrument")
    assert Scratch.parse("instrument/tmp/").feeds_emitter("instrument")  # would be packaged
    assert not Scratch.parse("instrument/.quilt/tmp").feeds_emitter("instrument")
    bucket, key = default.key_for("instrument")
    assert bucket == "instrument" and key.startswith(".quilt/edp/scratch/")


def settings(**kwargs: Any) -> ConsumerSettings:
    return ConsumerSettings(
        quarantine_bucket="quarantine",
        sns_topic_arn="arn:aws:sns:us-east-1:123456789012:alerts",
        quilt_url="https://quilt.example.com",
        **kwargs,
    )


def test_settings_default_to_s3_checksums_and_sha2_256_chunked() -> None:
    made = settings()
    assert (made.hashing_mode, made.hash_type, made.hash_scratch) == (
        "s3-checksums",
        "sha2-256-chunked",
        None,
    )


def test_settings_from_env_read_and_normalise_the_hashing_variables() -> None:
    env = {
        "QUARANTINE_BUCKET_NAME": "quarantine",
        "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
        "QUILT_URL": "https://quilt.example.com",
        "HASHING_MODE": "read-bytes",
        "HASH_TYPE": "CRC64NVME",
        "HASH_SCRATCH": "s3://edp-scratch/tmp/",
    }
    made = ConsumerSettings.from_env(env)
    assert (made.hashing_mode, made.hash_type, made.hash_scratch) == (
        "read-bytes",
        "CRC64NVME",
        "edp-scratch/tmp/",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hashing_mode": "md5"}, "hashing_mode: 'md5' is not one of s3-checksums, read-bytes"),
        ({"hash_type": "SHA256"}, "hash_type: 'SHA256' is not one of sha2-256-chunked, CRC64NVME"),
        ({"hash_scratch": "s3://Bad_Bucket/x"}, "hash_scratch: 'Bad_Bucket'"),
    ],
)
def test_bad_hashing_settings_are_one_clear_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        settings(**kwargs)


# --- Stubber: what real S3 answers and moto does not -------------------------------------------


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    import boto3

    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://s3.us-east-1.amazonaws.com",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def obj(size: int, key: str = "run/reads.bam") -> ObjectVersion:
    return ObjectVersion(key=key, version_id=VERSION, size=size, etag=ETAG)


def expect_attributes(stubber: Stubber, response: dict[str, Any]) -> None:
    stubber.add_response(
        "get_object_attributes",
        response,
        {
            "Bucket": BUCKET,
            "Key": "run/reads.bam",
            "VersionId": VERSION,
            "ObjectAttributes": ["Checksum", "ObjectParts", "ObjectSize"],
            "MaxParts": 10_000,
        },
    )


def expect_sha256_copy(stubber: Stubber, data: bytes, scratch_version: str | None) -> None:
    """One CopyObject of the listed version to a scratch key, answering the SHA-256 of ``data``,
    then the scratch copy deleted (by version when the copy returned one)."""
    answer: dict[str, Any] = {"CopyObjectResult": {"ChecksumSHA256": sha256_b64(data)}}
    scratch: dict[str, Any] = {"Key": ANY}
    if scratch_version is not None:
        answer["VersionId"] = scratch["VersionId"] = scratch_version
    stubber.add_response(
        "copy_object",
        answer,
        {
            "Bucket": BUCKET,
            "Key": ANY,
            "CopySource": {"Bucket": BUCKET, "Key": "run/reads.bam", "VersionId": VERSION},
            "CopySourceIfMatch": ETAG,
            "ChecksumAlgorithm": "SHA256",
            "TaggingDirective": "REPLACE",
        },
    )
    stubber.add_response(
        "delete_objects",
        {},
        {"Bucket": BUCKET, "Delete": {"Objects": [scratch], "Quiet": True}},
    )


def test_composite_sha256_listed_in_quilt3s_parts_needs_no_copy(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stubber = stubbed
    data = payload(17 * MiB)
    sizes = chunk_sizes(len(data))
    expect_attributes(
        stubber,
        {
            "Checksum": {
                "ChecksumSHA256": composite(data, sizes)[:-2],
                "ChecksumType": "COMPOSITE",
            },
            "ObjectParts": {
                "TotalPartsCount": len(sizes),
                "Parts": [{"PartNumber": n, "Size": s} for n, s in enumerate(sizes, 1)],
            },
            "ObjectSize": len(data),
        },
    )

    result = S3Hasher(client).hash_object(BUCKET, obj(len(data)))

    assert (result.method, result.hash) == ("checksum", quilt_hash(data, SHA256_CHUNKED))


@pytest.mark.parametrize("hash_type", [SHA256_CHUNKED, CRC64NVME])
def test_multipart_copy_combines_part_checksums_and_aborts(
    stubbed: tuple[Any, Stubber], hash_type: str
) -> None:
    client, stubber = stubbed
    data = payload(17 * MiB + 11)
    sizes = chunk_sizes(len(data))
    algorithm, one = (
        ("SHA256", sha256_b64) if hash_type == SHA256_CHUNKED else ("CRC64NVME", crc64_b64)
    )
    expect_attributes(
        stubber, {"Checksum": {"ChecksumCRC32": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}}
    )
    stubber.add_response(
        "create_multipart_upload",
        {"UploadId": "up-1", "Bucket": "edp-scratch", "Key": "k"},
        {
            "Bucket": "edp-scratch",
            "Key": ANY,
            "ChecksumAlgorithm": algorithm,
            "ChecksumType": "FULL_OBJECT" if hash_type == CRC64NVME else "COMPOSITE",
        },
    )
    start = 0
    for number, part in enumerate(pieces(data, sizes), 1):
        stubber.add_response(
            "upload_part_copy",
            {"CopyPartResult": {"ETag": f'"p{number}"', f"Checksum{algorithm}": one(part)}},
            {
                "Bucket": "edp-scratch",
                "Key": ANY,
                "UploadId": "up-1",
                "PartNumber": number,
                "CopySource": {"Bucket": BUCKET, "Key": "run/reads.bam", "VersionId": VERSION},
                "CopySourceRange": f"bytes={start}-{start + len(part) - 1}",
                "CopySourceIfMatch": ETAG,
            },
        )
        start += len(part)
    stubber.add_response(
        "abort_multipart_upload", {}, {"Bucket": "edp-scratch", "Key": ANY, "UploadId": "up-1"}
    )
    hasher = S3Hasher(
        client, hash_type=hash_type, scratch=Scratch.parse("edp-scratch"), copy_limit=MiB
    )

    result = hasher.hash_object(BUCKET, obj(len(data)))

    assert (result.method, result.hash, result.bytes_read) == (
        "copy",
        quilt_hash(data, hash_type),
        0,
    )


def test_a_refused_copy_falls_back_to_reading_the_version(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    data = payload(300_000)
    expect_attributes(
        stubber, {"Checksum": {"ChecksumCRC32": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}}
    )
    stubber.add_client_error(
        "copy_object",
        service_error_code="AccessDenied",
        service_message="KMS key policy",
        http_status_code=403,
    )
    stubber.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data)},
        {"Bucket": BUCKET, "Key": "run/reads.bam", "VersionId": VERSION, "Range": "bytes=0-299999"},
    )

    result = S3Hasher(client).hash_object(BUCKET, obj(len(data)))

    assert (result.method, result.hash, result.bytes_read) == (
        "read",
        quilt_hash(data, SHA256_CHUNKED),
        len(data),
    )
    assert "CopyObject: AccessDenied" in result.reason


def test_an_object_changed_during_the_copy_is_retried_not_read(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stubber = stubbed
    expect_attributes(stubber, {})
    stubber.add_client_error(
        "copy_object", service_error_code="PreconditionFailed", http_status_code=412
    )

    with pytest.raises(PackagingError, match="changed while it was being packaged"):
        S3Hasher(client).hash_object(BUCKET, obj(1000))


@pytest.mark.parametrize(
    ("algorithms", "hash_type", "expected"),
    [
        (None, SHA256_CHUNKED, True),  # the listing said nothing (moto): ask
        (("CRC32",), SHA256_CHUNKED, False),
        (("CRC64NVME",), SHA256_CHUNKED, False),  # not used for sha2-256-chunked
        (("CRC64NVME",), CRC64NVME, True),
        (("SHA256",), SHA256_CHUNKED, True),
        (("SHA256",), CRC64NVME, True),
        ((), CRC64NVME, False),
    ],
)
def test_the_listing_tells_which_objects_are_worth_an_attributes_request(
    algorithms: tuple[str, ...] | None, hash_type: str, expected: bool
) -> None:
    assert may_map(algorithms, hash_type) is expected


def test_listed_checksum_algorithms_reach_the_object_versions(
    stubbed: tuple[Any, Stubber],
) -> None:
    from consumers.listing import list_current_objects

    client, stubber = stubbed
    version = {"Key": "run/a", "VersionId": "v1", "IsLatest": True, "Size": 3, "ETag": ETAG}
    stubber.add_response(
        "list_object_versions",
        {
            "Versions": [
                {**version, "ChecksumAlgorithm": ["CRC32"]},
                {**version, "Key": "run/b"},
            ]
        },
        {"Bucket": BUCKET, "Prefix": "run/"},
    )
    listed = list_current_objects(client, BUCKET, "run/")
    assert [o.checksum_algorithms for o in listed] == [("CRC32",), None]


def test_an_object_listed_with_only_crc32_is_copied_without_asking_its_attributes(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stubber = stubbed
    data = payload(5000)
    listed = ObjectVersion(
        "run/reads.bam", VERSION, len(data), ETAG, checksum_algorithms=("CRC32",)
    )
    expect_sha256_copy(stubber, data, scratch_version="scratch-v1")

    result = S3Hasher(client).hash_object(BUCKET, listed)

    assert (result.method, result.hash) == ("copy", quilt_hash(data, SHA256_CHUNKED))


def test_a_multipart_sha256_without_a_checksum_type_is_not_taken_for_a_full_object_one(
    stubbed: tuple[Any, Stubber],
) -> None:
    """Two parts (5 MiB + 2 MiB) of a 7 MiB object: one quilt3 chunk, but the composite value
    is not quilt3's single-chunk hash. Without ChecksumType (older answers), the part count
    alone must keep it from being read as a full-object SHA-256: S3 computes the hash instead."""
    client, stubber = stubbed
    data = payload(7 * MiB)
    sizes = [5 * MiB, 2 * MiB]
    expect_attributes(
        stubber,
        {
            "Checksum": {"ChecksumSHA256": composite(data, sizes)[:-2]},
            "ObjectParts": {"TotalPartsCount": 2},
        },
    )
    expect_sha256_copy(stubber, data, scratch_version=None)

    result = S3Hasher(client).hash_object(BUCKET, obj(len(data)))

    assert (result.method, result.hash) == ("copy", quilt_hash(data, SHA256_CHUNKED))
