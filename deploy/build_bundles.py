"""Build the Lambda deployment zips (emitter without quilt3, consumer with it) and report their sizes.

Usage (from the repository root)::

    python deploy/build_bundles.py                 # both bundles into dist/lambda/
    python deploy/build_bundles.py emitter --out /tmp/bundles
    python deploy/build_bundles.py --rds-ca-bundle global-bundle.pem   # for sslmode=verify-full

Each bundle is our own package(s) copied from the source tree plus their runtime dependencies,
installed by ``pip install --target`` as Linux x86_64 wheels for the Lambda runtime's Python,
without what the runtime already provides (boto3, botocore, s3transfer). Dependencies come from
``pyproject.toml`` so there is one list to maintain. The zips are deterministic (sorted entries,
fixed timestamps), so the same inputs give the same SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent

# The templates' Lambda runtime; compiled wheels (psycopg-binary) must match it.
LAMBDA_PYTHON_VERSION = "3.13"
LAMBDA_RUNTIME = f"python{LAMBDA_PYTHON_VERSION}"
# Lambda's x86_64 runtimes run Amazon Linux 2023 (glibc 2.34): any of these wheels load there.
LAMBDA_PLATFORMS = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_34_x86_64",
)
# Lambda quotas: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
ZIPPED_LIMIT_BYTES = 50 * 1024 * 1024  # direct upload of a .zip deployment package
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024  # unzipped deployment package, layers included
# Already in every Python Lambda runtime; bundling them only adds weight.
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer"})
# Where the emitter template's EDP_DATABASE_URL (sslmode=verify-full) expects the RDS CA bundle:
# the zip's root is /var/task in the Lambda.
RDS_CA_BUNDLE_NAME = "rds-ca-bundle.pem"
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
# Written into every zip entry so that rebuilding the same inputs gives the same bytes.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)

Installer = Callable[[Sequence[str], Path], None]


class BundleError(Exception):
    """A bundle could not be built, or is over Lambda's size limits."""


@dataclass(frozen=True)
class BundleSpec:
    """What goes into one bundle: our packages (source folders) and pip requirements."""

    name: str
    packages: tuple[str, ...]
    requirements: tuple[str, ...]
    # Sub-folders of our packages that are not needed at run time (e.g. the testing kit).
    exclude: tuple[str, ...] = ()

    @property
    def zip_name(self) -> str:
        return f"edp-{self.name}.zip"


@dataclass(frozen=True)
class BundleReport:
    """A built bundle and how it compares with Lambda's limits."""

    name: str
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    sha256: str

    @property
    def within_limits(self) -> bool:
        return (
            self.zipped_bytes <= ZIPPED_LIMIT_BYTES and self.unzipped_bytes <= UNZIPPED_LIMIT_BYTES
        )


def runtime_requirements(requirements: Iterable[str]) -> tuple[str, ...]:
    """The requirements without those the Lambda runtime provides, in their original spelling."""
    kept = []
    for text in requirements:
        if canonicalize_name(Requirement(text).name) not in PROVIDED_BY_RUNTIME:
            kept.append(text)
    return tuple(kept)


