"""Quarantine: push a package its workflow rejected to a separate bucket, with the error in README.md."""

from __future__ import annotations

import pathlib
from typing import Any

import quilt3

from consumers.errors import QuarantineError

QUARANTINE_README = "README.md"


class UnvalidatedPackage(quilt3.Package):
    """A package pushed with no workflow check at all.

    quilt3 offers no way to skip a registry's workflow when the registry requires one
    (``workflow=None`` is refused by ``is_workflow_required`` and by a registry without a
    config). A quarantine must accept whatever failed elsewhere, so this subclass skips the check.
    """

    def _validate_with_workflow(
        self, *, registry: Any, workflow: Any, name: str, message: Any
    ) -> None:
        self._workflow = None


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
    quarantined = UnvalidatedPackage()
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
