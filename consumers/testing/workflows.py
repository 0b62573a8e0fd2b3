"""Install Quilt workflows (``.quilt/workflows/``) into a test registry bucket.

Uses the toolkit's installer (``consumers.install_workflows``) on the toolkit's
``workflows/`` folder, so tests validate packages exactly as a deployed registry
would. Where that folder is not available (a non-editable install without it),
a small permissive workflow keeps tests of other things working.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from consumers.testing.aws import WORKFLOWS_KEY_PREFIX, aws_client

CONFIG_FILE = "config.yml"
FALLBACK_WORKFLOW = "edp"
FALLBACK_SCHEMA_NAME = "edp-package"
FALLBACK_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "EDP package metadata (testing kit fallback: anything goes)",
    "type": "object",
}


def toolkit_workflows_dir() -> Path | None:
    """The toolkit's ``workflows/`` folder (beside the ``consumers`` package), if it is there."""
    import consumers

    package_dir = Path(consumers.__file__).parent
    for candidate in (package_dir / "workflows", package_dir.parent / "workflows"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def default_workflow(source: Path | None) -> str:
    """The ``default_workflow`` of ``source/config.yml`` (the fallback's when ``source`` is None)."""
    if source is None:
        return FALLBACK_WORKFLOW
    import yaml

    config = yaml.safe_load((source / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    name = config.get("default_workflow")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source / CONFIG_FILE} names no default_workflow")
    return name


def fallback_config(bucket: str) -> str:
    """A ``config.yml`` with one optional workflow that accepts any metadata."""
    return (
        'version: "1"\n'
        "is_workflow_required: false\n"
        f"default_workflow: {FALLBACK_WORKFLOW}\n"
        "workflows:\n"
        f"  {FALLBACK_WORKFLOW}:\n"
        "    name: EDP package\n"
        f"    metadata_schema: {FALLBACK_SCHEMA_NAME}\n"
        "schemas:\n"
        f"  {FALLBACK_SCHEMA_NAME}:\n"
        f"    url: s3://{bucket}/{WORKFLOWS_KEY_PREFIX}{FALLBACK_SCHEMA_NAME}.json\n"
    )


def install_workflows(bucket: str, source: Path | None) -> list[str]:
    """Write ``source``'s workflow config and schemas to ``s3://bucket/.quilt/workflows/``.

    ``source`` is a folder with ``config.yml`` and the schemas it names by
    relative URL (the layout ``python -m consumers.install_workflows`` reads);
    ``None`` installs the permissive fallback. Returns the ``s3://`` URLs written.
    """
    s3 = aws_client("s3")
    if source is not None:
        from consumers.install_workflows import install, plan_install

        return install(plan_install(Path(source), bucket), s3)
    config_key = f"{WORKFLOWS_KEY_PREFIX}{CONFIG_FILE}"
    schema_key = f"{WORKFLOWS_KEY_PREFIX}{FALLBACK_SCHEMA_NAME}.json"
    s3.put_object(Bucket=bucket, Key=config_key, Body=fallback_config(bucket).encode())
    s3.put_object(Bucket=bucket, Key=schema_key, Body=json.dumps(FALLBACK_SCHEMA).encode())
    return [f"s3://{bucket}/{config_key}", f"s3://{bucket}/{schema_key}"]
