"""Shared pieces of the deployment tests: paths, template loading, a moto account, tiny bundles."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode
from moto import mock_aws

REPO_ROOT = Path(__file__).resolve().parents[2]

TEMPLATES_DIR = REPO_ROOT / "deploy" / "templates"
TEMPLATE_PATHS = sorted(TEMPLATES_DIR.glob("*.yaml"))
WATCHED_BUCKET = "instrument-bucket"  # the bucket of the fixture events in tests/events/
CODE_BUCKET = "edp-artifacts"


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
