"""Error family of the consumers library: every failure a consumer can raise, each keeping its cause."""

from __future__ import annotations


class ConsumerError(Exception):
    """Base class of every error raised by the consumers library."""


class BadEventError(ConsumerError):
    """The payload is not a usable ``package-objects-ready`` event (the message says what is wrong)."""


class SettingsError(ConsumerError):
    """A setting (usually an environment variable) is missing or invalid."""


class PackagingError(ConsumerError):
    """Building or pushing the package failed for a reason other than workflow validation."""


class QuarantineError(ConsumerError):
    """Pushing a rejected package to the quarantine bucket failed."""


class AlertError(ConsumerError):
    """Publishing an alert to the SNS topic failed."""


class GatewayRefreshError(ConsumerError):
    """Storage Gateway ``RefreshCache`` kept failing after the retries."""


class WorkflowInstallError(ConsumerError):
    """The workflow files are invalid or could not be uploaded."""


class CopyRefused(ConsumerError):
    """Internal: S3 would not compute the checksum (denied, unsupported, no checksum returned)."""


class WorkflowRejection(ConsumerError):
    """Internal: the workflow (or the prefix's content) rejected the package; carries quilt3's error."""
