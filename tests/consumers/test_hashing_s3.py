"""Packaging without reading bytes, on moto: every hash from S3's checksums, verified by quilt3.

moto computes checksums on PutObject, CopyObject and multipart uploads, so the "own checksum"
and "copy" paths run for real here. What moto cannot model (part lists in GetObjectAttributes,
checksums on UploadPartCopy results) is covered with botocore's Stubber in
test_hashing.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumers.clients import Clients
from consumers.events import ReadyEvent
from consumers.hashing import SCRATCH_PREFIX, S3Hasher, Scratch
from consumers.listing import list_current_objects
from consumers.pipeline import package_prefix
from consumers.settings import HASH_CRC64NVME, HASH_SHA256_CHUNKED
from tests.consumers.consumer_helpers import World

PREFIX = "seq-lab/run-7/"
NAME = "seq-lab/run-7"
MiB = 1024 * 1024
GOOD_META = {
    "Author": "EDP",
    "ComputerName": "Sequencer 1",
    "Date": "2026-11-29",
    "ProjectID": "P",
    "StudyID": "S",
}
COPY_CALLS = ("CopyObject", "CreateMultipartUpload", "UploadPartCopy", "CompleteMultipartUpload")


def payload(size: int, seed: int) -> bytes:
    block = bytes((seed * 31 + i) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


@dataclass
class CountingS3:
    """A boto3 S3 client whose calls and GetObject bytes (per key) are counted by event hooks."""

    client: Any
    calls: Counter[str] = field(default_factory=Counter)
    bytes_by_key: Counter[str] = field(default_factory=Counter)

    @classmethod
    def make(cls) -> CountingS3:
        import boto3

        counting = cls(boto3.client("s3"))
        events = counting.client.meta.events
        events.register("before-call.s3.*", counting._count_call)
        events.register("after-call.s3.GetObject", counting._count_bytes)
        return counting

    def _count_call(self, model: Any, params: Any, **kwargs: Any) -> None:
        self.calls[model.name] += 1

    def _count_bytes(self, http_response: Any, parsed: Any, model: Any, **kwargs: Any) -> None:
        key = http_response.url.split("?")[0]
        self.bytes_by_key[key] += int(parsed.get("ContentLength", 0))

    def bytes_read_under(self, bucket: str, prefix: str) -> int:
        """GetObject bytes of the prefix's data (its .quiltignore, read for its rules, aside)."""
        return sum(
            n
            for url, n in self.bytes_by_key.items()
            if f"/{bucket}/{prefix}" in url and not url.endswith("/.quiltignore")
        )


