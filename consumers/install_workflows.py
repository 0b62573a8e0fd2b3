"""Install a Quilt workflow configuration and its JSON Schemas into a registry bucket.

Usage: ``python -m consumers.install_workflows s3://<registry-bucket> [--source workflows]``.
Relative schema URLs in ``config.yml`` become ``s3://<bucket>/.quilt/workflows/<path>``; the
config and every schema are checked (quilt3's config schema, JSON Schema draft 7) before upload.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import yaml

from consumers.clients import Clients
from consumers.errors import WorkflowInstallError

WORKFLOWS_PREFIX = ".quilt/workflows/"
CONFIG_FILE = "config.yml"


@dataclass(frozen=True)
class InstallPlan:
    """The objects to write: key -> bytes, all under ``.quilt/workflows/``."""

    bucket: str
    objects: dict[str, bytes]


def plan_install(source: pathlib.Path, bucket: str) -> InstallPlan:
    """Read and check ``source/config.yml`` and its local schemas; rewrite relative schema URLs."""
    import jsonschema

    config_path = source / CONFIG_FILE
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise WorkflowInstallError(f"cannot read {config_path}: {err}") from err
    if not isinstance(config, dict):
        raise WorkflowInstallError(f"{config_path} must hold a YAML mapping")
    objects: dict[str, bytes] = {}
    for schema_id, schema_ref in (config.get("schemas") or {}).items():
        url = schema_ref.get("url", "") if isinstance(schema_ref, dict) else ""
        if urlparse(url).scheme:
            continue  # already absolute (s3:// or https://): used as is
        schema_path = source / url
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
            jsonschema.Draft7Validator.check_schema(schema)
        except (OSError, json.JSONDecodeError, jsonschema.SchemaError) as err:
            raise WorkflowInstallError(
                f"schema {schema_id!r} at {schema_path} is invalid: {err}"
            ) from err
        key = WORKFLOWS_PREFIX + pathlib.PurePosixPath(url).as_posix()
        objects[key] = (json.dumps(schema, indent=2) + "\n").encode()
        schema_ref["url"] = f"s3://{bucket}/{key}"
    _check_config(config)
    objects[WORKFLOWS_PREFIX + CONFIG_FILE] = yaml.safe_dump(config, sort_keys=False).encode()
    return InstallPlan(bucket=bucket, objects=objects)


def _check_config(config: dict[str, Any]) -> None:
    from quilt3.workflows import _get_conf_validator

    try:
        _get_conf_validator()(config)
    except Exception as err:
        raise WorkflowInstallError(
            f"config.yml fails quilt3's workflow config schema: {err}"
        ) from err


def install(plan: InstallPlan, s3: Any) -> list[str]:
    """Upload the plan's objects; return their ``s3://`` URLs."""
    from botocore.exceptions import BotoCoreError, ClientError

    urls = []
    for key, body in plan.objects.items():
        try:
            s3.put_object(Bucket=plan.bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as err:
            raise WorkflowInstallError(f"cannot write s3://{plan.bucket}/{key}: {err}") from err
        urls.append(f"s3://{plan.bucket}/{key}")
    return urls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consumers.install_workflows", description=__doc__.splitlines()[0]
    )
    parser.add_argument("registry", help="registry bucket, e.g. s3://my-bucket")
    parser.add_argument(
        "--source", default="workflows", type=pathlib.Path, help="folder with config.yml"
    )
    parser.add_argument("--dry-run", action="store_true", help="check and print, do not upload")
    args = parser.parse_args(argv)
    bucket = args.registry.removeprefix("s3://").strip("/")
    try:
        plan = plan_install(args.source, bucket)
        if args.dry_run:
            for key in plan.objects:
                print(f"would write s3://{bucket}/{key}")
            return 0
        for url in install(plan, Clients().s3):
            print(f"wrote {url}")
    except WorkflowInstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
