"""The emitter's error family: each error says what was wrong and what to do."""

from __future__ import annotations


class EdpError(Exception):
    """Base class of every error the emitter raises on purpose."""


class SettingsError(EdpError):
    """A setting has a value that is not allowed; raised at start-up, before any work."""

    def __init__(self, name: str, value: object, allowed: str, *, where: str | None = None) -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        # Where the user gives it (edp.settings.SETTINGS declares that for every setting).
        label = f"{name} ({where})" if where else name
        super().__init__(f"invalid setting {label}: {value!r} is not allowed; expected {allowed}")


class BadEventError(EdpError):
    """An input message is not an event we understand (bad JSON, unknown shape, missing fields)."""


class StoreError(EdpError):
    """The batch store cannot be opened or used."""


class PublishError(EdpError):
    """Publishing package-objects-ready events failed after every retry."""


class ServiceError(EdpError):
    """`edp run` cannot start or keep running (queue missing, no permission, store unusable)."""


class RedriveError(EdpError):
    """The queues cannot be found or used."""


class RulesError(SettingsError):
    """The rules file cannot be read, or one of its rules has a field that is not allowed."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.name = "EDP_RULES"
        self.value = source
        self.allowed = problem
        Exception.__init__(self, f"rules file {source}: {problem}")


class BackfillError(EdpError):
    """The backfill cannot start or finish (bad URI, unwatched bucket, publish failures)."""
