"""The emitter template deployed into moto's CloudFormation: the stack completes and its resources
carry the expected properties; S3 events for the watched bucket reach the buffer queue."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from deploy.stack import bundle_key, deploy_stack, upload_bundle
from tests.deploy.deploy_support import (
    CODE_BUCKET,
    TEMPLATES_DIR,
    WATCHED_BUCKET,
    Network,
    create_network,
    inline_statements,
    mocked_account,
    moto_compatible,
    write_placeholder_bundles,
)
from tests.helpers import load_event

# Expected, and asserted once in test_stack_reaches_create_complete_with_its_outputs.
pytestmark = [
    pytest.mark.integration,  # a stack deployed into moto's CloudFormation, end to end
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
]

STACK = "edp-test"
# Types moto's CloudFormation skips (with a warning): checked on the parsed template instead.
MOTO_SKIPPED_TYPES = {
    "AWS::SQS::QueuePolicy",
    "AWS::SecretsManager::Secret",
    "AWS::SecretsManager::SecretTargetAttachment",
    "AWS::CloudWatch::Alarm",
}


@dataclass(frozen=True)
class Deployed:
    status: str
    outputs: dict[str, str]
    network: Network
    code_key: str
    skipped_types: set[str]

    def physical_id(self, logical_id: str) -> str:
        # list_stack_resources, not describe_stack_resource: moto's fails on skipped resources.
        resources = boto3.client("cloudformation").list_stack_resources(StackName=STACK)
        (physical_id,) = [
            r["PhysicalResourceId"]
            for r in resources["StackResourceSummaries"]
            if r.get("LogicalResourceId") == logical_id
        ]
        return str(physical_id)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """One stack for the whole module (deploying takes a few seconds); tests only read it."""
    with mocked_account():
        yield deploy_emitter(
            create_network(), write_placeholder_bundles(tmp_path_factory.mktemp("b"))
        )


def deploy_emitter(network: Network, bundle_dir: Path) -> Deployed:
    zip_path = bundle_dir / "edp-emitter.zip"
    key = bundle_key(zip_path)
    upload_bundle(boto3.client("s3"), zip_path, CODE_BUCKET, key)
    body = moto_compatible((TEMPLATES_DIR / "emitter.yaml").read_text(encoding="utf-8"))
    parameters = {
        "VPC": network.vpc_id,
        "Subnets": ",".join(network.subnet_ids),
        "SecurityGroup": network.security_group_id,
        "BucketName": WATCHED_BUCKET,
        "BucketIgnorePrefixes": "raw/*, scratch/*",
        "DBUser": "edp_admin",
        "DBPassword": "c0rrect-horse-battery",
        "MarkerFiles": "_SUCCESS",
        "CodeS3Bucket": CODE_BUCKET,
        "CodeS3Key": key,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, outputs = deploy_stack(boto3.client("cloudformation"), STACK, body, parameters)
    skipped = {
        str(w.message).split("Tried to parse ")[1].split(" ")[0]
        for w in caught
        if "Tried to parse" in str(w.message)
    }
    return Deployed(status, outputs, network, key, skipped)


def test_stack_reaches_create_complete_with_its_outputs(stack: Deployed) -> None:
    assert stack.status == "CREATE_COMPLETE"
    assert set(stack.outputs) >= {"EventBusArn", "TopicArn", "QueueUrl"}
    assert stack.outputs["EventBusArn"] == "arn:aws:events:us-east-1:123456789012:event-bus/edp"
    # What moto skipped is exactly the known list (each checked in test_templates.py).
    assert stack.skipped_types == MOTO_SKIPPED_TYPES


def test_outputs_name_real_resources(stack: Deployed) -> None:
    bus = boto3.client("events").describe_event_bus(Name="edp")
    assert bus["Arn"] == stack.outputs["EventBusArn"]
    topics = [t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]]
    assert stack.outputs["TopicArn"] in topics
    assert stack.outputs["AlarmTopicArn"] in topics
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.outputs["QueueUrl"], AttributeNames=["All"]
    )
    dead_letter_arn = sqs.get_queue_attributes(
        QueueUrl=stack.outputs["DeadLetterQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(attributes["Attributes"]["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": 5,
    }
    assert attributes["Attributes"]["VisibilityTimeout"] == "360"


def _receive_all(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_s3_events_of_the_watched_bucket_reach_the_buffer_queue(stack: Deployed) -> None:
    created = load_event("eventbridge_object_created")
    deleted = load_event("eventbridge_object_deleted")
    other_bucket = json.loads(json.dumps(created))
    other_bucket["detail"]["bucket"]["name"] = "someone-elses-bucket"
    restore = load_event("eventbridge_object_restore")
    entries = [
        {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"]),
            "Resources": event["resources"],
        }
        for event in (created, deleted, other_bucket, restore)
    ]
    events = boto3.client("events")
    # moto's EventBridge sends every event on the default bus to the schedule rule too (it has no
    # pattern), and cannot deliver to a Lambda target: detach it (test_emit_lambda... covers it).
    schedule = stack.physical_id("EmitScheduleRule")
    (emit_target,) = events.list_targets_by_rule(Rule=schedule)["Targets"]
    events.remove_targets(Rule=schedule, Ids=[emit_target["Id"]])
    try:
        result = events.put_events(Entries=entries)
    finally:
        events.put_targets(Rule=schedule, Targets=[emit_target])
    assert result["FailedEntryCount"] == 0
    received = _receive_all(stack.outputs["QueueUrl"])
    assert sorted((m["detail-type"], m["detail"]["bucket"]["name"]) for m in received) == [
        ("Object Created", WATCHED_BUCKET),
        ("Object Deleted", WATCHED_BUCKET),
    ]


def test_lambdas_run_the_emitter_handlers_in_the_vpc(stack: Deployed) -> None:
    lam = boto3.client("lambda")
    handlers = {}
    for name in (f"{STACK}-store-in-db", f"{STACK}-emit-event"):
        config = lam.get_function_configuration(FunctionName=name)
        handlers[name] = config["Handler"]
        assert config["Runtime"] == "python3.13"
        assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(stack.network.subnet_ids)
        assert config["VpcConfig"]["SecurityGroupIds"] == [stack.network.security_group_id]
        env = config["Environment"]["Variables"]
        assert env["EDP_BUCKET_NAME"] == WATCHED_BUCKET
        assert env["EDP_BUCKET_IGNORE_PREFIXES"] == "raw/*, scratch/*"
        assert str(env["EDP_BUCKET_PREFIX_DEPTH"]) == "2"
        assert str(env["EDP_BUCKET_THRESHOLD_DURATION"]) == "300"
        assert str(env["EDP_BUCKET_THRESHOLD_EVENT_COUNT"]) == "20"
        assert env["EDP_MARKER_FILES"] == "_SUCCESS"
        assert "EDP_BUCKET_THRESHOLD_MAX_AGE" not in env  # 0 means off: left unset
        assert env["EDP_EVENT_BUS_NAME"] == "edp"
        assert env["EDP_SNS_TOPIC_ARN"] == stack.outputs["TopicArn"]
        assert env["EDP_DATABASE_URL"].startswith("postgresql://edp_admin@")
        assert env["EDP_DATABASE_URL"].endswith(
            "/edp?sslmode=verify-full&sslrootcert=/var/task/rds-ca-bundle.pem"
        )
        assert "c0rrect" not in json.dumps(env)
        assert env["POWERTOOLS_SERVICE_NAME"] == STACK
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "EDP"
        code = lam.get_function(FunctionName=name)["Code"]
        assert code["RepositoryType"] == "S3"
    assert handlers == {
        f"{STACK}-store-in-db": "edp.handlers.store_in_db",
        f"{STACK}-emit-event": "edp.handlers.emit_event",
    }


def test_store_lambda_reads_the_buffer_queue_in_batches_with_item_failures(stack: Deployed) -> None:
    queue_arn = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.outputs["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    (mapping,) = boto3.client("lambda").list_event_source_mappings(
        FunctionName=f"{STACK}-store-in-db"
    )["EventSourceMappings"]
    assert mapping["EventSourceArn"] == queue_arn
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumBatchingWindowInSeconds"] > 0
    assert mapping["BatchSize"] > 10
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}


def test_emit_lambda_runs_on_a_schedule(stack: Deployed) -> None:
    events = boto3.client("events")
    rule_name = stack.physical_id("EmitScheduleRule")
    assert events.describe_rule(Name=rule_name)["ScheduleExpression"] == "rate(1 minute)"
    (target,) = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    function_arn = boto3.client("lambda").get_function_configuration(
        FunctionName=f"{STACK}-emit-event"
    )["FunctionArn"]
    assert target["Arn"] == function_arn
    policy = json.loads(
        boto3.client("lambda").get_policy(FunctionName=f"{STACK}-emit-event")["Policy"]
    )
    principals = [s["Principal"] for s in policy["Statement"]]
    assert {"Service": "events.amazonaws.com"} in principals


def test_database_is_private_encrypted_postgres_in_the_subnets(stack: Deployed) -> None:
    rds = boto3.client("rds")
    (instance,) = rds.describe_db_instances()["DBInstances"]
    assert instance["Engine"] == "postgres"
    assert instance["PubliclyAccessible"] is False
    assert instance["StorageEncrypted"] is True
    assert instance["DBName"] == "edp"
    assert instance["MasterUsername"] == "edp_admin"
    subnets = {s["SubnetIdentifier"] for s in instance["DBSubnetGroup"]["Subnets"]}
    assert subnets == set(stack.network.subnet_ids)


def test_roles_grant_each_lambda_only_its_own_resources(stack: Deployed) -> None:
    queue_arn = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.outputs["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    store = inline_statements(stack.physical_id("StoreRole"))
    emit = inline_statements(stack.physical_id("EmitRole"))
    assert store["ReadBufferQueue"]["Resource"] == queue_arn
    assert "ReadBufferQueue" not in emit  # the emit Lambda never touches the queue
    for statements in (store, emit):
        assert statements["PublishReadyEvents"]["Action"] == "events:PutEvents"
        assert statements["PublishReadyEvents"]["Resource"] == stack.outputs["EventBusArn"]
        assert statements["NotifyReadyTopic"]["Resource"] == stack.outputs["TopicArn"]
    # moto does not attach AWS managed policies; test_templates.py checks ManagedPolicyArns.


def test_dashboard_shows_quilts_widgets_and_ours(stack: Deployed) -> None:
    body = json.loads(
        boto3.client("cloudwatch").get_dashboard(DashboardName=stack.outputs["DashboardName"])[
            "DashboardBody"
        ]
    )
    titles = [w["properties"].get("title", "") for w in body["widgets"]]
    text = json.dumps(body)
    rule_name = stack.physical_id("ObjectEventsRule")
    # Quilt's: events on the bus, the per-bucket S3 rule, both Lambdas' errors and success rate.
    for metric in ("Invocations", "TriggeredRules", "FailedInvocations"):
        assert ["AWS/Events", metric, "RuleName", rule_name] in [
            m[:4] for w in body["widgets"] for m in w["properties"].get("metrics", [])
        ]
    for function in (f"{STACK}-store-in-db", f"{STACK}-emit-event"):
        assert f'"FunctionName", "{function}"' in text
    assert text.count("100 - 100 * errors / MAX([errors, invocations])") == 2
    # Ours, from the emitter's Powertools metrics: every dimension combination (Reason, Trigger…).
    for metric in (
        "BatchesEmitted",
        "BatchesPublished",
        "RejectedMessages",
        "OpenBatches",
        "OldestOpenBatchAgeSeconds",
        "IngestLagSeconds",
        "EventsDropped",
        "EventsAccepted",
        "DuplicateEvents",
        "StaleEvents",
        "PublishFailures",
    ):
        assert f'SEARCH(\'Namespace=\\"EDP\\" MetricName=\\"{metric}\\"\'' in text, metric
    assert "Dropped events by reason" in titles
    assert f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{STACK}-dead-letter-queue" in text
    assert "${" not in text  # every substitution was resolved
