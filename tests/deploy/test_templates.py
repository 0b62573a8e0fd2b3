"""Static checks of every shipped template: cfn-lint clean, IAM least privilege, Lambda environments,
and the properties moto's CloudFormation cannot model (checked on the parsed template instead)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint_file

from deploy.build_bundles import RDS_CA_BUNDLE_NAME
from tests.deploy.deploy_support import TEMPLATE_PATHS, load_template
from tests.deploy.template_checks import (
    branches,
    environment_names,
    lambda_functions,
    statements,
    wildcard_grants,
)

POWERTOOLS_ENV = ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE")


def env_vars_read_by(handler: str) -> set[str]:
    """Every env var the code behind a Lambda handler reads, from the package's own list."""
    package = handler.split(".", 1)[0]
    if package == "edp":
        from edp.settings import ENV_VARS as names
    elif package == "consumers":
        from consumers.settings import ENV_VARS as names
    else:
        raise AssertionError(f"handler {handler} is in no package we know the settings of")
    return {*names, *POWERTOOLS_ENV}


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=lambda p: p.name)
def test_cfn_lint_reports_no_errors_and_no_warnings(path: Path) -> None:
    matches = lint_file(path)
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_both_templates_are_shipped() -> None:
    assert {path.name for path in TEMPLATE_PATHS} >= {"emitter.yaml", "consumer.yaml"}


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=lambda p: p.name)
def test_every_env_var_the_lambdas_read_is_set(path: Path) -> None:
    functions = lambda_functions(load_template(path))
    assert functions
    for logical_id, properties in functions.items():
        missing = env_vars_read_by(properties["Handler"]) - environment_names(properties)
        assert not missing, f"{path.name} {logical_id} does not set {sorted(missing)}"


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=lambda p: p.name)
def test_templates_use_no_yaml_aliases(path: Path) -> None:
    # CloudFormation rejects YAML anchors and aliases, though cfn-lint and moto accept them.
    events = list(yaml.parse(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader))
    assert not [e for e in events if isinstance(e, yaml.AliasEvent)]
    assert not [e for e in events if getattr(e, "anchor", None)]


def test_both_emitter_lambdas_get_the_same_environment(emitter_template: dict) -> None:
    functions = lambda_functions(emitter_template)
    assert functions["StoreFunction"]["Environment"] == functions["EmitFunction"]["Environment"]


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=lambda p: p.name)
def test_no_iam_statement_grants_wildcard_actions_on_wildcard_resources(path: Path) -> None:
    template = load_template(path)
    assert list(statements(template))
    assert wildcard_grants(template) == []
    # Stricter than the rule above: none of our own statements names "*" as a resource at all.
    wildcard_resources = [
        where
        for where, statement in statements(template)
        if "*" in [r for value in statement.get("Resource", []) or [] for r in branches(value)]
        or statement.get("Resource") == "*"
    ]
    assert wildcard_resources == []


def test_the_wildcard_check_catches_a_wildcard_grant() -> None:
    template = {
        "Resources": {
            "Bad": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Sid": "TooBroad",
                                "Effect": "Allow",
                                "Action": "s3:*",
                                "Resource": "*",
                            },
                            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                        ]
                    }
                },
            }
        }
    }
    assert wildcard_grants(template) == ["Bad: TooBroad"]


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=lambda p: p.name)
def test_roles_use_no_managed_policy_but_lambda_vpc_access(path: Path) -> None:
    for logical_id, role in resources_of_type(load_template(path), "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert arn == {
                "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole"
            }, logical_id


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=lambda p: p.name)
def test_lambda_runtime_matches_the_bundles(path: Path) -> None:
    from deploy.build_bundles import LAMBDA_RUNTIME

    runtimes = {p["Runtime"] for p in lambda_functions(load_template(path)).values()}
    assert runtimes == {LAMBDA_RUNTIME}


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=lambda p: p.name)
def test_handlers_exist_in_the_source_tree(path: Path) -> None:
    import importlib

    for logical_id, properties in lambda_functions(load_template(path)).items():
        module_name, _, function_name = properties["Handler"].rpartition(".")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function_name, None)), (
            f"{logical_id}: {properties['Handler']}"
        )


# --- Emitter: Quilt's parameters and what moto cannot model ------------------------------------

