"""Quarantine: push a package its workflow rejected to a separate bucket, with the error in README.md."""

from __future__ import annotations

import pathlib

import quilt3

from consumers.building import CheckedPackage
from consumers.errors import QuarantineError
from consumers.quilt_env import quilt_stdout_captured

QUARANTINE_README = "README.md"


def quarantine_readme(*, package_name: str, source: str, workflow: str | None, error: str) -> str:
    """README.md of a quarantined package: what was rejected, by which workflow, and why."""
    return (
        f"# Quarantined: {package_name}\n\n"
        f"Event-Driven Packaging built this package from `{source}`, but the workflow "
        f"`{workflow or '(registry default)'}` rejected it, so it was pushed here instead.\n\n"
        f"## Error\n\n```\n{error}\n```\n"
    )


def quarantine_package(
    package: quilt3.Package, *, readme: str, workdir: pathlib.Path
) -> CheckedPackage:
    """A copy of ``package`` with ``readme`` as README.md, set to skip any workflow check.

    The quarantine must accept whatever failed elsewhere: quilt3 has no way to skip a registry's
    workflow when it requires one (``workflow=None`` is refused), hence ``checked_workflow``.
    """
    quarantined = CheckedPackage()
    quarantined.checked_workflow = None
    for logical_key, entry in package.walk():
        if logical_key != QUARANTINE_README:
            quarantined.set(logical_key, entry)
    readme_path = workdir / "quarantine-README.md"
    readme_path.write_text(readme, encoding="utf-8")
    quarantined.set(QUARANTINE_README, str(readme_path))
    quarantined.set_meta(package.meta)
    return quarantined


def push_quarantined(
    quarantined: CheckedPackage, *, name: str, quarantine_bucket: str, message: str
) -> quilt3.Package:
    """Push a package made by :func:`quarantine_package`; returns the pushed package.

    Raises :class:`QuarantineError` with the cause. The caller decides beforehand whether the
    quarantine already holds the same revision (quilt3's ``dedupe`` would return the local,
    unhashed package in that case, which has no top hash to report).
    """
    try:
        with quilt_stdout_captured():
            pushed = quarantined.push(
                name,
                registry=f"s3://{quarantine_bucket}",
                message=message,
                force=True,
            )
        pushed.top_hash  # noqa: B018  (read inside the try: any failure is a QuarantineError)
    except Exception as err:  # quilt3 raises a zoo of types; all mean the same here
        raise QuarantineError(
            f"could not push package {name} to quarantine bucket {quarantine_bucket}: {err}"
        ) from err
    return pushed


def push_to_quarantine(
    package: quilt3.Package,
    *,
    name: str,
    quarantine_bucket: str,
    readme: str,
    message: str,
    workdir: pathlib.Path,
) -> str:
    """Push a copy of ``package`` to ``s3://quarantine_bucket`` with ``readme`` as README.md.

    Returns the quarantined revision's top hash; raises :class:`QuarantineError` with the cause.
    """
    quarantined = quarantine_package(package, readme=readme, workdir=workdir)
    pushed = push_quarantined(
        quarantined, name=name, quarantine_bucket=quarantine_bucket, message=message
    )
    return str(pushed.top_hash)
