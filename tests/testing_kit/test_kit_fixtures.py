"""Tests of the testing kit's fixtures: what reaches moto's S3, SNS and SQS, and the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest
import yaml
from aws_lambda_powertools import Logger

from consumers.settings import ConsumerSettings
from consumers.testing import FakeLambdaContext
from consumers.testing.aws import SnsReader, list_keys, put_objects, read_json_object
from consumers.testing.workflows import FALLBACK_WORKFLOW, install_workflows


def run_pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on one test file in a fresh interpreter, as a consumer project would."""
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_mocked_aws_gives_fake_credentials_and_an_in_process_s3(mocked_aws: None) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="kit-bucket")
    put_objects("kit-bucket", {"a/b.txt": "x"})

    assert os.environ["AWS_CONFIG_FILE"] == os.devnull  # no developer profile leaks in
    assert "AWS_PROFILE" not in os.environ
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert list_keys("kit-bucket") == ["a/b.txt"]


def test_moto_server_points_new_clients_at_127_0_0_1(moto_server: str) -> None:
    boto3.client("s3").create_bucket(Bucket="kit-bucket")

    assert moto_server.startswith("http://127.0.0.1:")
    assert os.environ["AWS_ENDPOINT_URL"] == moto_server
    assert boto3.client("s3").meta.endpoint_url == moto_server
    assert list_keys("kit-bucket") == []


def test_registry_bucket_holds_the_toolkits_workflows_pointing_at_itself(
    registry_bucket: str, workflow_name: str
) -> None:
    keys = list_keys(registry_bucket)
    body = boto3.client("s3").get_object(Bucket=registry_bucket, Key=".quilt/workflows/config.yml")
    config = yaml.safe_load(body["Body"].read())

    assert ".quilt/workflows/config.yml" in keys
    assert config["default_workflow"] == workflow_name
    for schema in config["schemas"].values():
        assert schema["url"].startswith(f"s3://{registry_bucket}/.quilt/workflows/")
        schema_key = schema["url"].removeprefix(f"s3://{registry_bucket}/")
        assert read_json_object(registry_bucket, schema_key)["type"] == "object"


def test_without_a_workflows_folder_a_permissive_workflow_is_installed(moto_server: str) -> None:
    boto3.client("s3").create_bucket(Bucket="bare-registry")

    urls = install_workflows("bare-registry", None)

    assert urls == [
        "s3://bare-registry/.quilt/workflows/config.yml",
        "s3://bare-registry/.quilt/workflows/edp-package.json",
    ]
    config = yaml.safe_load(
        boto3.client("s3")
        .get_object(Bucket="bare-registry", Key=".quilt/workflows/config.yml")["Body"]
        .read()
    )
    assert config["default_workflow"] == FALLBACK_WORKFLOW
    assert config["is_workflow_required"] is False


def test_sns_reader_returns_what_was_published_decoded_and_only_once(sns_reader: SnsReader) -> None:
    sns = boto3.client("sns")
    sns.publish(TopicArn=sns_reader.topic_arn, Message="first", Subject="Package quarantined")
    sns.publish(
        TopicArn=sns_reader.topic_arn,
        Message='{"package": "a/b"}',
        MessageAttributes={"status": {"DataType": "String", "StringValue": "pushed"}},
    )

    messages = sns_reader.messages()

    assert sorted(m.message for m in messages) == ["first", '{"package": "a/b"}']
    by_body = {m.message: m for m in messages}
    assert by_body["first"].subject == "Package quarantined"
    assert by_body['{"package": "a/b"}'].json() == {"package": "a/b"}
    assert by_body['{"package": "a/b"}'].attributes == {"status": "pushed"}
    assert {m.topic_arn for m in messages} == {sns_reader.topic_arn}
    assert sns_reader.messages() == []


def test_consumer_env_builds_valid_settings_pointing_at_the_fixtures(
    consumer_env: dict[str, str],
    registry_bucket: str,
    quarantine_bucket: str,
    sns_reader: SnsReader,
    workflow_name: str,
) -> None:
    settings = ConsumerSettings.from_env()

    assert settings.quarantine_bucket == quarantine_bucket
    assert settings.sns_topic_arn == sns_reader.topic_arn
    assert settings.workflow == workflow_name
    assert settings.registry is None  # packages go to each event's bucket, as in Quilt's EDP
    assert all(os.environ[name] == value for name, value in consumer_env.items())


def test_lambda_context_satisfies_powertools(capsys: pytest.CaptureFixture[str]) -> None:
    logger = Logger(service="kit-test")
    context = FakeLambdaContext(function_name="my-consumer", remaining_time_in_millis=1234)

    @logger.inject_lambda_context
    def handler(event: dict[str, str], context: FakeLambdaContext) -> int:
        logger.info("handled")
        return context.get_remaining_time_in_millis()

    assert handler({}, context) == 1234
    logged = capsys.readouterr().out
    assert '"function_name":"my-consumer"' in logged
    assert context.invoked_function_arn == (
        "arn:aws:lambda:us-east-1:123456789012:function:my-consumer"
    )


def test_the_plugin_imports_neither_moto_nor_boto3() -> None:
    probe = (
        "import sys, consumers.testing.plugin; "
        "print(sorted(m for m in ('moto', 'boto3', 'botocore', 'quilt3') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_plugin_loads_by_entry_point_and_resets_moto_between_tests(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        import boto3

        def test_first_creates_a_bucket(moto_server):
            boto3.client("s3").create_bucket(Bucket="left-over")

        def test_second_starts_empty(moto_server):
            assert boto3.client("s3").list_buckets()["Buckets"] == []

        def test_both_backends_in_one_test_is_refused(mocked_aws, moto_server):
            pass
        """,
    )

    assert "2 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "use either mocked_aws or moto_server" in result.stdout