def put_mixed_prefix(world: World) -> dict[str, bytes]:
    """Objects with each kind of S3 checksum: CRC64NVME, SHA-256 (single and multipart), CRC32, none."""
    import boto3
    from botocore.config import Config

    s3 = world.s3
    files = {
        "crc64.bin": payload(300_000, 1),
        "sha-small.bin": payload(2 * MiB, 2),
        "sha-multipart.bin": payload(17 * MiB, 3),
        "crc32-small.bin": payload(500_000, 4),
        "crc32-large.bin": payload(9 * MiB + 5, 5),
        "none.bin": payload(123_457, 6),
        "empty.txt": b"",
    }

    def key(name: str) -> str:
        return PREFIX + name

    s3.put_object(
        Bucket=world.bucket,
        Key=key("crc64.bin"),
        Body=files["crc64.bin"],
        ChecksumAlgorithm="CRC64NVME",
    )
    s3.put_object(
        Bucket=world.bucket,
        Key=key("sha-small.bin"),
        Body=files["sha-small.bin"],
        ChecksumAlgorithm="SHA256",
    )
    upload = s3.create_multipart_upload(
        Bucket=world.bucket, Key=key("sha-multipart.bin"), ChecksumAlgorithm="SHA256"
    )
    parts = []
    data = files["sha-multipart.bin"]
    for number, start in enumerate(range(0, len(data), 8 * MiB), 1):
        part = s3.upload_part(
            Bucket=world.bucket,
            Key=key("sha-multipart.bin"),
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + 8 * MiB],
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}
        )
    s3.complete_multipart_upload(
        Bucket=world.bucket,
        Key=key("sha-multipart.bin"),
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    for name in ("crc32-small.bin", "crc32-large.bin"):
        s3.put_object(
            Bucket=world.bucket, Key=key(name), Body=files[name], ChecksumAlgorithm="CRC32"
        )
    plain = boto3.client("s3", config=Config(request_checksum_calculation="when_required"))
    plain.put_object(Bucket=world.bucket, Key=key("none.bin"), Body=files["none.bin"])
    s3.put_object(Bucket=world.bucket, Key=key("empty.txt"), Body=b"")
    return files


@pytest.fixture
def no_quilt3_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """quilt3's own hasher (which reads bytes with its own clients) must not run."""
    import quilt3.packages

    def refuse(tasks: list[Any]) -> list[Any]:
        if tasks:
            raise AssertionError(f"quilt3 was asked to hash object bytes: {tasks}")
        return []

    monkeypatch.setattr(quilt3.packages, "calculate_multipart_checksum", refuse)
    yield


def hash_log(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    [record] = [r for r in caplog.records if r.getMessage() == "package built"][-1:]
    return {
        name: getattr(record, name)
        for name in (
            "hashes_reused",
            "hashes_from_checksums",
            "hashes_computed_by_s3",
            "hashes_of_empty_objects",
            "objects_read",
            "bytes_read",
        )
    }


@pytest.mark.parametrize("hash_type", [HASH_SHA256_CHUNKED, HASH_CRC64NVME])
def test_mixed_prefix_is_packaged_without_reading_a_byte_and_verifies_with_quilt3(
    world: World,
    make_settings: Callable[..., Any],
    no_quilt3_hashing: None,
    caplog: pytest.LogCaptureFixture,
    hash_type: str,
) -> None:
    import quilt3

    world.install_workflow()
    files = put_mixed_prefix(world)
    s3 = CountingS3.make()
    settings = make_settings(default_metadata=GOOD_META, hash_type=hash_type)
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    caplog.set_level(logging.INFO, logger="consumers")

    outcome = package_prefix(event, settings, clients=Clients(s3=s3.client))

    assert outcome.status == "pushed"
    assert s3.bytes_read_under(world.bucket, PREFIX) == 0
    # One listing serves the package, the reuse from the latest revision and the hashing.
    assert s3.calls["ListObjectVersions"] == 1 and s3.calls["ListObjectsV2"] == 0
    counts = hash_log(caplog)
    assert counts["objects_read"] == 0 and counts["bytes_read"] == 0
    assert counts["hashes_of_empty_objects"] == 1
    # Own checksums: the small SHA-256 always (+ the CRC64NVME one when that is the type).
    assert counts["hashes_from_checksums"] == (2 if hash_type == HASH_CRC64NVME else 1)
    assert counts["hashes_from_checksums"] + counts["hashes_computed_by_s3"] == 6

    package = quilt3.Package.browse(NAME, registry=f"s3://{world.bucket}")
    types = {key: entry.hash["type"] for key, entry in package.walk() if key in files}
    expected_sha_small = HASH_SHA256_CHUNKED  # an exact own SHA-256 is used whatever the type
    assert types["sha-small.bin"] == expected_sha_small
    assert {t for k, t in types.items() if k != "sha-small.bin"} == {hash_type}
    # quilt3 recomputes every hash from the bytes and they match.
    for key, data in files.items():
        package[key]._verify_hash(data)  # raises QuiltException on a mismatch
    # Nothing is left behind in the scratch location, and nothing was copied in place.
    scratch = world.s3.list_object_versions(Bucket=world.bucket, Prefix=SCRATCH_PREFIX)
    assert scratch.get("Versions", []) == [] and scratch.get("DeleteMarkers", []) == []
    assert world.s3.list_multipart_uploads(Bucket=world.bucket).get("Uploads", []) == []
    versions = world.s3.list_object_versions(Bucket=world.bucket, Prefix=PREFIX)["Versions"]
    data_versions = [v for v in versions if v["Key"][len(PREFIX) :] in files]
    assert len(data_versions) == len(files)  # one version each: no in-place copy


def test_package_verify_recomputes_hashes_against_the_prefix(
    world: World, make_settings: Callable[..., Any]
) -> None:
    import quilt3

    world.install_workflow()
    put_mixed_prefix(world)
    s3 = CountingS3.make()
    settings = make_settings(default_metadata=GOOD_META, hash_type=HASH_CRC64NVME)
    package_prefix(
        ReadyEvent(bucket=world.bucket, prefix=PREFIX), settings, clients=Clients(s3=s3.client)
    )
    assert s3.bytes_read_under(world.bucket, PREFIX) == 0

    package = quilt3.Package.browse(NAME, registry=f"s3://{world.bucket}")
    assert package.verify(f"s3://{world.bucket}/{PREFIX}") is True
    world.put(PREFIX, {"none.bin": "changed bytes"})
    assert package.verify(f"s3://{world.bucket}/{PREFIX}") is False


def test_redelivery_reuses_hashes_and_copies_nothing(
    world: World, make_settings: Callable[..., Any], no_quilt3_hashing: None
) -> None:
    world.install_workflow()
    put_mixed_prefix(world)
    settings = make_settings(default_metadata=GOOD_META)
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    first = package_prefix(event, settings, clients=Clients(s3=CountingS3.make().client))

    again = CountingS3.make()
    second = package_prefix(event, settings, clients=Clients(s3=again.client))

    assert second.status == "unchanged" and second.top_hash == first.top_hash
    assert {
        call: again.calls[call] for call in (*COPY_CALLS, "GetObjectAttributes")
    } == dict.fromkeys((*COPY_CALLS, "GetObjectAttributes"), 0)
    assert again.bytes_read_under(world.bucket, PREFIX) == 0
    assert again.calls["ListObjectVersions"] == 1 and again.calls["ListObjectsV2"] == 0
    assert len(world.revisions(NAME)) == 1


def test_read_bytes_mode_reads_every_byte_and_counts_them(
    world: World, make_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    import quilt3

    world.install_workflow()
    files = put_mixed_prefix(world)
    s3 = CountingS3.make()
    settings = make_settings(default_metadata=GOOD_META, hashing_mode="read-bytes")
    caplog.set_level(logging.INFO, logger="consumers")

    package_prefix(
        ReadyEvent(bucket=world.bucket, prefix=PREFIX), settings, clients=Clients(s3=s3.client)
    )

    total = sum(len(data) for data in files.values())
    assert s3.bytes_read_under(world.bucket, PREFIX) == total
    counts = hash_log(caplog)
    assert (counts["objects_read"], counts["bytes_read"]) == (len(files) - 1, total)
    assert not any(s3.calls[call] for call in COPY_CALLS)
    package = quilt3.Package.browse(NAME, registry=f"s3://{world.bucket}")
    for key, data in files.items():
        package[key]._verify_hash(data)


def test_refused_copies_fall_back_to_reading_bytes_logged_and_counted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    files = put_mixed_prefix(world)
    objects = {
        obj.key[len(PREFIX) :]: obj for obj in list_current_objects(world.s3, world.bucket, PREFIX)
    }
    s3 = CountingS3.make()
    # A scratch bucket that does not exist: S3 refuses every copy.
    hasher = S3Hasher(s3.client, scratch=Scratch.parse("s3://no-such-scratch-bucket/x/"))
    caplog.set_level(logging.INFO, logger="consumers")

    hashes, report = hasher.hash_objects(world.bucket, objects)

    refused = {"crc64.bin", "sha-multipart.bin", "crc32-small.bin", "crc32-large.bin", "none.bin"}
    assert report.read == len(refused)
    assert report.bytes_read == sum(len(files[k]) for k in refused)
    assert set(report.fallback_reasons) == refused
    assert all("NoSuchBucket" in reason for reason in report.fallback_reasons.values())
    assert report.from_checksums == 1 and report.empty == 1
    assert any(r.getMessage() == "hashed by reading bytes" for r in caplog.records)
    from quilt3 import checksums

    for key, data in files.items():
        assert hashes[key] == {
            "type": HASH_SHA256_CHUNKED,
            "value": checksums.calculate_multipart_checksum_bytes(
                data, checksum_type=HASH_SHA256_CHUNKED
            ),
        }


def test_copies_into_a_scratch_bucket_of_its_own_leave_nothing_there(world: World) -> None:
    files = put_mixed_prefix(world)
    world.s3.create_bucket(Bucket="edp-scratch")
    objects = {
        obj.key[len(PREFIX) :]: obj for obj in list_current_objects(world.s3, world.bucket, PREFIX)
    }
    # copy_limit 1 MiB: the CRC64NVME copies of larger objects go through UploadPartCopy.
    s3 = CountingS3.make()
    hasher = S3Hasher(
        s3.client,
        hash_type=HASH_CRC64NVME,
        scratch=Scratch.parse("edp-scratch/tmp"),
        copy_limit=MiB,
    )

    hashes, report = hasher.hash_objects(world.bucket, objects)

    assert (report.read, report.from_checksums, report.computed_by_s3) == (0, 2, 4)
    # 17 MiB and 9 MiB in quilt3's 8 MiB chunks; moto returns no part checksums, so the
    # uploads are completed and the copy's checksum read (real S3: combined, aborted).
    assert s3.calls["UploadPartCopy"] == 3 + 2
    assert s3.calls["CompleteMultipartUpload"] == 2 and s3.calls["CopyObject"] == 2
    assert s3.bytes_read_under(world.bucket, PREFIX) == 0
    from quilt3 import checksums

    for key, data in files.items():
        want = HASH_SHA256_CHUNKED if key == "sha-small.bin" else HASH_CRC64NVME
        assert hashes[key] == {
            "type": want,
            "value": checksums.calculate_multipart_checksum_bytes(data, checksum_type=want),
        }
    assert world.s3.list_objects_v2(Bucket="edp-scratch").get("KeyCount") == 0
    assert world.s3.list_multipart_uploads(Bucket="edp-scratch").get("Uploads", []) == []


def test_crc64nvme_into_a_separate_registry_redelivers_without_copying_again(
    world: World, make_settings: Callable[..., Any]
) -> None:
    """quilt3's push re-hashes the copies it makes as sha2-256-chunked: the source listing must
    record what the manifest says, or every redelivery predicts another top hash and copies."""
    registry = world.bucket.replace("instrument", "registry")
    world.s3.create_bucket(Bucket=registry)
    world.s3.put_bucket_versioning(Bucket=registry, VersioningConfiguration={"Status": "Enabled"})
    world.install_workflow(registry)
    world.put(PREFIX, {"a.txt": "alpha", "b.txt": "beta"})
    settings = make_settings(
        registry=registry, default_metadata=GOOD_META, hash_type=HASH_CRC64NVME
    )
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    assert package_prefix(event, settings).status == "pushed"
    versions_before = len(world.s3.list_object_versions(Bucket=registry)["Versions"])

    again = CountingS3.make()
    assert package_prefix(event, settings, clients=Clients(s3=again.client)).status == "unchanged"
    assert len(world.s3.list_object_versions(Bucket=registry)["Versions"]) == versions_before
    assert not any(again.calls[call] for call in COPY_CALLS)


def test_an_object_gone_mid_package_fails_the_event_and_leaves_no_scratch_copy(
    world: World,
) -> None:
    from consumers.errors import PackagingError

    put_mixed_prefix(world)
    objects = {
        obj.key[len(PREFIX) :]: obj for obj in list_current_objects(world.s3, world.bucket, PREFIX)
    }
    # A version deleted after the listing: S3 answers NoSuchVersion.
    gone = objects["none.bin"]
    world.s3.delete_object(Bucket=world.bucket, Key=gone.key, VersionId=gone.version_id)

    with pytest.raises(PackagingError, match=r"none\.bin changed while it was being packaged"):
        S3Hasher(world.s3).hash_objects(world.bucket, objects)

    scratch = world.s3.list_object_versions(Bucket=world.bucket, Prefix=SCRATCH_PREFIX)
    assert scratch.get("Versions", []) == [] and scratch.get("DeleteMarkers", []) == []
    assert world.s3.list_multipart_uploads(Bucket=world.bucket).get("Uploads", []) == []