QUILT_PARAMETERS = {
    "VPC": None,
    "Subnets": None,
    "SecurityGroup": None,
    "BucketName": None,
    "BucketIgnorePrefixes": "",
    "BucketPrefixDepth": 2,
    "BucketThresholdDuration": 300,
    "BucketThresholdEventCount": 20,
    "DBUser": None,
    "DBPassword": None,
    "EventBusName": "edp",
}


def test_emitter_takes_quilts_parameters_with_quilts_defaults(emitter_template: dict) -> None:
    parameters = emitter_template["Parameters"]
    for name, default in QUILT_PARAMETERS.items():
        assert name in parameters, name
        if default is not None:
            assert str(parameters[name]["Default"]) == str(default), name
    assert parameters["DBPassword"]["NoEcho"] in (True, "true")
    assert {"MarkerFiles", "BucketThresholdMaxAge", "CodeS3Bucket", "CodeS3Key"} <= set(parameters)
    # The password pattern rejects what would break RDS or the secret's JSON.
    pattern = re.compile(parameters["DBPassword"]["AllowedPattern"])
    assert pattern.match("c0rrect-horse_battery!")
    for bad in ('quo"te', "sl/ash", "at@sign", "back\\slash", "sp ace"):
        assert not pattern.match(bad), bad


def test_emitter_database_is_private_encrypted_protected_and_requires_tls(
    emitter_template: dict,
) -> None:
    resources = emitter_template["Resources"]
    database = resources["Database"]
    props = database["Properties"]
    assert props["Engine"] == "postgres"
    assert props["PubliclyAccessible"] is False
    assert props["StorageEncrypted"] is True
    assert props["DeletionProtection"] is True
    assert database["DeletionPolicy"] == database["UpdateReplacePolicy"] == "Snapshot"
    # moto ignores the parameter group and the subnet group's subnets: checked here.
    assert props["DBParameterGroupName"] == {"Ref": "DatabaseParameters"}
    parameters = resources["DatabaseParameters"]["Properties"]
    assert parameters["Parameters"] == {"rds.force_ssl": "1"}
    assert parameters["Family"] == "postgres" + str(props["EngineVersion"]).split(".")[0]
    assert resources["DatabaseSubnetGroup"]["Properties"]["SubnetIds"] == {"Ref": "Subnets"}
    # Only the Lambdas' security group may connect, and only to PostgreSQL.
    ingress = resources["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress == [
        {
            "Description": "PostgreSQL from the EDP Lambdas",
            "IpProtocol": "tcp",
            "FromPort": 5432,
            "ToPort": 5432,
            "SourceSecurityGroupId": {"Ref": "SecurityGroup"},
        }
    ]


def test_emitter_password_reaches_the_lambdas_only_through_the_secret(
    emitter_template: dict,
) -> None:
    resources = emitter_template["Resources"]
    secret = resources["DatabaseSecret"]["Properties"]["SecretString"]
    secret_json = json.loads(re.sub(r"\$\{(\w+)\}", "x", secret["Fn::Sub"]))
    assert set(secret_json) >= {"username", "password"}
    attachment = resources["DatabaseSecretAttachment"]["Properties"]
    assert attachment["TargetId"] == {"Ref": "Database"}
    for logical_id, properties in lambda_functions(emitter_template).items():
        env = properties["Environment"]["Variables"]
        assert env["EDP_DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecret"}, logical_id
        url_template, variables = env["EDP_DATABASE_URL"]["Fn::Sub"]
        assert "DBPassword" not in json.dumps(env), logical_id
        assert url_template == "postgresql://${DBUser}@${Host}:${Port}/edp?${Tls}", logical_id
        # verify-full trusts exactly the CA bundle the builder puts at the zip's root (/var/task).
        assert variables["Tls"] == {
            "Fn::If": [
                "VerifyDatabaseCertificate",
                f"sslmode=verify-full&sslrootcert=/var/task/{RDS_CA_BUNDLE_NAME}",
                "sslmode=require",
            ]
        }
    assert emitter_template["Parameters"]["DBSSLMode"]["Default"] == "verify-full"
    # The only reader of the secret is GetSecretValue on that one secret.
    grants = [
        (where, s)
        for where, s in statements(emitter_template)
        if "secretsmanager:GetSecretValue" in json.dumps(s.get("Action"))
    ]
    # One per Lambda role: store, emit, and the (optional) backfill.
    assert len(grants) == 3
    assert all(s["Resource"] == {"Ref": "DatabaseSecret"} for _, s in grants)


