"""Installing the instrument workflow into a registry bucket, and the schema it enforces."""

from __future__ import annotations

import json
import pathlib

import jsonschema
import pytest
import yaml

from consumers.install_workflows import WorkflowInstallError, install, main, plan_install

WORKFLOWS = pathlib.Path(__file__).resolve().parents[2] / "workflows"
GOOD = {
    "Author": "EDP",
    "ComputerName": "Genome Lab - 1234",
    "Date": "2022-12-08",
    "ProjectID": "YYD",
    "StudyID": "ABC-23-023394",
}


def test_plan_rewrites_relative_schema_urls_into_the_registry() -> None:
    plan = plan_install(WORKFLOWS, "registry-bucket")
    assert set(plan.objects) == {
        ".quilt/workflows/config.yml",
        ".quilt/workflows/schemas/instrument.json",
    }
    config = yaml.safe_load(plan.objects[".quilt/workflows/config.yml"])
    assert config["schemas"]["instrument"]["url"] == (
        "s3://registry-bucket/.quilt/workflows/schemas/instrument.json"
    )
    assert config["default_workflow"] == "instrument"


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"StudyID": None}, False),
        ({"Date": "08/12/2022"}, False),
        ({"Date": "2022-13-01"}, False),
        ({"Author": ""}, False),
        ({"Extra": "kept"}, True),
    ],
)
def test_the_instrument_schema_accepts_good_metadata_and_refuses_bad(
    change: dict[str, object], valid: bool
) -> None:
    schema = json.loads((WORKFLOWS / "schemas" / "instrument.json").read_text())
    meta = {**GOOD, **change}
    meta = {k: v for k, v in meta.items() if v is not None}
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(meta))
    assert (not errors) is valid


def test_invalid_schema_is_refused_before_upload(tmp_path: pathlib.Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "config.yml").write_text((WORKFLOWS / "config.yml").read_text())
    (tmp_path / "schemas" / "instrument.json").write_text('{"type": "objekt"}')
    with pytest.raises(WorkflowInstallError, match="schema 'instrument'"):
        plan_install(tmp_path, "registry-bucket")


def test_invalid_config_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "config.yml").write_text("version: '1'\n")
    with pytest.raises(WorkflowInstallError, match="workflow config schema"):
        plan_install(tmp_path, "registry-bucket")


def test_install_writes_what_quilt3_then_loads(aws: str) -> None:
    import boto3
    from quilt3.backends import get_package_registry

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="registry-bucket")
    urls = install(plan_install(WORKFLOWS, "registry-bucket"), s3)
    assert "s3://registry-bucket/.quilt/workflows/config.yml" in urls
    config = get_package_registry("s3://registry-bucket").get_workflow_config()
    validator = config.get_workflow_validator("instrument")
    validator.validate_metadata(GOOD)  # loads the schema from S3 and accepts good metadata


def test_the_cli_dry_run_prints_the_targets_and_fails_on_a_missing_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["s3://registry-bucket", "--source", str(WORKFLOWS), "--dry-run"]) == 0
    assert "s3://registry-bucket/.quilt/workflows/config.yml" in capsys.readouterr().out
    assert main(["s3://registry-bucket", "--source", "/nonexistent", "--dry-run"]) == 1
