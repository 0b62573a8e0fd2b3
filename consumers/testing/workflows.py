"""Install Quilt workflows (``.quilt/workflows/``) into a test registry bucket.

Uses the toolkit's own installer and ``workflows/`` folder when they are there,
so tests validate packages exactly as a deployed registry would; otherwise a
small permissive workflow keeps tests of other things working.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from consumers.testing.aws import WORKFLOWS_KEY_PREFIX, aws_client

DEFAULT_WORKFLOW = "edp"
CONFIG_KEY = f"{WORKFLOWS_KEY_PREFIX}config.yml"
FALLBACK_SCHEMA_NAME = "edp-package"

FALLBACK_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "EDP package metadata (testing kit fallback)",
    "type": "object",
}


def fallback_config(bucket: str) -> str:
    """A ``config.yml`` with one optional workflow, used when no toolkit workflows are found."""
    return (
        'version: "1"\n'
        "is_workflow_required: false\n"
        f"default_workflow: {DEFAULT_WORKFLOW}\n"
        "workflows:\n"
        f"  {DEFAULT_WORKFLOW}:\n"
        "    name: EDP package\n"
        f"    metadata_schema: {FALLBACK_SCHEMA_NAME}\n"
        "schemas:\n"
        f"  {FALLBACK_SCHEMA_NAME}:\n"
        f"    url: s3://{bucket}/{WORKFLOWS_KEY_PREFIX}{FALLBACK_SCHEMA_NAME}.json\n"
    )


def toolkit_workflows_dir() -> Path | None:
    """The toolkit's ``workflows/`` folder (next to the ``consumers`` package), if it has a config."""
    import consumers

    for base in (Path(consumers.__file__).parent, Path(consumers.__file__).parent.parent):
        candidate = base / "workflows"
        if (candidate / "config.yml").is_file():
            return candidate
    return None


def _toolkit_installer() -> Any:
    # The consumers library may ship its own installer; prefer it so there is one code path.
    for module_name, function_name in (
        ("consumers.workflows_install", "install_workflows"),
        ("consumers.workflows", "install_workflows"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        installer = getattr(module, function_name, None)
        if callable(installer):
            return installer
    return None


def install_workflows(bucket: str, source: Path | None = None) -> list[str]:
    """Put Quilt workflow files into ``s3://bucket/.quilt/workflows/``; returns the keys written.

    ``source`` is a folder holding ``config.yml`` and the schemas it names; by
    default the toolkit's installer or ``workflows/`` folder, else a permissive
    fallback. ``s3://…/.quilt/workflows/`` schema URLs in the config are pointed
    at ``bucket``.
    """
    s3 = aws_client("s3")
    if source is None:
        installer = _toolkit_installer()
        if installer is not None:
            written = installer(s3, bucket)
            return list(written) if written else _listed_workflow_keys(s3, bucket)
        source = toolkit_workflows_dir()
    if source is None:
        s3.put_object(Bucket=bucket, Key=CONFIG_KEY, Body=fallback_config(bucket).encode())
        schema_key = f"{WORKFLOWS_KEY_PREFIX}{FALLBACK_SCHEMA_NAME}.json"
        s3.put_object(Bucket=bucket, Key=schema_key, Body=json.dumps(FALLBACK_SCHEMA).encode())
        return [CONFIG_KEY, schema_key]
    written = []
    for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        body = path.read_bytes()
        if relative == "config.yml":
            body = _point_schema_urls_at(body.decode("utf-8"), bucket).encode("utf-8")
        key = f"{WORKFLOWS_KEY_PREFIX}{relative}"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        written.append(key)
    return written


def _point_schema_urls_at(config_text: str, bucket: str) -> str:
    import re

    return re.sub(
        r"s3://[^/\s\"']+/\.quilt/workflows/",
        f"s3://{bucket}/{WORKFLOWS_KEY_PREFIX}",
        config_text,
    )


def _listed_workflow_keys(s3: Any, bucket: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=WORKFLOWS_KEY_PREFIX)
    return sorted(item["Key"] for item in listing.get("Contents", []))
