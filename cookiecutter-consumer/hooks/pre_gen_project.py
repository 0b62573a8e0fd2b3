"""Pre-generation hook of cookiecutter-consumer: reject names that would break the project.

The answers are read as JSON data, never pasted into Python code, so quotes,
backslashes or braces in them cannot change what this hook does.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

# A raw string cannot be closed by JSON text: its quotes are all escaped or isolated.
ANSWERS_JSON = r"""{{ cookiecutter | jsonify }}"""

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE = re.compile(r"^[a-z][a-z0-9_]*$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
BUS_NAME = re.compile(r"^[A-Za-z0-9._/-]{1,256}$")
WORKFLOW = re.compile(r"^[A-Za-z0-9_.-]*$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$")
PYTHON_VERSIONS = ("3.12", "3.13", "3.14")  # Lambda runtimes cfn-lint does not flag as deprecated
MAX_SLUG = 50  # keeps generated lines short and resource names within AWS limits
MAX_PACKAGE = 40
# Package names that would shadow what the generated project imports.
TAKEN_PACKAGES = {"consumers", "edp", "tests", "quilt3", "boto3", "botocore", "moto", "pytest"}


def problems(answers: dict[str, object]) -> list[str]:
    """Every reason the answers cannot produce a working project (empty when they can)."""
    found: list[str] = []
    name = str(answers.get("project_name", ""))
    slug = str(answers.get("project_slug", ""))
    package = str(answers.get("package_name", ""))
    if not name.strip():
        found.append("project_name is empty")
    if not SLUG.match(slug) or len(slug) > MAX_SLUG:
        found.append(
            f"project_slug {slug!r} must be lowercase letters, digits and single '-', "
            f"start with a letter, at most {MAX_SLUG} characters"
        )
    if not PACKAGE.match(package) or len(package) > MAX_PACKAGE:
        found.append(
            f"package_name {package!r} must be lowercase letters, digits and '_', "
            f"start with a letter, at most {MAX_PACKAGE} characters"
        )
    elif (
        keyword.iskeyword(package)
        or package in TAKEN_PACKAGES
        or package in sys.stdlib_module_names
    ):
        found.append(f"package_name {package!r} is taken (a keyword or a module it would shadow)")
    bucket = str(answers.get("quarantine_bucket", ""))
    if not BUCKET.match(bucket) or ".." in bucket:
        found.append(f"quarantine_bucket {bucket!r} is not a valid S3 bucket name")
    bus = str(answers.get("event_bus_name", ""))
    if not BUS_NAME.match(bus):
        found.append(f"event_bus_name {bus!r} is not a valid EventBridge bus name")
    workflow = str(answers.get("workflow_name", ""))
    if not WORKFLOW.match(workflow):
        found.append(f"workflow_name {workflow!r} may hold only letters, digits, '_', '.', '-'")
    region = str(answers.get("aws_region", ""))
    if not REGION.match(region):
        found.append(f"aws_region {region!r} is not an AWS region name such as us-east-1")
    python = str(answers.get("python_version", ""))
    if python not in PYTHON_VERSIONS:
        found.append(f"python_version {python!r} must be one of {', '.join(PYTHON_VERSIONS)}")
    return found


def main() -> int:
    found = problems(json.loads(ANSWERS_JSON))
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    if found:
        print("Nothing was generated; run cookiecutter again with other answers.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
