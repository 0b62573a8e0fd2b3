"""The deploy helper's pure parts: bundle keys, parameter parsing, missing bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.stack import DeployError, bundle_key, deploy, parse_parameters
from tests.deploy.deploy_support import write_placeholder_bundles


def test_bundle_key_changes_with_the_content(tmp_path: Path) -> None:
    zip_path = tmp_path / "edp-emitter.zip"
    zip_path.write_bytes(b"first build")
    first = bundle_key(zip_path)
    zip_path.write_bytes(b"second build")
    second = bundle_key(zip_path)
    assert first.startswith("edp/edp-emitter-") and first.endswith(".zip")
    assert len(first) == len("edp/edp-emitter-") + 16 + len(".zip")
    assert first != second
    assert bundle_key(zip_path, prefix="/lambda/") == second.replace("edp/", "lambda/", 1)


def test_parameters_are_key_value_pairs_that_keep_commas_and_equals() -> None:
    assert parse_parameters(["Subnets=subnet-1,subnet-2", 'PackageMetadata={"a": "b=c"}']) == {
        "Subnets": "subnet-1,subnet-2",
        "PackageMetadata": '{"a": "b=c"}',
    }
    with pytest.raises(DeployError, match="not Key=value"):
        parse_parameters(["NoEqualsSign"])


def test_deploy_says_how_to_build_a_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"build it with python deploy/build_bundles\.py"):
        deploy("emitter", "edp", "artifacts", {}, bundle_dir=tmp_path)
    with pytest.raises(DeployError, match="unknown stack kind"):
        deploy("layer", "edp", "artifacts", {}, bundle_dir=write_placeholder_bundles(tmp_path))
