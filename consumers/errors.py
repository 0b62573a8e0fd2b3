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


class MetadataFileError(PackagingError):
    """The prefix's ``metadata.json`` is not a JSON object: the package is quarantined, not retried."""


class QuarantineError(ConsumerError):
    """Pushing a rejected package to the quarantine bucket failed."""


class AlertError(ConsumerError):
    """Publishing an alert to the SNS topic failed."""


class GatewayRefreshError(ConsumerError):
    """Storage Gateway ``RefreshCache`` kept failing after the retries."""
