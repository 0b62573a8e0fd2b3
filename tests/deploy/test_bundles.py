"""The Lambda bundle builder: what goes into each zip, what stays out, sizes against Lambda's limits."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from deploy.build_bundles import (
    RDS_CA_BUNDLE_NAME,
    UNZIPPED_LIMIT_BYTES,
    ZIPPED_LIMIT_BYTES,
    BundleError,
    BundleReport,
    BundleSpec,
    build_bundle,
    bundle_specs,
    format_report,
    main,
    read_ca_bundle,
)
from tests.deploy.deploy_support import REPO_ROOT


def names_in(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return set(zf.namelist())


def top_level(names: set[str]) -> set[str]:
    return {name.split("/", 1)[0] for name in names}


class FakePip:
    """Stands in for `pip install --target`: records the requirements, writes a few packages."""

    def __init__(self) -> None:
        self.requested: list[tuple[str, ...]] = []

    def __call__(self, requirements: Sequence[str], target: Path) -> None:
        self.requested.append(tuple(requirements))
        for path in (
            "requests/__init__.py",
            "requests-2.32.0.dist-info/METADATA",
            "boto3/__init__.py",
            "boto3-1.35.0.dist-info/METADATA",
            "botocore/__init__.py",
            "s3transfer/__init__.py",
            "bin/normalizer",
        ):
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_text("x = 1\n")


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for path in (
        "edp/__init__.py",
        "edp/handlers.py",
        "edp/__pycache__/handlers.cpython-311.pyc",
        "consumers/__init__.py",
        "consumers/auto_package.py",
        "consumers/testing/plugin.py",
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x = 1\n")
    return root


def test_bundle_holds_our_package_and_dependencies_but_not_what_the_runtime_has(
    tmp_path: Path, source_tree: Path
) -> None:
    pip = FakePip()
    spec = BundleSpec("consumer", ("consumers",), ("quilt3>=6",), exclude=("consumers/testing",))
    report = build_bundle(spec, tmp_path / "out", source_root=source_tree, install=pip)
    names = names_in(report.path)
    assert pip.requested == [("quilt3>=6",)]
    assert top_level(names) == {"consumers", "requests", "requests-2.32.0.dist-info"}
    assert "consumers/auto_package.py" in names
    assert not any(name.startswith("consumers/testing") for name in names)
    assert report.path.name == "edp-consumer.zip"
    assert report.files == len(names)
    assert report.within_limits


def test_bundles_are_reproducible_and_leave_caches_out(tmp_path: Path, source_tree: Path) -> None:
    spec = BundleSpec("emitter", ("edp",), ("platformdirs>=3",))
    first = build_bundle(spec, tmp_path / "one", source_root=source_tree, install=FakePip())
    second = build_bundle(spec, tmp_path / "two", source_root=source_tree, install=FakePip())
    assert first.sha256 == second.sha256
    assert not any("__pycache__" in name for name in names_in(first.path))


def test_specs_come_from_pyproject_without_runtime_provided_packages() -> None:
    specs = bundle_specs(REPO_ROOT / "pyproject.toml")
    emitter, consumer = specs["emitter"], specs["consumer"]
    assert emitter.packages == ("edp", "edp_common")
    assert consumer.packages == ("consumers", "edp_common")
    emitter_names = {r.split("[")[0].split(">")[0].split("=")[0] for r in emitter.requirements}
    consumer_names = {r.split("[")[0].split(">")[0].split("=")[0] for r in consumer.requirements}
    assert {"aws-lambda-powertools", "platformdirs", "psycopg", "pyyaml"} <= emitter_names
    assert any("psycopg[binary]" in r for r in emitter.requirements)
    assert "quilt3" not in emitter_names
    assert "quilt3" in consumer_names
    assert not {"boto3", "botocore"} & (emitter_names | consumer_names)


def test_report_flags_a_bundle_over_the_limits(tmp_path: Path) -> None:
    small = BundleReport("emitter", tmp_path / "a.zip", 5 << 20, 15 << 20, 500, "ab" * 32)
    too_big_zipped = BundleReport("x", tmp_path / "b.zip", ZIPPED_LIMIT_BYTES + 1, 1, 1, "0" * 64)
    too_big_unzipped = BundleReport(
        "y", tmp_path / "c.zip", 1, UNZIPPED_LIMIT_BYTES + 1, 1, "0" * 64
    )
    assert small.within_limits
    assert not too_big_zipped.within_limits
    assert not too_big_unzipped.within_limits
    table = format_report([small, too_big_zipped])
    assert "emitter" in table and "5.0 MiB" in table and "15.0 MiB" in table
    emitter_row, too_big_row = table.splitlines()[1:3]
    assert " yes " in emitter_row
    assert " NO " in too_big_row


FAKE_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_rds_ca_bundle_lands_at_the_zip_root(tmp_path: Path, source_tree: Path) -> None:
    spec = BundleSpec("emitter", ("edp",), ())
    report = build_bundle(
        spec,
        tmp_path / "out",
        source_root=source_tree,
        install=FakePip(),
        extra_files={RDS_CA_BUNDLE_NAME: FAKE_PEM},
    )
    with zipfile.ZipFile(report.path) as zf:
        assert zf.read(RDS_CA_BUNDLE_NAME) == FAKE_PEM


def test_a_ca_bundle_without_certificates_is_refused(tmp_path: Path) -> None:
    good, bad = tmp_path / "global-bundle.pem", tmp_path / "index.html"
    good.write_bytes(FAKE_PEM)
    bad.write_text("<html>Access denied</html>")
    assert read_ca_bundle(good) == FAKE_PEM
    with pytest.raises(BundleError, match="holds no PEM certificate"):
        read_ca_bundle(bad)
    with pytest.raises(BundleError, match="cannot read the RDS CA bundle"):
        read_ca_bundle(tmp_path / "missing.pem")


def test_command_rejects_an_unknown_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lambda-layer", "--out", "/nonexistent"]) == 2
    assert "unknown bundle lambda-layer" in capsys.readouterr().err


# --- Real builds with pip (PyPI) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.mark.integration  # pip installs the dependencies into a real zip
def test_emitter_bundle_has_the_emitter_and_psycopg_but_no_quilt3(built: Path) -> None:
    report = build_bundle(bundle_specs()["emitter"], built)
    names = names_in(report.path)
    packages = top_level(names)
    assert "edp/handlers.py" in names
    assert {"aws_lambda_powertools", "platformdirs", "psycopg", "psycopg_binary"} <= packages
    assert not {"quilt3", "boto3", "botocore", "s3transfer", "consumers"} & packages
    # psycopg's C extension is built for the Lambda runtime, not for the machine building it.
    assert any(
        name.startswith("psycopg_binary/") and "cpython-313-x86_64-linux-gnu" in name
        for name in names
    )
    assert report.within_limits, format_report([report])


@pytest.mark.slow
def test_consumer_bundle_has_quilt3_and_stays_within_limits(built: Path) -> None:
    report = build_bundle(bundle_specs()["consumer"], built)
    names = names_in(report.path)
    packages = top_level(names)
    assert "consumers/auto_package.py" in names
    assert {"quilt3", "aws_lambda_powertools", "jsonschema", "yaml"} <= packages
    assert not {"boto3", "botocore", "s3transfer", "edp"} & packages
    assert not any(name.startswith("consumers/testing/") for name in names)
    assert report.within_limits, format_report([report])
