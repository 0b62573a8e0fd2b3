"""Emitter settings: built once from env vars and CLI flags into a frozen dataclass that validates itself."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edp.errors import SettingsError

# Every environment variable the emitter reads (the deploy templates are checked against this list).
ENV_VARS: tuple[str, ...] = (
    "EDP_BUCKET_NAME",
    "EDP_BUCKET_IGNORE_PREFIXES",
    "EDP_BUCKET_PREFIX_DEPTH",
    "EDP_BUCKET_THRESHOLD_DURATION",
    "EDP_BUCKET_THRESHOLD_EVENT_COUNT",
    "EDP_EVENT_BUS_NAME",
    "EDP_SNS_TOPIC_ARN",
    "EDP_DATABASE_URL",
    "EDP_DATABASE_SECRET_ARN",
    "EDP_EVENTBRIDGE_KEYS_ENCODED",
    "EDP_MARKER_FILES",
    "EDP_BUCKET_THRESHOLD_MAX_AGE",
    "EDP_DEDUPE_WINDOW",
)

DEFAULT_PREFIX_DEPTH = 2
DEFAULT_THRESHOLD_DURATION = 300  # seconds, Quilt EDP's BucketThresholdDuration default
DEFAULT_THRESHOLD_COUNT = 20  # Quilt EDP's BucketThresholdEventCount default
DEFAULT_DEDUPE_WINDOW = (
    24 * 3600
)  # duplicates are recognised for a day after their batch is emitted
DEFAULT_EVENT_BUS = "default"
# Largest whole-number setting (8 digits; as seconds, about 3 years). Durations are bounded so
# that no due time or dedupe expiry computed from an accepted event time (edp.events) can
# overflow; the template's parameters allow exactly 1 to this (tests/deploy checks they agree).
MAX_WHOLE_NUMBER = 99_999_999

# S3 bucket naming rules (general purpose buckets): 3-63 chars, lowercase, digits, dots, hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def default_database_url() -> str:
    """A SQLite file in the user's state directory (embedded mode: no server needed)."""
    import platformdirs

    state = Path(platformdirs.user_state_dir("edp", appauthor=False))
    return f"sqlite:///{state / 'edp.sqlite'}"


def split_list(text: str | None) -> tuple[str, ...]:
    """Comma-separated entries, trimmed, empty ones dropped."""
    if not text:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_bucket(name: str) -> None:
    if not _BUCKET_RE.match(name) or ".." in name or _IP_RE.match(name):
        raise SettingsError(
            "BucketName",
            name,
            "an S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens, "
            "starting and ending with a letter or digit",
        )


def _positive_int(name: str, value: object, maximum: int = MAX_WHOLE_NUMBER) -> int:
    allowed = f"a whole number from 1 to {maximum}"
    if isinstance(value, bool):
        raise SettingsError(name, value, allowed)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"\+?\d{1,30}", text):
            raise SettingsError(name, value, allowed)
        number = int(text)
    if not 1 <= number <= maximum:
        raise SettingsError(name, value, allowed)
    return number


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(name, value, "true or false")


