"""Deploy helper: upload a Lambda bundle under a content-addressed key and create or update a stack.

Usage (from the repository root, after ``python deploy/build_bundles.py``)::

    python deploy/stack.py emitter --stack-name edp --code-bucket my-artifacts \\
        --parameter VPC=vpc-0abc --parameter Subnets=subnet-1,subnet-2 ...

The bundle's key contains its SHA-256, so a new build always changes ``CodeS3Key`` and
CloudFormation updates the Lambda code; the same build deploys as "no changes".
Clients are created at call time (or passed in), so the helper runs against moto in tests.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError, WaiterError

DEPLOY_DIR = Path(__file__).resolve().parent
TEMPLATES = {
    "emitter": DEPLOY_DIR / "templates" / "emitter.yaml",
    "consumer": DEPLOY_DIR / "templates" / "consumer.yaml",
}
DEFAULT_BUNDLE_DIR = DEPLOY_DIR.parent / "dist" / "lambda"
# The templates create IAM roles with generated names only.
CAPABILITIES = ("CAPABILITY_IAM",)
NO_CHANGES = "No updates are to be performed."


class DeployError(Exception):
    """Uploading a bundle or deploying a stack failed; the message says which and why."""


@dataclass(frozen=True)
class DeployResult:
    """What a deployment produced."""

    stack_name: str
    status: str
    outputs: dict[str, str]
    code_key: str


def bundle_key(zip_path: Path, prefix: str = "edp") -> str:
    """``<prefix>/<name>-<first 16 hex of SHA-256>.zip``: a new build gets a new key."""
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
    return f"{prefix.strip('/')}/{zip_path.stem}-{digest}.zip"


def upload_bundle(s3: Any, zip_path: Path, bucket: str, key: str) -> None:
    """Put the zip at ``s3://bucket/key``."""
    try:
        s3.upload_file(str(zip_path), bucket, key)
    except (ClientError, OSError) as err:
        raise DeployError(f"could not upload {zip_path} to s3://{bucket}/{key}: {err}") from err


def _stack_status(cfn: Any, stack_name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise DeployError(f"could not describe stack {stack_name}: {err}") from err
    return str(stacks[0]["StackStatus"]) if stacks else None


def deploy_stack(
    cfn: Any,
    stack_name: str,
    template_body: str,
    parameters: Mapping[str, str],
) -> tuple[str, dict[str, str]]:
    """Create the stack, or update it if it exists, wait, and return its status and outputs."""
    request = {
        "StackName": stack_name,
        "TemplateBody": template_body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": list(CAPABILITIES),
    }
    existing = _stack_status(cfn, stack_name)
    try:
        if existing is None:
            cfn.create_stack(**request)
            cfn.get_waiter("stack_create_complete").wait(StackName=stack_name)
        else:
            try:
                cfn.update_stack(**request)
            except ClientError as err:
                if NO_CHANGES not in str(err):
                    raise
            else:
                cfn.get_waiter("stack_update_complete").wait(StackName=stack_name)
    except (ClientError, WaiterError) as err:
        raise DeployError(
            f"deploying stack {stack_name} failed: {err}; see its events with "
            f"`aws cloudformation describe-stack-events --stack-name {stack_name}`"
        ) from err
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    return str(stack["StackStatus"]), outputs


def deploy(
    kind: str,
    stack_name: str,
    code_bucket: str,
    parameters: Mapping[str, str],
    *,
    bundle_dir: Path = DEFAULT_BUNDLE_DIR,
    s3: Any = None,
    cfn: Any = None,
) -> DeployResult:
    """Upload the ``kind`` bundle and deploy its template with ``parameters``."""
    if kind not in TEMPLATES:
        raise DeployError(f"unknown stack kind {kind!r}; choose from {', '.join(TEMPLATES)}")
    zip_path = bundle_dir / f"edp-{kind}.zip"
    if not zip_path.is_file():
        raise DeployError(
            f"{zip_path} does not exist; build it with python deploy/build_bundles.py"
        )
    s3 = s3 if s3 is not None else boto3.client("s3")
    cfn = cfn if cfn is not None else boto3.client("cloudformation")
    key = bundle_key(zip_path)
    upload_bundle(s3, zip_path, code_bucket, key)
    full_parameters = {**parameters, "CodeS3Bucket": code_bucket, "CodeS3Key": key}
    template_body = TEMPLATES[kind].read_text(encoding="utf-8")
    status, outputs = deploy_stack(cfn, stack_name, template_body, full_parameters)
    return DeployResult(stack_name=stack_name, status=status, outputs=outputs, code_key=key)


def parse_parameters(pairs: Sequence[str]) -> dict[str, str]:
    """``["Key=value", ...]`` to a dict; the value may contain ``=`` and commas."""
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter {pair!r} is not Key=value")
        parameters[key] = value
    return parameters


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=sorted(TEMPLATES), help="which stack to deploy")
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--code-bucket", required=True, help="bucket for the Lambda bundle")
    parser.add_argument("--bundle-dir", type=Path, default=DEFAULT_BUNDLE_DIR)
    parser.add_argument(
        "--parameter", action="append", default=[], metavar="Key=value", help="repeatable"
    )
    args = parser.parse_args(argv)
    try:
        result = deploy(
            args.kind,
            args.stack_name,
            args.code_bucket,
            parse_parameters(args.parameter),
            bundle_dir=args.bundle_dir,
        )
    except DeployError as err:
        print(f"stack: {err}", file=sys.stderr)
        return 1
    print(f"{result.stack_name}: {result.status} (code s3://{args.code_bucket}/{result.code_key})")
    for key, value in sorted(result.outputs.items()):
        print(f"  {key} = {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
