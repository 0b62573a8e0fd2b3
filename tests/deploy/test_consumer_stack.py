"""The reference consumer template deployed into moto through the deploy helper: the rule on the EDP
bus selects the right events for the auto-packaging Lambda, which gets its environment and a DLQ."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest

from deploy.stack import DeployResult, deploy, main
from tests.deploy.deploy_support import (
    CODE_BUCKET,
    WATCHED_BUCKET,
    mocked_account,
    write_placeholder_bundles,
)
from tests.helpers import load_event

pytestmark = [
    pytest.mark.integration,  # a stack deployed into moto's CloudFormation, end to end
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
]

STACK = "edp-consumer-test"
FILE_SHARE = "arn:aws:storagegateway:us-east-1:123456789012:share/share-ABCD1234"
PARAMETERS = {
    "EventBusName": "edp",
    "BucketName": WATCHED_BUCKET,
    "QuarantineBucketName": "instrument-quarantine",
    "QuiltUrl": "https://quilt.example.com",
    "Registry": "instrument-packages",
    "FileShareArns": FILE_SHARE,
    "PackageMetadata": '{"Author": "EDP"}',
    "HashScratch": "edp-scratch/tmp/",
    "PackageReadme": "s3://lab-texts/edp/README.md",
    "PackageSummarizeChart": "charts/reads.vl.json",
    "PackageTextsBucket": "lab-texts",
}


@dataclass(frozen=True)
class Deployed:
    result: DeployResult
    bundle_dir: Path

    @property
    def function(self) -> dict[str, Any]:
        return boto3.client("lambda").get_function_configuration(
            FunctionName=self.result.outputs["FunctionName"]
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with mocked_account():
        boto3.client("events").create_event_bus(Name="edp")  # made by the emitter stack
        bundle_dir = write_placeholder_bundles(tmp_path_factory.mktemp("bundles"))
        result = deploy("consumer", STACK, CODE_BUCKET, PARAMETERS, bundle_dir=bundle_dir)
        yield Deployed(result, bundle_dir)


def test_stack_reaches_create_complete_with_its_outputs(stack: Deployed) -> None:
    assert stack.result.status == "CREATE_COMPLETE"
    assert set(stack.result.outputs) == {
        "AlertTopicArn",
        "DeadLetterQueueUrl",
        "FunctionName",
        "RuleArn",
    }
    # The helper uploaded the bundle under a content-addressed key and the Lambda uses it.
    assert stack.result.code_key.startswith("edp/edp-consumer-")
    head = boto3.client("s3").head_object(Bucket=CODE_BUCKET, Key=stack.result.code_key)
    assert head["ContentLength"] == (stack.bundle_dir / "edp-consumer.zip").stat().st_size


def test_lambda_runs_the_reference_consumer_with_its_environment(stack: Deployed) -> None:
    config = stack.function
    assert config["Handler"] == "consumers.auto_package.handler"
    assert config["Runtime"] == "python3.13"
    assert config["Timeout"] == 900
    env = config["Environment"]["Variables"]
    assert env["QUARANTINE_BUCKET_NAME"] == "instrument-quarantine"
    assert env["SNS_TOPIC_ARN"] == stack.result.outputs["AlertTopicArn"]
    assert env["QUILT_URL"] == "https://quilt.example.com"
    assert env["REGISTRY"] == "instrument-packages"
    assert env["FILE_SHARE_ARNS"] == FILE_SHARE
    assert json.loads(env["PACKAGE_METADATA"]) == {"Author": "EDP"}
    # Optional settings left empty are not set at all, so the library's defaults apply.
    assert not {
        "WORKFLOW_NAME",
        "PACKAGE_MESSAGE",
        "PACKAGE_DATE_KEY",
        "PACKAGE_QUILTIGNORE",
        "PACKAGE_SUMMARIZE",
    } & set(env)
    assert env["PACKAGE_README"] == "s3://lab-texts/edp/README.md"
    assert env["PACKAGE_SUMMARIZE_CHART"] == "charts/reads.vl.json"
    assert env["POWERTOOLS_SERVICE_NAME"] == STACK
    assert (env["HASHING_MODE"], env["HASH_TYPE"], env["HASH_SCRATCH"]) == (
        "s3-checksums",
        "sha2-256-chunked",
        "edp-scratch/tmp/",
    )


def test_the_settings_the_lambda_gets_are_valid(stack: Deployed) -> None:
    from consumers.settings import ConsumerSettings

    settings = ConsumerSettings.from_env(stack.function["Environment"]["Variables"])
    assert settings.quarantine_bucket == "instrument-quarantine"
    assert settings.file_share_arns == (FILE_SHARE,)
    assert (settings.hashing_mode, settings.hash_scratch) == ("s3-checksums", "edp-scratch/tmp/")
    assert settings.readme_text == "s3://lab-texts/edp/README.md"
    assert (settings.summarize, settings.summarize_chart) == ("auto", "charts/reads.vl.json")


def _dead_letter_queue_arn(stack: Deployed) -> str:
    return str(
        boto3.client("sqs").get_queue_attributes(
            QueueUrl=stack.result.outputs["DeadLetterQueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
    )


def test_rule_on_the_edp_bus_targets_the_lambda_with_a_dead_letter_queue(stack: Deployed) -> None:
    events = boto3.client("events")
    rule_arn = stack.result.outputs["RuleArn"]
    assert ":rule/edp/" in rule_arn  # on the EDP bus, not the default one
    rule_name = rule_arn.rsplit("/", 1)[1]
    (target,) = events.list_targets_by_rule(Rule=rule_name, EventBusName="edp")["Targets"]
    assert target["Arn"] == stack.function["FunctionArn"]
    assert target["DeadLetterConfig"] == {"Arn": _dead_letter_queue_arn(stack)}
    # moto drops the function's own DeadLetterConfig: test_templates.py checks it.


def test_rule_selects_ready_events_of_the_watched_bucket_only(stack: Deployed) -> None:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    rule_name = stack.result.outputs["RuleArn"].rsplit("/", 1)[1]
    ready = load_event("ready_eventbridge")
    other_bucket = json.loads(json.dumps(ready))
    other_bucket["detail"]["bucket"] = "someone-elses-bucket"
    s3_event = load_event("eventbridge_object_created")
    # moto cannot invoke a Lambda target (nor TestEventPattern): route the rule to a probe queue.
    probe_url = sqs.create_queue(QueueName="rule-probe")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    (lambda_target,) = events.list_targets_by_rule(Rule=rule_name, EventBusName="edp")["Targets"]
    events.remove_targets(Rule=rule_name, EventBusName="edp", Ids=[lambda_target["Id"]])
    events.put_targets(
        Rule=rule_name, EventBusName="edp", Targets=[{"Id": "probe", "Arn": probe_arn}]
    )
    try:
        result = events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event["resources"],
                    "EventBusName": "edp",
                }
                for event in (ready, other_bucket, s3_event)
            ]
        )
    finally:
        events.remove_targets(Rule=rule_name, EventBusName="edp", Ids=["probe"])
        events.put_targets(Rule=rule_name, EventBusName="edp", Targets=[lambda_target])
    assert result["FailedEntryCount"] == 0
    messages = sqs.receive_message(QueueUrl=probe_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["detail"] for m in messages] == [ready["detail"]]


def test_role_grants_alerts_dead_letters_and_file_share_refresh(stack: Deployed) -> None:
    iam = boto3.client("iam")
    role_name = stack.function["Role"].rsplit("/", 1)[1]
    found: dict[str, dict[str, Any]] = {}
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):  # moto keeps a stack's policy as a Python repr
            document = ast.literal_eval(unquote(document))
        found.update({s["Sid"]: s for s in document["Statement"]})
    assert found["SendAlerts"]["Resource"] == stack.result.outputs["AlertTopicArn"]
    assert found["DeadLetterFailedInvocations"]["Resource"] == _dead_letter_queue_arn(stack)
    assert found["RefreshFileShares"]["Resource"] == [FILE_SHARE]
    assert found["ReadPackageTexts"]["Resource"] == "arn:aws:s3:::lab-texts/*"
    # With a registry of its own, the Lambda may not write into the watched bucket.
    assert found["WritePackages"]["Resource"] == [
        "arn:aws:s3:::instrument-packages/*",
        "arn:aws:s3:::instrument-quarantine/*",
    ]
    assert f"arn:aws:s3:::{WATCHED_BUCKET}/*" in found["ReadObjects"]["Resource"]
    # Temporary copies for S3-computed checksums: under the scratch prefix only.
    assert found["HashScratch"]["Resource"] == "arn:aws:s3:::edp-scratch/tmp/*"
    assert found["ReadChecksums"]["Resource"] == f"arn:aws:s3:::{WATCHED_BUCKET}/*"


def test_deploying_again_updates_the_stack_in_place(stack: Deployed) -> None:
    changed = {**PARAMETERS, "QuiltUrl": "https://catalog.example.org"}
    result = deploy("consumer", STACK, CODE_BUCKET, changed, bundle_dir=stack.bundle_dir)
    assert result.status == "UPDATE_COMPLETE"
    assert result.code_key == stack.result.code_key  # same build, same key
    env = boto3.client("lambda").get_function_configuration(
        FunctionName=result.outputs["FunctionName"]
    )["Environment"]["Variables"]
    assert env["QUILT_URL"] == "https://catalog.example.org"


def test_command_line_deploys_a_stack_and_prints_its_outputs(
    stack: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    # A second stack in the module's mocked account, which already holds the bus.
    parameters = {**PARAMETERS, "Registry": "", "FileShareArns": "", "PackageTextsBucket": ""}
    status = main(
        [
            "consumer",
            "--stack-name",
            "edp-consumer-cli",
            "--code-bucket",
            CODE_BUCKET,
            "--bundle-dir",
            str(stack.bundle_dir),
            *(f"--parameter={key}={value}" for key, value in parameters.items()),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("edp-consumer-cli: CREATE_COMPLETE (code s3://edp-artifacts/edp/")
    assert "  FunctionName = edp-consumer-cli-auto-package" in out
    env = boto3.client("lambda").get_function_configuration(
        FunctionName="edp-consumer-cli-auto-package"
    )["Environment"]["Variables"]
    # Empty optional parameters leave their variables unset; no file shares, no refresh policy.
    assert not {"REGISTRY", "FILE_SHARE_ARNS"} & set(env)
    resources = boto3.client("cloudformation").list_stack_resources(StackName="edp-consumer-cli")
    logical_ids = {r.get("LogicalResourceId") for r in resources["StackResourceSummaries"]}
    assert "Function" in logical_ids
    assert not {"RefreshFileSharesPolicy", "ReadPackageTextsPolicy"} & logical_ids