@dataclass(frozen=True)
class Settings:
    """Everything the emitter needs to know; validated when constructed."""

    buckets: tuple[str, ...] = ()
    ignore_patterns: tuple[str, ...] = ()
    prefix_depth: int = DEFAULT_PREFIX_DEPTH
    threshold_duration: int = DEFAULT_THRESHOLD_DURATION
    threshold_count: int = DEFAULT_THRESHOLD_COUNT
    event_bus: str = DEFAULT_EVENT_BUS
    sns_topic_arn: str | None = None
    database_url: str = field(default_factory=default_database_url)
    database_secret_arn: str | None = None
    eventbridge_keys_encoded: bool = True
    marker_files: tuple[str, ...] = ()
    max_age: int | None = None
    dedupe_window: int = DEFAULT_DEDUPE_WINDOW

    def __post_init__(self) -> None:
        for bucket in self.buckets:
            _check_bucket(bucket)
        object.__setattr__(
            self, "prefix_depth", _positive_int("BucketPrefixDepth", self.prefix_depth)
        )
        object.__setattr__(
            self,
            "threshold_duration",
            _positive_int("BucketThresholdDuration", self.threshold_duration),
        )
        object.__setattr__(
            self,
            "threshold_count",
            _positive_int("BucketThresholdEventCount", self.threshold_count),
        )
        if self.max_age is not None:
            object.__setattr__(
                self, "max_age", _positive_int("BucketThresholdMaxAge", self.max_age)
            )
        object.__setattr__(
            self,
            "dedupe_window",
            _positive_int("DedupeWindow", self.dedupe_window),
        )
        if not self.event_bus or len(self.event_bus) > 256:
            raise SettingsError("EventBusName", self.event_bus, "a bus name or ARN, 1-256 chars")
        if self.sns_topic_arn is not None and not self.sns_topic_arn.startswith("arn:"):
            raise SettingsError(
                "SnsTopicArn", self.sns_topic_arn, "an SNS topic ARN (arn:aws:sns:...)"
            )
        scheme = self.database_url.split(":", 1)[0].lower()
        if scheme not in ("sqlite", "postgresql", "postgres", "memory"):
            raise SettingsError(
                "DatabaseUrl",
                redact_url(self.database_url),
                "sqlite:///path/to/file.sqlite or postgresql://user@host:5432/db",
            )

    @classmethod
    def from_sources(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from env vars, then explicit overrides (CLI flags); ``None`` means unset."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}

        def pick(key: str, var: str) -> Any:
            if overrides.get(key) is not None:
                return overrides[key]
            raw = env.get(var)
            return raw if raw not in (None, "") else None

        buckets = pick("buckets", "EDP_BUCKET_NAME")
        if buckets is not None:
            values["buckets"] = split_list(buckets) if isinstance(buckets, str) else tuple(buckets)
        ignore = pick("ignore_patterns", "EDP_BUCKET_IGNORE_PREFIXES")
        if ignore is not None:
            values["ignore_patterns"] = (
                split_list(ignore) if isinstance(ignore, str) else tuple(ignore)
            )
        markers = pick("marker_files", "EDP_MARKER_FILES")
        if markers is not None:
            values["marker_files"] = (
                split_list(markers) if isinstance(markers, str) else tuple(markers)
            )
        for key, var in (
            ("prefix_depth", "EDP_BUCKET_PREFIX_DEPTH"),
            ("threshold_duration", "EDP_BUCKET_THRESHOLD_DURATION"),
            ("threshold_count", "EDP_BUCKET_THRESHOLD_EVENT_COUNT"),
            ("max_age", "EDP_BUCKET_THRESHOLD_MAX_AGE"),
            ("dedupe_window", "EDP_DEDUPE_WINDOW"),
            ("event_bus", "EDP_EVENT_BUS_NAME"),
            ("sns_topic_arn", "EDP_SNS_TOPIC_ARN"),
            ("database_url", "EDP_DATABASE_URL"),
            ("database_secret_arn", "EDP_DATABASE_SECRET_ARN"),
        ):
            value = pick(key, var)
            if value is not None:
                values[key] = value
        encoded = pick("eventbridge_keys_encoded", "EDP_EVENTBRIDGE_KEYS_ENCODED")
        if encoded is not None:
            values["eventbridge_keys_encoded"] = _bool("EventBridgeKeysEncoded", encoded)
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise TypeError(f"unknown setting {key!r}")
            if value is not None and key not in values:
                values[key] = value
        return cls(**values)


# A password given as a parameter: ``password=`` (or ``sslpassword=``) in a URL's query or in a
# libpq key=value string (``host=db password=secret``, values possibly quoted: ``password='a b'``).
_PASSWORD_PARAM = re.compile(
    r"((?:^|[\s?&])(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """The URL or libpq connection string with every password replaced by ``***`` (safe to log
    or print): in a URL's user part, and in any ``password=`` parameter, quoted or not."""
    masked = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return _PASSWORD_PARAM.sub(r"\1***", masked)
