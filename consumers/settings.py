"""Settings of a consumer: one frozen, validated dataclass, built once from env vars or arguments."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consumers.errors import SettingsError
from consumers.extras import SUMMARIZE_AUTO, is_s3_uri, split_s3_uri

DEFAULT_MESSAGE = "Created by EDP"
# A string.Template: ${package}, ${source}, ${workflow}, ${function}, ${date} are filled in.
DEFAULT_README = """# ${package}

This Quilt package was made by Event-Driven Packaging (EDP) on ${date}: the Lambda function
`${function}` built it from `${source}` and validated it with the Quilt workflow `${workflow}`.
"""
# Operating-system clutter that instruments and file shares leave behind.
DEFAULT_QUILTIGNORE = """.DS_*
Icon
._*
.TemporaryItems
.Trashes
.VolumeIcon.icns
"""
DEFAULT_GATEWAY_MAX_ATTEMPTS = 5

# How entries get their hashes (see consumers.hashing and docs/hashing.md).
HASHING_S3_CHECKSUMS = "s3-checksums"  # S3's own or server-side computed checksums: no bytes read
HASHING_READ_BYTES = "read-bytes"  # read every byte through the consumer, as bare quilt3 does
HASHING_MODES = (HASHING_S3_CHECKSUMS, HASHING_READ_BYTES)
HASH_SHA256_CHUNKED = "sha2-256-chunked"  # quilt3 >= 6.0 and every Quilt catalog verify it
HASH_CRC64NVME = "CRC64NVME"  # only quilt3 >= 7.2.0 and catalogs with CRC64 support verify it
HASH_TYPES = (HASH_SHA256_CHUNKED, HASH_CRC64NVME)

ENV_WORKFLOW = "WORKFLOW_NAME"
ENV_QUARANTINE_BUCKET = "QUARANTINE_BUCKET_NAME"
ENV_SNS_TOPIC_ARN = "SNS_TOPIC_ARN"
ENV_QUILT_URL = "QUILT_URL"
ENV_REGISTRY = "REGISTRY"
ENV_FILE_SHARE_ARNS = "FILE_SHARE_ARNS"
ENV_PACKAGE_METADATA = "PACKAGE_METADATA"
ENV_PACKAGE_DATE_KEY = "PACKAGE_DATE_KEY"
ENV_PACKAGE_MESSAGE = "PACKAGE_MESSAGE"
ENV_HASHING_MODE = "HASHING_MODE"
ENV_HASH_TYPE = "HASH_TYPE"
ENV_HASH_SCRATCH = "HASH_SCRATCH"
ENV_PACKAGE_README = "PACKAGE_README"
ENV_PACKAGE_QUILTIGNORE = "PACKAGE_QUILTIGNORE"
ENV_PACKAGE_SUMMARIZE = "PACKAGE_SUMMARIZE"
ENV_PACKAGE_SUMMARIZE_CHART = "PACKAGE_SUMMARIZE_CHART"
# Set by Lambda itself, not by the stack: named in the default README.
ENV_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
SUMMARIZE_OFF = "none"

ENV_VARS: tuple[str, ...] = (
    ENV_WORKFLOW,
    ENV_QUARANTINE_BUCKET,
    ENV_SNS_TOPIC_ARN,
    ENV_QUILT_URL,
    ENV_REGISTRY,
    ENV_FILE_SHARE_ARNS,
    ENV_PACKAGE_METADATA,
    ENV_PACKAGE_DATE_KEY,
    ENV_PACKAGE_MESSAGE,
    ENV_HASHING_MODE,
    ENV_HASH_TYPE,
    ENV_HASH_SCRATCH,
    ENV_PACKAGE_README,
    ENV_PACKAGE_QUILTIGNORE,
    ENV_PACKAGE_SUMMARIZE,
    ENV_PACKAGE_SUMMARIZE_CHART,
)
# Everything from_env reads: the stack's variables and the one Lambda sets itself.
SETTINGS_INPUTS: tuple[str, ...] = (*ENV_VARS, ENV_LAMBDA_FUNCTION_NAME)
REQUIRED_ENV_VARS: tuple[str, ...] = (ENV_QUARANTINE_BUCKET, ENV_SNS_TOPIC_ARN, ENV_QUILT_URL)

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
_FILE_SHARE_ARN = re.compile(r"^arn:aws[a-z-]*:storagegateway:[a-z0-9-]+:\d{12}:share/share-\w+$")


@dataclass(frozen=True)
class ConsumerSettings:
    """Everything a consumer needs to know; validated at construction.

    ``workflow`` ``None`` means the registry's default workflow (quilt3's ``...``);
    ``registry`` ``None`` means the bucket of each event; ``date_key`` names a metadata key set
    to today's date (off by default: a date in the metadata changes the top hash every day).
    ``hashing_mode``, ``hash_type`` and ``hash_scratch`` say how new objects are hashed
    (``hash_scratch`` ``None``: ``<watched bucket>/.quilt/edp/scratch/``); see docs/hashing.md.
    """

    quarantine_bucket: str
    sns_topic_arn: str
    quilt_url: str
    workflow: str | None = None
    registry: str | None = None
    file_share_arns: tuple[str, ...] = ()
    default_metadata: dict[str, Any] = field(default_factory=dict)
    message: str = DEFAULT_MESSAGE
    readme_text: str = DEFAULT_README
    quiltignore_text: str = DEFAULT_QUILTIGNORE
    summarize: list[Any] | str | None = SUMMARIZE_AUTO
    summarize_chart: str | None = None
    function_name: str | None = None
    date_key: str | None = None
    gateway_max_attempts: int = DEFAULT_GATEWAY_MAX_ATTEMPTS
    hashing_mode: str = HASHING_S3_CHECKSUMS
    hash_type: str = HASH_SHA256_CHUNKED
    hash_scratch: str | None = None

    def __post_init__(self) -> None:
        _check_bucket(self.quarantine_bucket, "quarantine_bucket")
        if self.registry is not None:
            registry = self.registry.removeprefix("s3://").rstrip("/")
            _check_bucket(registry, "registry")
            object.__setattr__(self, "registry", registry)
            if registry == self.quarantine_bucket:
                raise SettingsError(
                    f"registry and quarantine_bucket are both {registry!r}: "
                    "use a separate bucket for quarantined packages"
                )
        if not _SNS_TOPIC_ARN.match(self.sns_topic_arn):
            raise SettingsError(
                f"sns_topic_arn: {self.sns_topic_arn!r} is not an SNS topic ARN "
                "(arn:aws:sns:<region>:<account>:<topic>)"
            )
        if not self.quilt_url.startswith(("https://", "http://")):
            raise SettingsError(f"quilt_url: {self.quilt_url!r} must start with https://")
        object.__setattr__(self, "quilt_url", self.quilt_url.rstrip("/"))
        if self.workflow is not None and not self.workflow.strip():
            object.__setattr__(self, "workflow", None)
        object.__setattr__(self, "file_share_arns", tuple(self.file_share_arns))
        for arn in self.file_share_arns:
            if not _FILE_SHARE_ARN.match(arn):
                raise SettingsError(
                    f"file_share_arns: {arn!r} is not a file share ARN "
                    "(arn:aws:storagegateway:<region>:<account>:share/share-XXXXXXXX)"
                )
        if not isinstance(self.default_metadata, dict):
            raise SettingsError("default_metadata must be a JSON object (a dict)")
        try:
            json.dumps(self.default_metadata)
        except (TypeError, ValueError) as err:
            raise SettingsError(f"default_metadata is not JSON-serialisable: {err}") from err
        if isinstance(self.summarize, str) and self.summarize != SUMMARIZE_AUTO:
            _check_s3_uri(self.summarize, "summarize")
        elif self.summarize is not None and not isinstance(self.summarize, list | str):
            raise SettingsError(
                "summarize must be a list (the content of quilt_summarize.json), "
                f"{SUMMARIZE_AUTO!r}, an s3:// URI or None"
            )
        for name in ("readme_text", "quiltignore_text"):
            value = getattr(self, name)
            if is_s3_uri(value):
                _check_s3_uri(value, name)
        if self.date_key is not None and not self.date_key.strip():
            object.__setattr__(self, "date_key", None)
        if self.gateway_max_attempts < 1:
            raise SettingsError(
                f"gateway_max_attempts must be >= 1, got {self.gateway_max_attempts}"
            )
        self._check_hashing()

    def _check_hashing(self) -> None:
        if self.hashing_mode not in HASHING_MODES:
            raise SettingsError(
                f"hashing_mode: {self.hashing_mode!r} is not one of {', '.join(HASHING_MODES)}"
            )
        if self.hash_type not in HASH_TYPES:
            raise SettingsError(
                f"hash_type: {self.hash_type!r} is not one of {', '.join(HASH_TYPES)}"
            )
        scratch = (self.hash_scratch or "").strip().removeprefix("s3://").strip("/")
        if not scratch:
            object.__setattr__(self, "hash_scratch", None)
            return
        bucket, _, prefix = scratch.partition("/")
        _check_bucket(bucket, "hash_scratch")
        object.__setattr__(self, "hash_scratch", f"{bucket}/{prefix}/" if prefix else bucket)

    @property
    def workflow_argument(self) -> Any:
        """The ``workflow=`` argument for quilt3: the name, or ``...`` for the registry default."""
        return self.workflow if self.workflow is not None else ...

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsumerSettings:
        """Build settings from the reference Lambda's environment variables (see ``ENV_VARS``)."""
        env = os.environ if env is None else env
        missing = [name for name in REQUIRED_ENV_VARS if not env.get(name, "").strip()]
        if missing:
            raise SettingsError(f"missing required environment variable(s): {', '.join(missing)}")
        metadata_text = env.get(ENV_PACKAGE_METADATA, "").strip()
        metadata: Any = {}
        if metadata_text:
            try:
                metadata = json.loads(metadata_text)
            except json.JSONDecodeError as err:
                raise SettingsError(
                    f"{ENV_PACKAGE_METADATA} is not valid JSON ({err.msg}); "
                    'expected an object such as {"Author": "EDP"}'
                ) from err
            if not isinstance(metadata, dict):
                raise SettingsError(
                    f"{ENV_PACKAGE_METADATA} must be a JSON object, got {metadata_text!r}"
                )
        summarize: list[Any] | str | None = _summarize_from_env(
            env.get(ENV_PACKAGE_SUMMARIZE, "").strip()
        )
        arns = tuple(
            arn.strip() for arn in env.get(ENV_FILE_SHARE_ARNS, "").split(",") if arn.strip()
        )
        try:
            return cls(
                quarantine_bucket=env[ENV_QUARANTINE_BUCKET].strip(),
                sns_topic_arn=env[ENV_SNS_TOPIC_ARN].strip(),
                quilt_url=env[ENV_QUILT_URL].strip(),
                workflow=env.get(ENV_WORKFLOW, "").strip() or None,
                registry=env.get(ENV_REGISTRY, "").strip() or None,
                file_share_arns=arns,
                default_metadata=metadata,
                message=env.get(ENV_PACKAGE_MESSAGE, "").strip() or DEFAULT_MESSAGE,
                date_key=env.get(ENV_PACKAGE_DATE_KEY, "").strip() or None,
                hashing_mode=env.get(ENV_HASHING_MODE, "").strip() or HASHING_S3_CHECKSUMS,
                hash_type=env.get(ENV_HASH_TYPE, "").strip() or HASH_SHA256_CHUNKED,
                hash_scratch=env.get(ENV_HASH_SCRATCH, "").strip() or None,
                readme_text=env.get(ENV_PACKAGE_README, "").strip() or DEFAULT_README,
                quiltignore_text=env.get(ENV_PACKAGE_QUILTIGNORE, "").strip()
                or DEFAULT_QUILTIGNORE,
                summarize=summarize,
                summarize_chart=env.get(ENV_PACKAGE_SUMMARIZE_CHART, "").strip() or None,
                function_name=env.get(ENV_LAMBDA_FUNCTION_NAME, "").strip() or None,
            )
        except SettingsError as err:
            raise SettingsError(f"invalid environment: {err}") from err


def _check_bucket(name: str, setting: str) -> None:
    if not _BUCKET_NAME.match(name) or ".." in name:
        raise SettingsError(f"{setting}: {name!r} is not a valid S3 bucket name")


def _check_s3_uri(value: str, setting: str) -> None:
    try:
        split_s3_uri(value)
    except ValueError as err:
        raise SettingsError(f"{setting}: {err}") from err


def _summarize_from_env(text: str) -> list[Any] | str | None:
    """``PACKAGE_SUMMARIZE``: empty or ``auto``, ``none``, a JSON list, or an ``s3://`` URI."""
    if text in ("", SUMMARIZE_AUTO):
        return SUMMARIZE_AUTO
    if text.lower() == SUMMARIZE_OFF:
        return None
    if is_s3_uri(text):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SettingsError(
            f"{ENV_PACKAGE_SUMMARIZE} is not valid JSON ({err.msg}); expected "
            f"{SUMMARIZE_AUTO!r}, {SUMMARIZE_OFF!r}, a JSON list or an s3:// URI"
        ) from err
    if not isinstance(value, list):
        raise SettingsError(f"{ENV_PACKAGE_SUMMARIZE} must be a JSON list, got {text!r}")
    return value
