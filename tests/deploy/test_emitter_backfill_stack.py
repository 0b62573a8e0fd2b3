"""The emitter stack with the backfill Lambda and a rules file switched on (both off by default)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from deploy.stack import bundle_key, deploy_stack, upload_bundle
from tests.deploy.deploy_support import (
    CODE_BUCKET,
    TEMPLATES_DIR,
    WATCHED_BUCKET,
    create_network,
    inline_statements,
    load_template,
    mocked_account,
    moto_compatible,
    write_placeholder_bundles,
)

pytestmark = [
    pytest.mark.integration,  # a stack deployed into moto's CloudFormation, end to end
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
]

STACK = "edp-backfill"
RULES = "s3://lab-config/edp/rules.yaml"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with mocked_account():
        network = create_network()
        zip_path = write_placeholder_bundles(tmp_path_factory.mktemp("b")) / "edp-emitter.zip"
        key = bundle_key(zip_path)
        upload_bundle(boto3.client("s3"), zip_path, CODE_BUCKET, key)
        body = moto_compatible((TEMPLATES_DIR / "emitter.yaml").read_text(encoding="utf-8"))
        parameters = {
            "VPC": network.vpc_id,
            "Subnets": ",".join(network.subnet_ids),
            "SecurityGroup": network.security_group_id,
            "BucketName": WATCHED_BUCKET,
            "DBUser": "edp_admin",
            "DBPassword": "c0rrect-horse-battery",
            "CodeS3Bucket": CODE_BUCKET,
            "CodeS3Key": key,
            "RulesFile": RULES,
            "BackfillEnabled": "true",
            "BackfillSchedule": "rate(30 days)",
            "BackfillRate": "25",
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status, outputs = deploy_stack(boto3.client("cloudformation"), STACK, body, parameters)
        assert status == "CREATE_COMPLETE"
        yield outputs


def physical_id(logical_id: str) -> str:
    resources = boto3.client("cloudformation").list_stack_resources(StackName=STACK)
    (found,) = [
        r["PhysicalResourceId"]
        for r in resources["StackResourceSummaries"]
        if r.get("LogicalResourceId") == logical_id
    ]
    return str(found)


def test_the_backfill_lambda_runs_the_handler_with_every_setting(deployed: dict[str, str]) -> None:
    name = deployed["BackfillFunctionName"]
    config = boto3.client("lambda").get_function_configuration(FunctionName=name)
    assert config["Handler"] == "edp.handlers.backfill" and config["Timeout"] == 900
    variables = config["Environment"]["Variables"]
    assert variables["EDP_RULES"] == RULES and variables["EDP_BUCKET_NAME"] == WATCHED_BUCKET
    emit = boto3.client("lambda").get_function_configuration(FunctionName=f"{STACK}-emit-event")
    assert emit["Environment"]["Variables"]["EDP_RULES"] == RULES


def test_the_backfill_role_may_only_list_the_watched_bucket(deployed: dict[str, str]) -> None:
    statements = inline_statements(physical_id("BackfillRole"))
    assert statements["ListWatchedBucket"]["Action"] == "s3:ListBucket"
    assert statements["ListWatchedBucket"]["Resource"] == f"arn:aws:s3:::{WATCHED_BUCKET}"
    assert statements["ReadRulesFile"]["Action"] == "s3:GetObject"
    assert statements["ReadRulesFile"]["Resource"] == "arn:aws:s3:::lab-config/edp/rules.yaml"
    s3_actions = {
        action
        for statement in statements.values()
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
        if action.startswith("s3:")
    }
    assert s3_actions == {"s3:ListBucket", "s3:GetObject"}
    for role in ("StoreRole", "EmitRole"):
        assert inline_statements(physical_id(role))["ReadRulesFile"]["Resource"] == (
            "arn:aws:s3:::lab-config/edp/rules.yaml"
        )


def test_the_schedule_invokes_the_backfill_at_its_rate(deployed: dict[str, str]) -> None:
    events = boto3.client("events")
    rule = physical_id("BackfillScheduleRule")
    assert events.describe_rule(Name=rule)["ScheduleExpression"] == "rate(30 days)"
    (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert json.loads(target["Input"]) == {"rate": 25}
    assert target["Arn"].endswith(f":function:{deployed['BackfillFunctionName']}")


def test_backfill_and_rules_are_off_by_default() -> None:
    template: dict[str, Any] = load_template(TEMPLATES_DIR / "emitter.yaml")
    parameters = template["Parameters"]
    assert parameters["BackfillEnabled"]["Default"] == "false"
    assert parameters["BackfillSchedule"]["Default"] == ""
    assert parameters["RulesFile"]["Default"] == ""
    conditional = {
        logical_id: resource.get("Condition")
        for logical_id, resource in template["Resources"].items()
        if logical_id.startswith("Backfill")
    }
    assert conditional == {
        "BackfillLogGroup": "BackfillOn",
        "BackfillRole": "BackfillOn",
        "BackfillFunction": "BackfillOn",
        "BackfillScheduleRule": "BackfillScheduled",
        "BackfillSchedulePermission": "BackfillScheduled",
    }
