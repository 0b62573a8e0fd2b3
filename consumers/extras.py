"""The files a consumer adds to a package: README.md, .quiltignore and quilt_summarize.json.

Their texts are settings (inline, or an ``s3://`` URI read at packaging time). The README is a
template: ``${date}``, ``${function}``, ``${workflow}``, ``${source}`` and ``${package}`` are
filled in (``string.Template``, so Markdown braces are safe; ``$$`` is a literal ``$``). The
default ``quilt_summarize.json`` lists the package's previewable files, so the catalog shows them
on the package page at once.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from consumers.errors import PackagingError

README = "README.md"
SUMMARIZE_FILE = "quilt_summarize.json"
SUMMARIZE_AUTO = "auto"
# File types the Quilt catalog previews. Vega-Lite specs are JSON, so they are included too.
PREVIEWABLE_SUFFIXES = frozenset(
    {
        ".csv",
        ".tsv",
        ".parquet",
        ".json",
        ".md",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".svg",
        ".webp",
        ".bmp",
        ".tif",
        ".tiff",
    }
)
# The catalog renders every listed file on the package page: a page, not the whole prefix.
SUMMARIZE_MAX_FILES = 20
# Never listed: shown by the catalog anyway (README) or not data (the consumer's own files).
NOT_SUMMARIZED = frozenset({README, SUMMARIZE_FILE, "metadata.json"})


@dataclass(frozen=True)
class ReadmeFacts:
    """What the README template can say about a package."""

    package: str
    source: str
    workflow: str
    function: str
    date: str

    def fill(self, template: str) -> str:
        return string.Template(template).safe_substitute(
            package=self.package,
            source=self.source,
            workflow=self.workflow,
            function=self.function,
            date=self.date,
        )


def is_s3_uri(value: str) -> bool:
    return value.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; raises ``ValueError`` when either is missing."""
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not key or key.endswith("/"):
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI of one object")
    return parsed.netloc, key


def resolve_text(value: str, s3: Any, what: str) -> str:
    """``value`` itself, or the UTF-8 text of the object it names when it is an ``s3://`` URI."""
    if not is_s3_uri(value):
        return value
    bucket, key = split_s3_uri(value)
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body.decode("utf-8")
    except (ClientError, BotoCoreError, UnicodeDecodeError) as err:
        raise PackagingError(f"could not read the {what} text from {value}: {err}") from err


def resolve_summarize(value: list[Any] | str, s3: Any) -> list[Any] | str:
    """A fixed ``quilt_summarize.json`` list, or :data:`SUMMARIZE_AUTO`, reading an ``s3://`` one."""
    if not isinstance(value, str) or value == SUMMARIZE_AUTO:
        return value
    text = resolve_text(value, s3, SUMMARIZE_FILE)
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        raise PackagingError(f"{SUMMARIZE_FILE} at {value} is not JSON: {err}") from err
    if not isinstance(content, list):
        raise PackagingError(f"{SUMMARIZE_FILE} at {value} must be a JSON list")
    return content


def previewable(logical_keys: Iterable[str]) -> list[str]:
    """The keys the catalog can preview, top-level files first, at most ``SUMMARIZE_MAX_FILES``."""
    found = [
        key
        for key in logical_keys
        if PurePosixPath(key).suffix.lower() in PREVIEWABLE_SUFFIXES
        and key not in NOT_SUMMARIZED
        and not PurePosixPath(key).name.startswith(".")
    ]
    found.sort(key=lambda key: (key.count("/"), key))
    return found[:SUMMARIZE_MAX_FILES]


def auto_summarize(logical_keys: Iterable[str], chart: str | None = None) -> list[Any]:
    """Default ``quilt_summarize.json``: the chart spec first (when given and present), then the
    previewable files."""
    keys = list(logical_keys)
    files = previewable(key for key in keys if key != chart)
    if chart is not None and chart in keys:
        return [{"path": chart, "title": PurePosixPath(chart).stem}, *files]
    return list(files)


def summarize_text(content: list[Any]) -> str:
    return json.dumps(content, indent=2, sort_keys=True) + "\n"
