"""Bake cookiecutter-consumer with default and awkward answers; the generated project must pass its
own tests, ruff and cfn-lint right away."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.template.baking import CfnLoader, bake

# Each test bakes the template and runs cfn-lint, ruff or pytest on the result in a subprocess.
pytestmark = pytest.mark.integration

AWKWARD_NAME = 'Ünïcode Lab\'s "Consumer"'
AWKWARD_DESCRIPTION = (
    'Packages "runs" from the lab\'s C:\\instruments — ünïcode, {braces} & """triple""".'
)
AWKWARD_AUTHOR = 'Zoë O\'Brien "Z"'
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "awkward": {
        "project_name": AWKWARD_NAME,
        "description": AWKWARD_DESCRIPTION,
        "author": AWKWARD_AUTHOR,
        "workflow_name": "instrument",
        "quarantine_bucket": "lab.quarantine-01",
        "event_bus_name": "edp-events",
        "aws_region": "eu-west-2",
        "python_version": "3.12",
    },
    # A one-letter package sorts before every other import: catches import-order lint.
    "short": {"project_name": "A", "python_version": "3.14"},
}
DERIVED_NAMES = {
    "default": ("my-edp-consumer", "my_edp_consumer"),
    "awkward": ("unicode-lab-s-consumer", "unicode_lab_s_consumer"),
    "short": ("a", "a"),
}
# Running a generated test suite takes ~10-25 s; two variants cover plain and awkward names.
TESTED_VARIANTS = ["default", "awkward"]
Baker = Callable[[str], Path]


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Baker:
    """Bakes each variant once per module, on first use."""
    projects: dict[str, Path] = {}

    def project(variant: str) -> Path:
        if variant not in projects:
            projects[variant] = bake(VARIANTS[variant], tmp_path_factory.mktemp(variant))
        return projects[variant]

    return project


def run(project: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=project, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_names_are_derived_as_ascii_from_the_project_name(variant: str, baked: Baker) -> None:
    project = baked(variant)
    slug, package = DERIVED_NAMES[variant]

    assert project.name == slug
    assert (project / "src" / package / "handler.py").is_file()
    assert (project / "src" / package / "metadata.py").is_file()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_free_text_lands_verbatim_in_pyproject_readme_and_template(
    variant: str, baked: Baker
) -> None:
    project = baked(variant)
    answers = VARIANTS[variant]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    template = yaml.load((project / "template.yaml").read_text(encoding="utf-8"), CfnLoader)
    readme = (project / "README.md").read_text(encoding="utf-8")

    description = answers.get("description", pyproject["project"]["description"])
    assert pyproject["project"]["description"] == description
    assert template["Description"] == description
    assert pyproject["project"]["authors"] == [{"name": answers.get("author", "EDP user")}]
    assert readme.startswith(f"# {answers.get('project_name', 'My EDP Consumer')}\n")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_template_routes_ready_events_from_the_bus_to_the_lambda_with_a_dlq(
    variant: str, baked: Baker
) -> None:
    project = baked(variant)
    template = yaml.load((project / "template.yaml").read_text(encoding="utf-8"), CfnLoader)
    resources = template["Resources"]
    rule = resources["PackageObjectsReadyRule"]["Properties"]
    (target,) = rule["Targets"]
    function = resources["ConsumerFunction"]["Properties"]

    assert rule["EventPattern"]["source"] == ["com.quiltdata.edp"]
    assert rule["EventPattern"]["detail-type"] == ["package-objects-ready"]
    assert rule["EventBusName"] == {"Ref": "EventBusName"}
    assert target["Arn"] == {"Fn::GetAtt": "ConsumerFunction.Arn"}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": "DeadLetterQueue.Arn"}
    assert function["DeadLetterQueue"]["TargetArn"] == {"Fn::GetAtt": "DeadLetterQueue.Arn"}
    assert {"DeadLettersAlarm", "ConsumerErrorsAlarm"} <= set(resources)
    assert function["Runtime"] == f"python{VARIANTS[variant].get('python_version', '3.13')}"
    assert template["Parameters"]["EventBusName"]["Default"] == VARIANTS[variant].get(
        "event_bus_name", "edp"
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_template_refreshes_file_shares_and_subscribes_an_alert_email_like_the_reference(
    variant: str, baked: Baker
) -> None:
    from consumers.settings import ENV_FILE_SHARE_ARNS, ENV_PACKAGE_DATE_KEY

    project = baked(variant)
    template = yaml.load((project / "template.yaml").read_text(encoding="utf-8"), CfnLoader)
    resources = template["Resources"]
    env = resources["ConsumerFunction"]["Properties"]["Environment"]["Variables"]
    policy = resources["RefreshFileSharesPolicy"]
    subscription = resources["AlertEmailSubscription"]

    assert env[ENV_FILE_SHARE_ARNS] == {"Ref": "FileShareArns"}
    assert env[ENV_PACKAGE_DATE_KEY] == {"Ref": "PackageDateKey"}
    assert template["Parameters"]["PackageDateKey"]["Default"] == "Date"  # the workflow wants it
    assert template["Parameters"]["FileShareArns"]["Default"] == ""
    assert template["Conditions"]["HasFileShares"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "FileShareArns"}, ""]}]
    }
    assert policy["Condition"] == "HasFileShares"
    assert policy["Properties"]["Roles"] == [{"Ref": "ConsumerFunctionRole"}]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "storagegateway:RefreshCache"
    assert statement["Resource"] == {"Fn::Split": [",", {"Ref": "FileShareArns"}]}
    assert subscription["Condition"] == "HasAlertEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlertEmail"}
    assert subscription["Properties"]["TopicArn"] == env["SNS_TOPIC_ARN"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_template_passes_cfn_lint_without_errors_or_warnings(
    variant: str, baked: Baker
) -> None:
    project = baked(variant)

    result = run(project, str(Path(sysconfig.get_path("scripts")) / "cfn-lint"), "template.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_generated_code_passes_ruff(variant: str, baked: Baker) -> None:
    project = baked(variant)

    check = run(project, sys.executable, "-m", "ruff", "check", ".")
    formatted = run(project, sys.executable, "-m", "ruff", "format", "--check", ".")

    assert check.returncode == 0, check.stdout + check.stderr
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.slow
@pytest.mark.parametrize("variant", TESTED_VARIANTS)
def test_the_generated_tests_pass_right_after_generation(variant: str, baked: Baker) -> None:
    project = baked(variant)

    result = run(project, sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider")

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
    # The loop closes in the generated project too: its own writes coming back are unchanged.
    assert "PASSED tests/test_handler.py::test_the_consumers_own_files_coming_back" in result.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_template_lets_s3_compute_checksums_under_the_scratch_prefix_only(
    variant: str, baked: Baker
) -> None:
    project = baked(variant)
    template = yaml.load((project / "template.yaml").read_text(encoding="utf-8"), CfnLoader)
    [policy] = template["Resources"]["ConsumerFunction"]["Properties"]["Policies"]
    found = {statement["Sid"]: statement for statement in policy["Statement"]}
    assert found["HashScratch"]["Action"] == [
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:AbortMultipartUpload",
    ]
    assert found["HashScratch"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${SourceBucketName}/.quilt/edp/scratch/*"
    }
    assert found["ReadChecksums"]["Action"] == "s3:GetObjectVersionAttributes"
    deleters = [sid for sid, s in found.items() if "s3:Delete" in str(s["Action"])]
    assert deleters == ["HashScratch"]
