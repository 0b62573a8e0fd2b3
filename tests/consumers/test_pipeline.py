"""package_prefix against moto: pushed, unchanged and quarantined packages, read back from S3."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.events import ReadyEvent
from consumers.pipeline import package_prefix
from tests.consumers.consumer_helpers import World

PREFIX = "genome-lab/exp-0042/"
NAME = "genome-lab/exp-0042"
GOOD_META = {
    "Author": "EDP",
    "ComputerName": "Genome Lab - 1234",
    "Date": "2022-12-08",
    "ProjectID": "YYD",
    "StudyID": "ABC-23-023394",
}
FILES = {
    "reads/sample-1.fastq": "@r1\nACGT\n+\n!!!!\n",
    "reads/sample-2.fastq": "@r2\nTTGA\n+\n!!!!\n",
    "run.log": "started\nfinished\n",
    ".DS_Store": "finder junk",
    "scratch/tmp.bin": "scratch",
}


def on_march(day: int) -> Callable[[], datetime]:
    """A clock at noon UTC on that day of March 2024."""
    return lambda: datetime(2024, 3, day, 12, tzinfo=UTC)


def three_days(world: World, event: ReadyEvent, settings: Any, added: dict[str, str]) -> list[Any]:
    """The prefix packaged on 1 March, delivered again on the 2nd, then with ``added`` files on
    the 3rd: the three outcomes."""
    first = package_prefix(event, settings, clock=on_march(1))
    again = package_prefix(event, settings, clock=on_march(2))
    world.put(event.prefix, added)
    return [first, again, package_prefix(event, settings, clock=on_march(3))]


def browse(name: str, bucket: str) -> Any:
    import quilt3

    return quilt3.Package.browse(name, registry=f"s3://{bucket}")


def test_good_event_pushes_a_package_with_entries_metadata_readme_and_quiltignore(
    world: World, make_settings: Callable[..., Any]
) -> None:
    world.install_workflow()
    world.put(
        PREFIX,
        {
            **FILES,
            ".quiltignore": ".DS_*\nscratch/\n",
            "metadata.json": json.dumps({"StudyID": "S-1"}),
            "plots/counts.png": b"\x89PNG\r\n",
            "summary.csv": "sample,reads\n1,2\n",
        },
    )
    settings = make_settings(default_metadata={**GOOD_META, "StudyID": "default"})

    outcome = package_prefix(ReadyEvent(bucket=world.bucket, prefix=PREFIX), settings)

    assert outcome.status == "pushed"
    assert (outcome.package_name, outcome.registry) == (NAME, world.bucket)
    assert world.latest_top_hash(NAME) == outcome.top_hash
    package = browse(NAME, world.bucket)
    assert sorted(key for key, _ in package.walk()) == [
        ".quiltignore",
        "README.md",
        "metadata.json",
        "plots/counts.png",
        "quilt_summarize.json",
        "reads/sample-1.fastq",
        "reads/sample-2.fastq",
        "run.log",
        "summary.csv",
    ]
    assert package.meta == {**GOOD_META, "StudyID": "S-1"}  # metadata.json wins over defaults
    readme = package["README.md"].get_as_string()
    assert readme.startswith(f"# {NAME}\n") and "${" not in readme
    for fact in ("Event-Driven Packaging (EDP)", "`consumers.auto_package`", "`instrument`"):
        assert fact in readme  # made by EDP, by which Lambda, validated by which workflow
    assert f"`s3://{world.bucket}/{PREFIX}`" in readme
    assert re.search(r" on \d{4}-\d{2}-\d{2}:", readme)  # on which date
    summarize = json.loads(package["quilt_summarize.json"].get_as_string())
    assert summarize == ["summary.csv", "plots/counts.png"]  # previewable, top level first
    assert package["run.log"].get_as_string() == FILES["run.log"]
    assert package[".quiltignore"].get_as_string() == ".DS_*\nscratch/\n"  # the prefix's own, kept
    assert package._meta["workflow"]["id"] == "instrument"
    assert world.alerts() == []


def test_same_event_twice_gives_one_revision_without_rehashing(
    world: World, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    world.install_workflow()
    world.put(PREFIX, FILES)
    settings = make_settings(default_metadata=GOOD_META)
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    first = package_prefix(event, settings)
    assert first.status == "pushed"

    import quilt3.packages

    def no_hashing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("redelivery must not hash object bytes")

    monkeypatch.setattr(quilt3.packages, "calculate_multipart_checksum", no_hashing)
    second = package_prefix(event, settings)

    assert second.status == "unchanged"
    assert second.top_hash == first.top_hash
    assert len(world.revisions(NAME)) == 1


def test_a_changed_object_makes_a_new_revision(
    world: World, make_settings: Callable[..., Any]
) -> None:
    world.install_workflow()
    world.put(PREFIX, FILES)
    settings = make_settings(default_metadata=GOOD_META)
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    first = package_prefix(event, settings)
    world.put(PREFIX, {"run.log": "started\nfailed\n", "extra.csv": "a,b\n"})
    second = package_prefix(event, settings)
    assert second.status == "pushed" and second.top_hash != first.top_hash
    package = browse(NAME, world.bucket)
    assert package["run.log"].get_as_string() == "started\nfailed\n"
    assert "extra.csv" in package
    assert len(world.revisions(NAME)) == 2


def test_bad_metadata_is_quarantined_and_alerted(
    world: World, make_settings: Callable[..., Any]
) -> None:
    world.install_workflow()
    world.put(PREFIX, FILES)
    bad = {k: v for k, v in GOOD_META.items() if k != "StudyID"}
    settings = make_settings(default_metadata=bad)

    outcome = package_prefix(ReadyEvent(bucket=world.bucket, prefix=PREFIX), settings)

    assert outcome.status == "quarantined"
    assert outcome.registry == world.quarantine
    assert "'StudyID' is a required property" in outcome.message
    assert world.latest_top_hash(NAME) is None  # nothing in the registry
    quarantined = browse(NAME, world.quarantine)
    assert quarantined.meta == bad
    readme = quarantined["README.md"].get_as_string()
    assert "'StudyID' is a required property" in readme and "instrument" in readme
    assert quarantined["run.log"].get_as_string() == FILES["run.log"]
    [alert] = world.alerts()
    assert alert["Subject"] == f"EDP: package {NAME} quarantined"
    for text in (
        "instrument",
        NAME,
        world.bucket,
        f"https://quilt.example.com/b/{world.quarantine}/packages/{NAME}",
    ):
        assert text in alert["Message"]


def test_quarantine_ignores_the_quarantine_buckets_own_workflow(
    world: World, make_settings: Callable[..., Any]
) -> None:
    world.install_workflow()
    world.install_workflow(world.quarantine)  # the quarantine requires the same (failing) workflow
    world.put(PREFIX, FILES)
    outcome = package_prefix(ReadyEvent(bucket=world.bucket, prefix=PREFIX), make_settings())
    assert outcome.status == "quarantined"
    assert world.latest_top_hash(NAME, world.quarantine) == outcome.top_hash


@pytest.mark.parametrize(
    ("workflow", "install", "expected"),
    [
        ("instrument", False, "no workflows config exist"),
        ("no-such-workflow", True, "There is no 'no-such-workflow' workflow in config"),
    ],
)
def test_workflow_configuration_failures_are_quarantined_too(
    world: World, make_settings: Callable[..., Any], workflow: str, install: bool, expected: str
) -> None:
    if install:
        world.install_workflow()
    world.put(PREFIX, FILES)
    outcome = package_prefix(
        ReadyEvent(bucket=world.bucket, prefix=PREFIX),
        make_settings(workflow=workflow, default_metadata=GOOD_META),
    )
    assert outcome.status == "quarantined"
    assert expected in outcome.message
    [alert] = world.alerts()
    assert expected in alert["Message"]


def test_invalid_metadata_json_is_quarantined(
    world: World, make_settings: Callable[..., Any]
) -> None:
    world.install_workflow()
    world.put(PREFIX, {**FILES, "metadata.json": "[1, 2"})
    outcome = package_prefix(
        ReadyEvent(bucket=world.bucket, prefix=PREFIX), make_settings(default_metadata=GOOD_META)
    )
    assert outcome.status == "quarantined"
    assert "metadata.json" in outcome.message and "not valid JSON" in outcome.message


def test_separate_registry_copies_objects_and_date_key_uses_the_clock(
    world: World, make_settings: Callable[..., Any]
) -> None:
    registry = world.bucket.replace("instrument", "registry")
    world.s3.create_bucket(Bucket=registry)
    world.s3.put_bucket_versioning(Bucket=registry, VersioningConfiguration={"Status": "Enabled"})
    world.install_workflow(registry)
    world.put(PREFIX, FILES)
    meta = {k: v for k, v in GOOD_META.items() if k != "Date"}
    settings = make_settings(
        registry=registry, default_metadata=meta, date_key="Date", summarize=["README.md"]
    )
    outcome = package_prefix(
        ReadyEvent(bucket=world.bucket, prefix=PREFIX),
        settings,
        clock=lambda: datetime(2024, 2, 29, 23, 59, tzinfo=UTC),
        name_for=lambda prefix: "lab/" + prefix.split("/")[1],
    )
    assert outcome.status == "pushed" and outcome.registry == registry
    package = browse("lab/exp-0042", registry)
    assert package.meta["Date"] == "2024-02-29"
    assert json.loads(package["quilt_summarize.json"].get_as_string()) == ["README.md"]
    assert package["run.log"].physical_key.bucket == registry  # copied into the registry


def forbid_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    import quilt3.packages

    def no_hashing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an unchanged prefix must not have its bytes hashed")

    monkeypatch.setattr(quilt3.packages, "calculate_multipart_checksum", no_hashing)


def test_unversioned_bucket_compares_etags(
    world: World, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = world.bucket.replace("instrument", "plain")
    world.s3.create_bucket(Bucket=bucket)  # versioning never enabled
    world.install_workflow(bucket)
    for name, body in FILES.items():
        world.s3.put_object(Bucket=bucket, Key=PREFIX + name, Body=body.encode())
    settings = make_settings(default_metadata=GOOD_META)
    event = ReadyEvent(bucket=bucket, prefix=PREFIX)
    first = package_prefix(event, settings)
    assert first.status == "pushed"
    sources = world.s3.get_object(
        Bucket=bucket, Key=f".quilt/edp/sources/{NAME}/{first.top_hash}.json"
    )
    recorded = json.loads(sources["Body"].read())["entries"]
    assert recorded["run.log"]["etag"] and recorded["run.log"]["size"] == len(FILES["run.log"])

    with monkeypatch.context() as patch:
        forbid_hashing(patch)
        assert package_prefix(event, settings).status == "unchanged"

    # Same key, same size, other bytes: only the ETag tells.
    world.s3.put_object(
        Bucket=bucket, Key=PREFIX + "run.log", Body=b"started\nFAILED!\n"[: len(FILES["run.log"])]
    )
    third = package_prefix(event, settings)
    assert third.status == "pushed" and third.top_hash != first.top_hash


def test_separate_registry_redelivery_neither_hashes_nor_copies(
    world: World, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = world.bucket.replace("instrument", "registry")
    world.s3.create_bucket(Bucket=registry)
    world.s3.put_bucket_versioning(Bucket=registry, VersioningConfiguration={"Status": "Enabled"})
    world.install_workflow(registry)
    world.put(PREFIX, FILES)
    settings = make_settings(registry=registry, default_metadata=GOOD_META)
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    assert package_prefix(event, settings).status == "pushed"
    versions_before = len(world.s3.list_object_versions(Bucket=registry)["Versions"])

    forbid_hashing(monkeypatch)
    assert package_prefix(event, settings).status == "unchanged"
    assert len(world.s3.list_object_versions(Bucket=registry)["Versions"]) == versions_before


SHARE = "arn:aws:storagegateway:us-east-1:123456789012:share/share-1A2B3C4D"


def test_file_gateway_is_refreshed_after_a_push_and_a_failure_is_alerted_not_fatal(
    world: World, make_settings: Callable[..., Any]
) -> None:
    import boto3
    from botocore.stub import Stubber

    from consumers.clients import Clients

    world.install_workflow()
    world.put(PREFIX, FILES)
    gateway = boto3.client("storagegateway")
    settings = make_settings(
        default_metadata=GOOD_META, file_share_arns=(SHARE,), gateway_max_attempts=1
    )
    with Stubber(gateway) as stubber:
        stubber.add_response(
            "refresh_cache",
            {"FileShareARN": SHARE, "NotificationId": "n-1"},
            {"FileShareARN": SHARE, "FolderList": ["/genome-lab/exp-0042"], "Recursive": True},
        )
        outcome = package_prefix(
            ReadyEvent(bucket=world.bucket, prefix=PREFIX),
            settings,
            clients=Clients(storagegateway=gateway),
        )
        stubber.assert_no_pending_responses()
    assert outcome.status == "pushed" and world.alerts() == []

    world.put(PREFIX, {"more.txt": "more"})
    with Stubber(gateway) as stubber:
        stubber.add_client_error(
            "refresh_cache", "InvalidGatewayRequestException", "already refreshing"
        )
        outcome = package_prefix(
            ReadyEvent(bucket=world.bucket, prefix=PREFIX),
            settings,
            clients=Clients(storagegateway=gateway),
        )
        stubber.assert_no_pending_responses()
    assert outcome.status == "pushed"
    assert "file gateway refresh failed" in outcome.message
    [alert] = world.alerts()
    assert alert["Subject"] == f"EDP: file gateway refresh failed for {NAME}"
    assert SHARE in alert["Message"]


def test_an_emptied_prefix_writes_nothing(world: World, make_settings: Callable[..., Any]) -> None:
    world.install_workflow()
    world.put(PREFIX, {"a.txt": "a"})
    settings = make_settings(default_metadata=GOOD_META)
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    first = package_prefix(event, settings)
    for key in (f"{PREFIX}a.txt", f"{PREFIX}README.md", f"{PREFIX}.quiltignore"):
        world.s3.delete_object(Bucket=world.bucket, Key=key)

    outcome = package_prefix(event, settings)

    assert outcome.status == "unchanged" and outcome.top_hash == first.top_hash
    assert "nothing to package" in outcome.message
    assert world.s3.list_objects_v2(Bucket=world.bucket, Prefix=PREFIX).get("KeyCount") == 0


@pytest.mark.parametrize("deliveries", [1, 2, 5])
def test_a_rejected_prefix_delivered_again_is_quarantined_once_and_alerted_once(
    world: World, make_settings: Callable[..., Any], deliveries: int
) -> None:
    world.install_workflow()
    world.put(PREFIX, FILES)
    settings = make_settings(default_metadata={"Author": "EDP"})  # the schema wants more
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX, batch_id="b-1")

    outcomes = [package_prefix(event, settings) for _ in range(deliveries)]

    assert [o.status for o in outcomes] == ["quarantined"] + ["unchanged"] * (deliveries - 1)
    assert {o.registry for o in outcomes} == {world.quarantine}
    assert {o.top_hash for o in outcomes} == {world.latest_top_hash(NAME, world.quarantine)}
    assert all("is a required property" in o.message for o in outcomes)
    assert len(world.revisions(NAME, world.quarantine)) == 1
    [alert] = world.alerts()
    assert alert["Subject"] == f"EDP: package {NAME} quarantined"
    assert world.latest_top_hash(NAME) is None


def test_a_rejected_prefix_that_grows_is_quarantined_again(
    world: World, make_settings: Callable[..., Any]
) -> None:
    """A rejected folder larger than the count threshold comes as two batches: two revisions."""
    world.install_workflow()
    world.put(PREFIX, FILES)
    settings = make_settings(default_metadata={"Author": "EDP"})
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)
    first = package_prefix(event, settings)
    world.put(PREFIX, {"reads/sample-3.fastq": "@r3\nGGCC\n+\n!!!!\n"})
    second = package_prefix(event, settings)
    third = package_prefix(event, settings)

    assert [first.status, second.status, third.status] == [
        "quarantined",
        "quarantined",
        "unchanged",
    ]
    assert len(world.revisions(NAME, world.quarantine)) == 2
    assert len(world.alerts()) == 2
    assert "reads/sample-3.fastq" in browse(NAME, world.quarantine)


def test_an_event_counting_files_in_an_empty_prefix_is_a_warning_with_its_count(
    world: World, make_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    world.install_workflow()
    event = ReadyEvent(bucket=world.bucket, prefix="nobody/here/", count=7)

    with caplog.at_level("INFO", logger="consumers.pipeline"):
        outcome = package_prefix(event, make_settings(default_metadata=GOOD_META))

    assert outcome.status == "unchanged" and outcome.top_hash is None
    assert "the event counted 7 file(s)" in outcome.message
    [record] = [r for r in caplog.records if r.getMessage() == "prefix empty"]
    assert record.levelname == "WARNING" and record.__dict__["count"] == 7
    assert world.s3.list_objects_v2(Bucket=world.bucket).get("KeyCount", 0) == len(
        world.s3.list_objects_v2(Bucket=world.bucket, Prefix=".quilt/")["Contents"]
    )


def test_the_packaging_date_is_kept_when_the_same_prefix_comes_back_another_day(
    world: World, make_settings: Callable[..., Any]
) -> None:
    """With PACKAGE_DATE_KEY a redelivery after midnight (or the rejected prefix's) changes nothing."""
    world.install_workflow()
    world.put(PREFIX, FILES)
    meta = {k: v for k, v in GOOD_META.items() if k != "Date"}
    settings = make_settings(default_metadata=meta, date_key="Date")
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)

    outcomes = three_days(world, event, settings, {"extra.csv": "a,b\n"})

    assert [o.status for o in outcomes] == ["pushed", "unchanged", "pushed"]
    assert browse(NAME, world.bucket).meta["Date"] == "2024-03-03"
    rejected = make_settings(default_metadata={"Author": "EDP"}, date_key="Date")
    other = ReadyEvent(bucket=world.bucket, prefix="genome-lab/exp-0043/")
    world.put(other.prefix, FILES)
    statuses = [package_prefix(other, rejected, clock=on_march(day)).status for day in (4, 5)]
    assert statuses == ["quarantined", "unchanged"]


