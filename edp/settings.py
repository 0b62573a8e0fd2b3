"""Emitter settings: built once from env vars and CLI flags into a frozen dataclass that validates itself."""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edp.errors import SettingsError

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
        raise invalid(
            "buckets",
            name,
            "an S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens, "
            "starting and ending with a letter or digit",
        )


def _positive_int(name: str, value: object, maximum: int = MAX_WHOLE_NUMBER) -> int:
    """``value`` as a whole number from 1 to ``maximum``; ``name`` is the setting's field."""
    allowed = f"a whole number from 1 to {maximum}"
    if isinstance(value, bool):
        raise invalid(name, value, allowed)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"\+?\d{1,30}", text):
            raise invalid(name, value, allowed)
        number = int(text)
    if not 1 <= number <= maximum:
        raise invalid(name, value, allowed)
    return number


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid(name, value, "true or false")


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: everything else (flags and their help, env parsing, error
    labels, the table in docs/settings.md, the template check) is generated from this."""

    field: str  # the Settings attribute
    name: str  # how errors and docs name it: the stack parameter's name where there is one
    env: str  # the environment variable
    kind: str  # "text", "list" (comma-separated), "int" (whole number) or "bool"
    help: str  # the flag's help, and the docs' description
    default: str  # the default, as the docs say it
    valid: str  # what is allowed, as the docs say it
    flag: str | None = None  # the CLI flag, if any
    metavar: str | None = None
    flag_sets: bool | None = None  # a bool setting's flag takes no value: it sets this one
    repeatable: bool = False  # the flag may be given more than once (its values add up)
    parameter: str | None = None  # the emitter stack's parameter that feeds the env var

    @property
    def dest(self) -> str | None:
        """The flag's attribute on argparse's namespace."""
        return self.flag[2:].replace("-", "_") if self.flag else None

    @property
    def sources(self) -> str:
        """Where a user gives it, e.g. ``--prefix-depth / EDP_BUCKET_PREFIX_DEPTH``."""
        return f"{self.flag} / {self.env}" if self.flag else self.env


_WHOLE = f"whole number from 1 to {MAX_WHOLE_NUMBER}"

# The emitter's settings, in the order --help and docs/settings.md list them.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "buckets",
        "BucketName",
        "EDP_BUCKET_NAME",
        "list",
        "only watch this bucket (repeatable; default: every bucket)",
        "every bucket",
        "S3 bucket names, comma-separated in the env var",
        flag="--bucket",
        metavar="NAME",
        repeatable=True,
        parameter="BucketName",
    ),
    Setting(
        "ignore_patterns",
        "BucketIgnorePrefixes",
        "EDP_BUCKET_IGNORE_PREFIXES",
        "list",
        "comma-separated key patterns to ignore, e.g. 'raw/*,scratch/*' (no wildcard: "
        "a plain prefix)",
        "none",
        "comma-separated globs; no wildcard = plain prefix",
        flag="--ignore",
        metavar="GLOBS",
        parameter="BucketIgnorePrefixes",
    ),
    Setting(
        "prefix_depth",
        "BucketPrefixDepth",
        "EDP_BUCKET_PREFIX_DEPTH",
        "int",
        "directory segments that make the common prefix (default 2)",
        "2",
        _WHOLE,
        flag="--prefix-depth",
        metavar="N",
        parameter="BucketPrefixDepth",
    ),
    Setting(
        "threshold_duration",
        "BucketThresholdDuration",
        "EDP_BUCKET_THRESHOLD_DURATION",
        "int",
        "emit a batch this long after its last event (default 300)",
        "300 s",
        _WHOLE + " (seconds)",
        flag="--threshold-duration",
        metavar="SECONDS",
        parameter="BucketThresholdDuration",
    ),
    Setting(
        "threshold_count",
        "BucketThresholdEventCount",
        "EDP_BUCKET_THRESHOLD_EVENT_COUNT",
        "int",
        "emit a batch once it holds this many new files (default 20)",
        "20",
        _WHOLE,
        flag="--threshold-count",
        metavar="N",
        parameter="BucketThresholdEventCount",
    ),
    Setting(
        "marker_files",
        "MarkerFiles",
        "EDP_MARKER_FILES",
        "list",
        "emit at once when a file with this name arrives, e.g. '_SUCCESS,manifest.json' "
        "(default: off)",
        "off",
        "comma-separated file-name globs",
        flag="--marker-files",
        metavar="GLOBS",
        parameter="MarkerFiles",
    ),
    Setting(
        "max_age",
        "BucketThresholdMaxAge",
        "EDP_BUCKET_THRESHOLD_MAX_AGE",
        "int",
        "emit a batch this long after its first event even if it never goes quiet (default: off)",
        "off",
        _WHOLE + " (seconds)",
        flag="--max-age",
        metavar="SECONDS",
        parameter="BucketThresholdMaxAge",
    ),
    Setting(
        "dedupe_window",
        "DedupeWindow",
        "EDP_DEDUPE_WINDOW",
        "int",
        "recognise duplicate deliveries this long after their batch is emitted (default 86400)",
        "86400 s",
        _WHOLE + " (seconds)",
        flag="--dedupe-window",
        metavar="SECONDS",
        parameter="DedupeWindow",
    ),
    Setting(
        "eventbridge_keys_encoded",
        "EventBridgeKeysEncoded",
        "EDP_EVENTBRIDGE_KEYS_ENCODED",
        "bool",
        "EventBridge input carries raw keys (some emulators); do not URL-decode them",
        "true",
        "true or false; false for emulators that send raw keys",
        flag="--eventbridge-keys-unencoded",
        flag_sets=False,
        parameter="EventBridgeKeysEncoded",
    ),
    Setting(
        "event_ids_reliable",
        "EventIdsReliable",
        "EDP_EVENT_IDS_RELIABLE",
        "bool",
        "the input's sequencers, version ids and event ids do not tell writes apart (some "
        "emulators send the same ones for every write): take no event for a duplicate or stale",
        "true",
        "true or false; false for emulators that repeat one sequencer and id for distinct "
        "writes (no event is then a duplicate or stale)",
        flag="--event-ids-unreliable",
        flag_sets=False,
    ),
    Setting(
        "event_bus",
        "EventBusName",
        "EDP_EVENT_BUS_NAME",
        "text",
        "bus to publish to",
        DEFAULT_EVENT_BUS,
        "a bus name or ARN, 1-256 chars",
        flag="--event-bus",
        metavar="NAME",
        parameter="EventBusName",
    ),
    Setting(
        "sns_topic_arn",
        "SnsTopicArn",
        "EDP_SNS_TOPIC_ARN",
        "text",
        "also publish to this topic",
        "none",
        "an SNS topic ARN (arn:aws:sns:...)",
        flag="--sns-topic-arn",
        metavar="ARN",
    ),
    Setting(
        "rules",
        "RulesFile",
        "EDP_RULES",
        "text",
        "rules per key prefix (YAML or JSON; a path or s3://bucket/key): depth and "
        "thresholds per instrument, see docs/rules.md",
        "none",
        "a YAML/JSON rules file: a path or s3://bucket/key (docs/rules.md)",
        flag="--rules",
        metavar="FILE",
        parameter="RulesFile",
    ),
    Setting(
        "database_url",
        "DatabaseUrl",
        "EDP_DATABASE_URL",
        "text",
        "store URL (default: SQLite in the user's state dir)",
        "a SQLite file in the user's state dir (~/.local/state/edp/edp.sqlite)",
        "sqlite:///path, postgresql://user@host:5432/db, memory://",
        flag="--db",
        metavar="URL",
    ),
    Setting(
        "database_secret_arn",
        "DatabaseSecretArn",
        "EDP_DATABASE_SECRET_ARN",
        "text",
        "Secrets Manager secret holding the database's user name and password (RDS JSON)",
        "none",
        "a Secrets Manager secret ARN whose JSON has username and password",
    ),
)

SETTING: dict[str, Setting] = {s.field: s for s in SETTINGS}

# Every environment variable the emitter reads (the deploy templates are checked against this list).
ENV_VARS: tuple[str, ...] = tuple(s.env for s in SETTINGS)

SETTINGS_HELP = textwrap.fill(
    f"Settings come from flags, else from env vars ({', '.join(ENV_VARS)}), else defaults "
    "(docs/settings.md).",
    width=96,
    break_on_hyphens=False,
)


def invalid(field_name: str, value: object, allowed: str) -> SettingsError:
    """The error for a bad value of a declared setting, naming where the user gives it."""
    setting = SETTING[field_name]
    return SettingsError(setting.name, value, allowed, where=setting.sources)


def _parse(setting: Setting, value: Any) -> Any:
    """A value from the environment (text) or a flag into the field's type."""
    if setting.kind == "list":
        return split_list(value) if isinstance(value, str) else tuple(value)
    if setting.kind == "bool":
        return _bool(setting.field, value)
    return value


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
    # False for emulators whose events carry the same sequencer / id for distinct writes: then no
    # event is taken for a duplicate or stale (AWS's are reliable, so dedupe stays on by default).
    event_ids_reliable: bool = True
    marker_files: tuple[str, ...] = ()
    max_age: int | None = None
    dedupe_window: int = DEFAULT_DEDUPE_WINDOW
    rules: str | None = None  # a rules file: a path or s3://bucket/key (edp.rules_file)

    def __post_init__(self) -> None:
        for bucket in self.buckets:
            _check_bucket(bucket)
        for setting in SETTINGS:
            value = getattr(self, setting.field)
            if setting.kind == "int" and value is not None:
                object.__setattr__(self, setting.field, _positive_int(setting.field, value))
        if not self.event_bus or len(self.event_bus) > 256:
            raise invalid("event_bus", self.event_bus, SETTING["event_bus"].valid)
        if self.sns_topic_arn is not None and not self.sns_topic_arn.startswith("arn:"):
            raise invalid("sns_topic_arn", self.sns_topic_arn, SETTING["sns_topic_arn"].valid)
        # Imported here: edp.store imports edp.core, which imports this module.
        from edp.store.urls import EXPECTED, backend_of, redact_url

        if backend_of(self.database_url) is None:
            raise invalid("database_url", redact_url(self.database_url), EXPECTED)

    @classmethod
    def from_sources(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from env vars, then explicit overrides (CLI flags); ``None`` means unset."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            value = overrides.get(setting.field)
            if value is None:
                value = env.get(setting.env) or None
            if value is not None:
                values[setting.field] = _parse(setting, value)
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise TypeError(f"unknown setting {key!r}")
            if value is not None and key not in values:
                values[key] = value
        return cls(**values)
