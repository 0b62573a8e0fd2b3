"""Quarantine: push a package its workflow rejected to a separate bucket, with the error in README.md."""

from __future__ import annotations

import pathlib

import quilt3

from consumers.building import CheckedPackage
from consumers.errors import QuarantineError

QUARANTINE_README = "README.md"


def quarantine_readme(*, package_name: str, source: str, workflow: str | None, error: str) -> str:
    """README.md of a quarantined package: what was rejected, by which workflow, and why."""
    return (
        f"# Quarantined: {package_name}\n\n"
        f"Event-Driven Packaging built this package from `{source}`, but the workflow "
        f"`{workflow or '(registry default)'}` rejected it, so it was pushed here instead.\n\n"
        f"## Error\n\n```\n{error}\n```\n"
    )


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
    # The quarantine must accept whatever failed elsewhere: no workflow check at all. quilt3 has
    # no way to skip a registry's workflow when it requires one (``workflow=None`` is refused).
    quarantined = CheckedPackage()
    quarantined.checked_workflow = None
    for logical_key, entry in package.walk():
        if logical_key != QUARANTINE_README:
            quarantined.set(logical_key, entry)
    readme_path = workdir / "quarantine-README.md"
    readme_path.write_text(readme, encoding="utf-8")
    quarantined.set(QUARANTINE_README, str(readme_path))
    quarantined.set_meta(package.meta)
    try:
        pushed = quarantined.push(
            name,
            registry=f"s3://{quarantine_bucket}",
            message=message,
            force=True,
            dedupe=True,
        )
    except Exception as err:  # quilt3 raises a zoo of types; all mean the same here
        raise QuarantineError(
            f"could not push package {name} to quarantine bucket {quarantine_bucket}: {err}"
        ) from err
    top_hash: str = pushed.top_hash
    return top_hash