def test_texts_from_s3_a_chart_and_a_readme_dated_like_the_latest_revision(
    world: World, make_settings: Callable[..., Any]
) -> None:
    """README, .quiltignore and quilt_summarize.json come from settings (here S3 URIs); with a
    separate registry the README is generated each time, yet a later day's redelivery is
    unchanged because it is compared on the latest revision's date."""
    registry = world.bucket.replace("instrument", "registry")
    world.s3.create_bucket(Bucket=registry)
    world.s3.put_bucket_versioning(Bucket=registry, VersioningConfiguration={"Status": "Enabled"})
    world.install_workflow(registry)
    texts = world.quarantine  # any bucket the consumer can read
    world.s3.put_object(
        Bucket=texts, Key="texts/README.md", Body=b"# ${package}\nPackaged ${date} by ${function}\n"
    )
    world.s3.put_object(Bucket=texts, Key="texts/quiltignore", Body=b"*.fastq\n.DS_*\n")
    chart = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "mark": "bar"}
    world.put(PREFIX, {**FILES, "reads.vl.json": json.dumps(chart), "counts.csv": "a\n1\n"})
    settings = make_settings(
        registry=registry,
        default_metadata=GOOD_META,
        readme_text=f"s3://{texts}/texts/README.md",
        quiltignore_text=f"s3://{texts}/texts/quiltignore",
        summarize_chart="reads.vl.json",
        function_name="lab-packager",
    )
    event = ReadyEvent(bucket=world.bucket, prefix=PREFIX)

    first, *later = three_days(world, event, settings, {"more.csv": "b\n2\n"})

    assert [o.status for o in [first, *later]] == ["pushed", "unchanged", "pushed"]
    package = browse(NAME, registry)
    assert (
        package["README.md"].get_as_string() == f"# {NAME}\nPackaged 2024-03-03 by lab-packager\n"
    )
    assert not [key for key, _ in package.walk() if key.endswith(".fastq")]  # S3 .quiltignore
    assert json.loads(package["quilt_summarize.json"].get_as_string()) == [
        {"path": "reads.vl.json", "title": "reads.vl"},
        "counts.csv",
        "more.csv",
    ]
    import quilt3

    first_package = quilt3.Package.browse(
        NAME, registry=f"s3://{registry}", top_hash=first.top_hash
    )
    assert "Packaged 2024-03-01" in first_package["README.md"].get_as_string()


