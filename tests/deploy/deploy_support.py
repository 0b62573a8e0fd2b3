"""Shared pieces of the deployment tests: paths, template loading, a moto account, tiny bundles."""

from __future__ import annotations

import ast
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from cfnlint.decode import decode
from moto import mock_aws

REPO_ROOT = Path(__file__).resolve().parents[2]

TEMPLATES_DIR = REPO_ROOT / "deploy" / "templates"
TEMPLATE_PATHS = sorted(TEMPLATES_DIR.glob("*.yaml"))
WATCHED_BUCKET = "instrument-bucket"  # the bucket of the fixture events in tests/events/
CODE_BUCKET = "edp-artifacts"
# moto 5 resolves `Ref` to an AWS::RDS::DBParameterGroup as an object and then fails on it, so the
# stack deployed into moto leaves the property out; test_templates.py checks it on the template.
MOTO_UNSUPPORTED_LINES = ("      DBParameterGroupName: !Ref DatabaseParameters\n",)


def load_template(path: Path) -> dict[str, Any]:
    """A template as a dict with intrinsic functions in long form (``Fn::GetAtt`` …)."""
    template, problems = decode(str(path))
    assert template is not None and not problems, problems
    return dict(template)


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_ids: tuple[str, str]
    security_group_id: str


FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def mocked_account() -> Iterator[None]:
    """moto for every service, with fake credentials (also for module-scoped fixtures, which run
    before the root conftest's function-scoped ones) and the artifacts bucket for the bundles."""
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        boto3.client("s3").create_bucket(Bucket=CODE_BUCKET)
        yield


def create_network() -> Network:
    """What the emitter stack expects to exist already: a VPC, two subnets, the Lambdas' group."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{n}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for n, zone in ((1, "us-east-1a"), (2, "us-east-1b"))
    )
    group = ec2.create_security_group(
        GroupName="edp-lambdas", Description="EDP Lambdas", VpcId=vpc
    )["GroupId"]
    return Network(vpc_id=vpc, subnet_ids=(subnets[0], subnets[1]), security_group_id=group)


def write_placeholder_bundles(folder: Path) -> Path:
    """Stand-in bundles (one module each): the stacks only need a zip in S3, not a working one."""
    for kind in ("emitter", "consumer"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("placeholder.py", f"KIND = {kind!r}\n")
        (folder / f"edp-{kind}.zip").write_bytes(buffer.getvalue())
    return folder


def moto_compatible(template_body: str) -> str:
    """The template without the lines moto's CloudFormation cannot deploy."""
    for line in MOTO_UNSUPPORTED_LINES:
        assert line in template_body, f"template changed: update MOTO_UNSUPPORTED_LINES ({line!r})"
        template_body = template_body.replace(line, "")
    return template_body


def inline_statements(role_name: str) -> dict[str, dict[str, Any]]:
    """The inline policy statements of a role, by Sid."""
    iam = boto3.client("iam")
    found = {}
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):
            # moto keeps the document a CloudFormation stack gave it as a Python repr.
            document = ast.literal_eval(unquote(document))
        for statement in document["Statement"]:
            if statement is None:
                continue  # moto keeps an `!If [.., .., !Ref AWS::NoValue]` list entry as None
            found[statement["Sid"]] = statement
    return found