def test_emitter_buffer_queue_accepts_messages_only_from_the_s3_rule(
    emitter_template: dict,
) -> None:
    # moto has no AWS::SQS::QueuePolicy: without it EventBridge could not deliver on AWS.
    policy = emitter_template["Resources"]["QueuesPolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "BufferQueue"}, {"Ref": "DeadLetterQueue"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ObjectEventsRule", "Arn"]}}
    }


def _alarm(template: dict, logical_id: str) -> dict:
    return template["Resources"][logical_id]["Properties"]


def test_emitter_alarms_on_dead_letters_and_lambda_errors(emitter_template: dict) -> None:
    # moto has no AWS::CloudWatch::Alarm in CloudFormation: checked here.
    dead_letters = _alarm(emitter_template, "DeadLetterQueueAlarm")
    assert dead_letters["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dead_letters["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "QueueName"]
    }
    for logical_id, function in (
        ("StoreErrorsAlarm", "StoreFunction"),
        ("EmitErrorsAlarm", "EmitFunction"),
    ):
        alarm = _alarm(emitter_template, logical_id)
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
    for logical_id in ("DeadLetterQueueAlarm", "StoreErrorsAlarm", "EmitErrorsAlarm"):
        alarm = _alarm(emitter_template, logical_id)
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        # Alarms go to their own topic: consumers of the ready topic must only see ready events.
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_consumer_alarms_and_dead_letters(consumer_template: dict) -> None:
    resources = consumer_template["Resources"]
    assert _alarm(consumer_template, "DeadLetterQueueAlarm")["AlarmActions"] == [
        {"Ref": "AlertTopic"}
    ]
    assert _alarm(consumer_template, "ErrorsAlarm")["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "Function"}}
    ]
    (statement,) = resources["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ReadyEventsRule", "Arn"]}}
    }
    function = resources["Function"]["Properties"]
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    (target,) = resources["ReadyEventsRule"]["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    # Storage Gateway refresh is granted only when file shares are given, and only on them.
    refresh = [s for where, s in statements(consumer_template) if "RefreshCache" in json.dumps(s)]
    assert refresh == [
        {
            "Sid": "RefreshFileShares",
            "Effect": "Allow",
            "Action": "storagegateway:RefreshCache",
            "Resource": {"Fn::Split": [",", {"Ref": "FileShareArns"}]},
        }
    ]


def test_consumer_hashing_grants_exactly_the_scratch_copies_and_checksum_reads(
    consumer_template: dict,
) -> None:
    resources = consumer_template["Resources"]
    policy = resources["HashWithS3ChecksumsPolicy"]
    # Granted only in s3-checksums mode; read-bytes needs nothing beyond reading the objects.
    assert policy["Condition"] == "HashesFromS3"
    assert consumer_template["Conditions"]["HashesFromS3"] == {
        "Fn::Equals": [{"Ref": "HashingMode"}, "s3-checksums"]
    }
    assert policy["Properties"]["Roles"] == [{"Ref": "Role"}]
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Sid": "ReadChecksums",
            "Effect": "Allow",
            "Action": ["s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/*"},
        },
        {
            "Sid": "HashScratch",
            "Effect": "Allow",
            "Action": [
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
                "s3:AbortMultipartUpload",
            ],
            "Resource": {
                "Fn::If": [
                    "HasHashScratch",
                    {"Fn::Sub": "arn:${AWS::Partition}:s3:::${HashScratch}*"},
                    {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/.quilt/edp/scratch/*"},
                ]
            },
        },
    ]
    # Delete is granted nowhere else: the consumer never deletes the watched objects.
    deleters = [
        statement.get("Sid")
        for _, statement in statements(consumer_template)
        if "s3:Delete" in json.dumps(statement.get("Action"))
    ]
    assert deleters == ["HashScratch"]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("", True),
        ("edp-scratch/", True),
        ("instrument-data/.quilt/tmp/", True),
        ("edp-scratch", False),  # "edp-scratch*" would also match edp-scratch-2
        ("edp-scratch/tmp", False),  # "tmp*" would also match tmp2/
        ("s3://edp-scratch/", False),
    ],
)
def test_consumer_hash_scratch_parameter_is_a_bucket_and_folder(
    consumer_template: dict, value: str, valid: bool
) -> None:
    pattern = consumer_template["Parameters"]["HashScratch"]
    assert bool(re.fullmatch(pattern["AllowedPattern"], value)) is valid