def test_file_gateway_refresh_names_the_registrys_copy_when_files_are_copied(
    world: World, make_settings: Callable[..., Any]
) -> None:
    """A share on the registry bucket sees the copies under <name>/, not the source prefix."""
    import boto3
    from botocore.stub import Stubber

    from consumers.clients import Clients

    registry = world.bucket.replace("instrument", "registry")
    world.s3.create_bucket(Bucket=registry)
    world.install_workflow(registry)
    world.put(PREFIX, FILES)
    gateway = boto3.client("storagegateway")
    settings = make_settings(
        registry=registry, default_metadata=GOOD_META, file_share_arns=(SHARE,)
    )
    with Stubber(gateway) as stubber:
        stubber.add_response(
            "refresh_cache",
            {"FileShareARN": SHARE, "NotificationId": "n-2"},
            {"FileShareARN": SHARE, "FolderList": ["/lab/exp-0042"], "Recursive": True},
        )
        outcome = package_prefix(
            ReadyEvent(bucket=world.bucket, prefix=PREFIX),
            settings,
            clients=Clients(storagegateway=gateway),
            name_for=lambda prefix: "lab/" + prefix.split("/")[1],
        )
        stubber.assert_no_pending_responses()
    assert outcome.status == "pushed" and world.alerts() == []
    listed = world.s3.list_objects_v2(Bucket=registry, Prefix="lab/exp-0042/")["Contents"]
    assert "lab/exp-0042/run.log" in {item["Key"] for item in listed}  # what the share shows


def test_pushes_skip_quilt3s_listing_of_every_manifest_for_its_message(
    world: World, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """quilt3's public push lists .quilt/packages/ (all of the registry's manifests) to print a
    short hash the consumer throws away: neither the registry push nor the quarantine's makes it."""
    from quilt3.backends.base import PackageRegistryV1, PackageRegistryV2

    def listed_every_manifest(self: Any, name: str, top_hash: str) -> str:
        raise AssertionError("push listed the registry's manifests to shorten the top hash")

    for registry_cls in (PackageRegistryV1, PackageRegistryV2):
        monkeypatch.setattr(registry_cls, "shorten_top_hash", listed_every_manifest)
    world.install_workflow()
    world.put(PREFIX, FILES)

    pushed = package_prefix(
        ReadyEvent(bucket=world.bucket, prefix=PREFIX), make_settings(default_metadata=GOOD_META)
    )
    quarantined = package_prefix(
        ReadyEvent(bucket=world.bucket, prefix=PREFIX), make_settings(default_metadata={})
    )

    assert pushed.status == "pushed" and world.latest_top_hash(NAME) == pushed.top_hash
    assert quarantined.status == "quarantined"
    assert world.latest_top_hash(NAME, world.quarantine) == quarantined.top_hash