def bundle_specs(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, BundleSpec]:
    """The emitter and consumer bundles, with dependencies read from ``pyproject.toml``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    base = project.get("dependencies", [])
    extras = project.get("optional-dependencies", {})
    try:
        postgres, consumers = extras["postgres"], extras["consumers"]
    except KeyError as err:
        raise BundleError(f"{pyproject} has no optional dependency group {err}") from err
    return {
        "emitter": BundleSpec(
            name="emitter",
            packages=("edp", "edp_common"),
            requirements=runtime_requirements([*base, *postgres, *extras.get("rules", [])]),
        ),
        "consumer": BundleSpec(
            name="consumer",
            packages=("consumers", "edp_common"),
            requirements=runtime_requirements([*base, *consumers]),
            exclude=("consumers/testing",),
        ),
    }


def pip_install(requirements: Sequence[str], target: Path) -> None:
    """Install Linux wheels for the Lambda runtime into ``target`` with pip."""
    if not requirements:
        return
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)),
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundleError(
            f"pip could not install {' '.join(requirements)} for {LAMBDA_RUNTIME}:\n"
            f"{result.stderr.strip()}"
        )


def remove_runtime_provided(target: Path) -> None:
    """Delete packages the runtime provides (pulled in as dependencies, e.g. by quilt3)."""
    for entry in target.iterdir():
        stem = entry.name.split("-", 1)[0] if entry.name.endswith(".dist-info") else entry.name
        if canonicalize_name(stem) in PROVIDED_BY_RUNTIME:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    # Console scripts are useless in a Lambda and reference the build machine's interpreter.
    shutil.rmtree(target / "bin", ignore_errors=True)


def copy_packages(spec: BundleSpec, source_root: Path, target: Path) -> None:
    """Copy our own packages from the source tree, without caches and excluded folders."""
    excluded = {(source_root / path).resolve() for path in spec.exclude}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name == "__pycache__" or name.endswith(".pyc")}
        skipped |= {name for name in names if (Path(folder) / name).resolve() in excluded}
        return skipped

    for package in spec.packages:
        source = source_root / package
        if not (source / "__init__.py").is_file():
            raise BundleError(f"{source} is not a Python package")
        shutil.copytree(source, target / package, ignore=ignore)


def write_zip(source: Path, zip_path: Path) -> None:
    """Zip a folder deterministically: sorted entries, fixed timestamps, same permissions."""
    files = sorted(path for path in source.rglob("*") if path.is_file())
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), date_time=ZIP_TIMESTAMP)
            info.external_attr = 0o644 << 16  # Lambda needs files readable by its user
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def measure(name: str, zip_path: Path) -> BundleReport:
    """Sizes, file count and SHA-256 of a built zip."""
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    return BundleReport(
        name=name,
        path=zip_path,
        zipped_bytes=zip_path.stat().st_size,
        unzipped_bytes=sum(info.file_size for info in infos),
        files=len(infos),
        sha256=digest,
    )


def read_ca_bundle(path: Path) -> bytes:
    """The RDS CA bundle (PEM), checked to hold at least one certificate."""
    try:
        content = path.read_bytes()
    except OSError as err:
        raise BundleError(f"cannot read the RDS CA bundle {path}: {err}") from err
    if PEM_CERTIFICATE.encode() not in content:
        raise BundleError(
            f"{path} holds no PEM certificate; download the RDS CA bundle "
            "(global-bundle.pem) from the AWS RDS documentation"
        )
    return content


def build_bundle(
    spec: BundleSpec,
    out_dir: Path,
    *,
    source_root: Path = REPO_ROOT,
    install: Installer = pip_install,
    extra_files: Mapping[str, bytes] | None = None,
) -> BundleReport:
    """Build one bundle into ``out_dir`` and report on it; ``extra_files`` go to the zip's root."""
    with tempfile.TemporaryDirectory(prefix=f"edp-{spec.name}-") as staging_name:
        staging = Path(staging_name)
        install(spec.requirements, staging)
        remove_runtime_provided(staging)
        copy_packages(spec, source_root, staging)
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        zip_path = out_dir / spec.zip_name
        write_zip(staging, zip_path)
    return measure(spec.name, zip_path)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def format_report(reports: Iterable[BundleReport]) -> str:
    """A table of the bundles against Lambda's limits, as printed by the command."""
    lines = [
        f"{'bundle':<10} {'zipped':>10} {'unzipped':>10} {'files':>6}  within limits  sha256",
    ]
    for report in reports:
        verdict = "yes" if report.within_limits else "NO"
        lines.append(
            f"{report.name:<10} {_mib(report.zipped_bytes):>10} {_mib(report.unzipped_bytes):>10}"
            f" {report.files:>6}  {verdict:<13}  {report.sha256[:16]}"
        )
    lines.append(
        f"limits: {_mib(ZIPPED_LIMIT_BYTES)} zipped (direct upload),"
        f" {_mib(UNZIPPED_LIMIT_BYTES)} unzipped; runtime {LAMBDA_RUNTIME}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "bundles",
        nargs="*",
        metavar="BUNDLE",
        help="emitter and/or consumer (default: both)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("EDP_BUNDLE_DIR", REPO_ROOT / "dist" / "lambda")),
        help="output folder (default: dist/lambda)",
    )
    parser.add_argument(
        "--rds-ca-bundle",
        type=Path,
        help=f"RDS CA bundle (PEM) to add to the emitter zip as {RDS_CA_BUNDLE_NAME}; "
        "needed for the template's default DBSSLMode=verify-full",
    )
    args = parser.parse_args(argv)
    try:
        specs = bundle_specs()
        names = args.bundles or list(specs)
        unknown = sorted(set(names) - set(specs))
        if unknown:
            raise BundleError(
                f"unknown bundle {', '.join(unknown)}; choose from {', '.join(specs)}"
            )
        emitter_files = {}
        if args.rds_ca_bundle is not None:
            emitter_files[RDS_CA_BUNDLE_NAME] = read_ca_bundle(args.rds_ca_bundle)
        elif "emitter" in names:
            print(
                "build_bundles: note: no --rds-ca-bundle, so the emitter can only connect with "
                "DBSSLMode=require (see README.md, Deploying on AWS)",
                file=sys.stderr,
            )
        reports = [
            build_bundle(
                specs[name], args.out, extra_files=emitter_files if name == "emitter" else None
            )
            for name in names
        ]
    except BundleError as err:
        print(f"build_bundles: {err}", file=sys.stderr)
        return 2
    print(format_report(reports))
    for report in reports:
        print(f"{report.name}: {report.path}")
    if not all(report.within_limits for report in reports):
        print("build_bundles: a bundle is over Lambda's size limits", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
