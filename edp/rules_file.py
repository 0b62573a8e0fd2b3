"""Batching rules per instrument: a YAML or JSON file giving key prefixes their own depth and thresholds.

A rule matches a key by its leading directory segments (``sequencer-*/`` matches every key under a
top-level folder whose name starts with ``sequencer-``); the first matching rule wins and keys that
no rule matches use the global settings. Because a rule's prefix depth is never shorter than its
match, the prefix of a batch matches the same rule as every key in it: the thresholds of an open
batch are found from its prefix alone, so nothing about rules is stored with a batch.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from edp.core import Rules
from edp.errors import RulesError
from edp.settings import Settings

DEFAULT_RULE = "default"  # detail.rule of a batch whose prefix no rule matches
RULE_FIELDS = (
    "name",
    "match",
    "depth",
    "threshold_count",
    "threshold_duration",
    "max_age",
    "marker_files",
    "ignore",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DURATION_RE = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_WILDCARD = re.compile(r"[*?\[]")
_CACHE_LIMIT = 100_000  # prefixes remembered per rule set; cleared when full


@dataclass(frozen=True)
class Rule:
    """One rule: which keys it matches and the settings it overrides (None: the global one)."""

    name: str
    match: tuple[str, ...]  # one glob per leading directory segment
    depth: int | None = None
    threshold_count: int | None = None
    threshold_duration: int | None = None
    max_age: int | None = None
    max_age_off: bool = False  # `max_age: null`: this rule has no max age even if the global does
    marker_files: tuple[str, ...] | None = None
    ignore: bool = False
    _segments: tuple[re.Pattern[str] | str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        compiled = tuple(
            re.compile(fnmatch.translate(s)) if _WILDCARD.search(s) else s for s in self.match
        )
        object.__setattr__(self, "_segments", compiled)

    def matches(self, segments: Sequence[str]) -> bool:
        """Whether directory ``segments`` (of a key, or of a prefix) start with this rule's match."""
        if len(segments) < len(self._segments):
            return False
        for pattern, segment in zip(self._segments, segments, strict=False):
            if isinstance(pattern, str):
                if pattern != segment:
                    return False
            elif not pattern.match(segment):
                return False
        return True


@dataclass(frozen=True)
class RuleSet:
    """The rules of one file, in order; validated against the global settings when loaded."""

    rules: tuple[Rule, ...]
    source: str = "<rules>"
    # The longest match: only that many leading folders can decide the rule (cached by them).
    _reach: int = field(default=0, compare=False, repr=False)
    _cache: dict[tuple[str, ...], Rule | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_reach", max((len(r.match) for r in self.rules), default=0))

    def rule_for(self, path: str) -> Rule | None:
        """The first rule matching a key or a prefix (both: the segments before the last ``/``)."""
        if not self.rules:
            return None
        leading = tuple(path.split("/", self._reach)[:-1])
        try:
            return self._cache[leading]
        except KeyError:
            pass
        found = None
        for rule in self.rules:
            if rule.matches(leading):
                found = rule
                break
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[leading] = found
        return found

    def name_for(self, prefix: str) -> str:
        """What ``detail.rule`` says for a batch of this prefix."""
        rule = self.rule_for(prefix)
        return rule.name if rule is not None else DEFAULT_RULE

    def apply_to(self, base: Rules) -> Rules:
        """``base`` (the global thresholds) with each prefix's thresholds taken from its rule."""
        return replace(base, overrides=_PrefixThresholds(self, base))


class _PrefixThresholds:
    """Thresholds per prefix for the core (:meth:`edp.core.Rules.at`), remembered per prefix."""

    def __init__(self, ruleset: RuleSet, base: Rules) -> None:
        self.ruleset = ruleset
        self.base = base
        self.by_rule = {rule.name: _thresholds(rule, base) for rule in ruleset.rules}
        self.cache: dict[str, Rules] = {}

    def rules_at(self, prefix: str) -> Rules:
        found = self.cache.get(prefix)
        if found is None:
            rule = self.ruleset.rule_for(prefix)
            found = self.base if rule is None else self.by_rule[rule.name]
            if len(self.cache) >= _CACHE_LIMIT:
                self.cache.clear()
            self.cache[prefix] = found
        return found


def _thresholds(rule: Rule, base: Rules) -> Rules:
    max_age = base.max_age
    if rule.max_age_off:
        max_age = None
    elif rule.max_age is not None:
        max_age = timedelta(seconds=rule.max_age)
    markers = base.marker_patterns
    if rule.marker_files is not None:
        markers = tuple(re.compile(fnmatch.translate(p)) for p in rule.marker_files)
    return replace(
        base,
        threshold_count=rule.threshold_count or base.threshold_count,
        threshold_duration=(
            timedelta(seconds=rule.threshold_duration)
            if rule.threshold_duration
            else base.threshold_duration
        ),
        max_age=max_age,
        marker_patterns=markers,
        overrides=None,
    )


# --- reading and validating --------------------------------------------------------------------
def load_rules(
    source: str, settings: Settings, s3_client: Callable[[], Any] | None = None
) -> RuleSet:
    """Read and validate a rules file (a path or ``s3://bucket/key``); one clear error if bad."""
    text = read_source(source, s3_client)
    document = parse_text(source, text)
    return parse_rules(document, settings, source)


def read_source(source: str, s3_client: Callable[[], Any] | None = None) -> str:
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://") :].partition("/")
        if not bucket or not key:
            raise RulesError(
                source, "an S3 URI must name a bucket and a key: s3://bucket/rules.yaml"
            )
        try:
            client = s3_client() if s3_client else _default_s3()
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as err:
            raise RulesError(source, f"cannot read it from S3: {err}") from err
        try:
            return str(body.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise RulesError(source, "not UTF-8 text") from err
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise RulesError(source, f"cannot read it: {reason}") from err


def _default_s3() -> Any:
    from edp_common.clients import make_client

    return make_client("s3")


def parse_text(source: str, text: str) -> Any:
    """JSON for a ``.json`` file; otherwise YAML (which reads JSON too)."""
    try:
        import yaml
    except ImportError:  # a bundle without PyYAML still reads JSON
        yaml = None  # type: ignore[assignment]
    if source.lower().endswith(".json") or yaml is None:
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            hint = "" if yaml is not None else " (YAML needs PyYAML: pip install pyyaml)"
            raise RulesError(source, f"not valid JSON: {err}{hint}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RulesError(source, "not valid YAML: " + " ".join(str(err).split())) from err


def parse_rules(document: Any, settings: Settings, source: str = "<rules>") -> RuleSet:
    """Validate a parsed document: a list of rules, or ``{"rules": [...]}``."""
    if isinstance(document, Mapping):
        extra = sorted(set(document) - {"rules"})
        if extra:
            raise RulesError(source, f"unknown top-level field {extra[0]!r}; expected 'rules'")
        document = document.get("rules")
    if not isinstance(document, list):
        raise RulesError(source, "expected a list of rules (or a mapping with a 'rules' list)")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, item in enumerate(document, start=1):
        rule = _parse_rule(item, index, settings, source)
        if rule.name in names:
            raise RulesError(source, f"rule {rule.name!r} (#{index}): field 'name': used twice")
        names.add(rule.name)
        rules.append(rule)
    return RuleSet(tuple(rules), source)


def _parse_rule(item: Any, index: int, settings: Settings, source: str) -> Rule:
    label = f"rule #{index}"
    if not isinstance(item, Mapping):
        raise RulesError(source, f"{label}: expected a mapping of fields, got {item!r}")
    name = item.get("name")
    if isinstance(name, str) and name:
        label = f"rule {name!r} (#{index})"

    def bad(field_name: str, problem: str) -> RulesError:
        return RulesError(source, f"{label}: field {field_name!r}: {problem}")

    for key in item:
        if key not in RULE_FIELDS:
            raise bad(str(key), f"unknown field; allowed: {', '.join(RULE_FIELDS)}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise bad("name", "a name of 1-64 letters, digits, '.', '_' or '-' is required")
    if name == DEFAULT_RULE:
        raise bad("name", f"{DEFAULT_RULE!r} is reserved for keys that no rule matches")
    match = item.get("match")
    if not isinstance(match, str) or not match.strip("/"):
        raise bad("match", "a key prefix pattern such as 'sequencer-*/' or 'imaging/' is required")
    segments = tuple(match[:-1].split("/") if match.endswith("/") else match.split("/"))
    if any("**" in s for s in segments):
        raise bad("match", "'**' is not supported; '*' matches within one folder name")
    depth = _opt_int(item, "depth", bad)
    threshold_count = _opt_int(item, "threshold_count", bad)
    threshold_duration = _opt_duration(item, "threshold_duration", bad)
    max_age_off = "max_age" in item and item["max_age"] is None
    max_age = None if max_age_off else _opt_duration(item, "max_age", bad)
    markers = item.get("marker_files")
    marker_files: tuple[str, ...] | None = None
    if markers is not None:
        if isinstance(markers, str):
            markers = [m.strip() for m in markers.split(",") if m.strip()]
        if not isinstance(markers, list) or not all(isinstance(m, str) and m for m in markers):
            raise bad("marker_files", "a list of file name globs, e.g. ['_SUCCESS']")
        marker_files = tuple(markers)
    ignore = item.get("ignore", False)
    if not isinstance(ignore, bool):
        raise bad("ignore", "true or false")
    effective_depth = depth or settings.prefix_depth
    if not ignore and effective_depth < len(segments):
        field_name = "depth" if depth else "match"
        raise bad(
            field_name,
            f"the prefix depth ({effective_depth}) is shorter than the match {match!r} "
            f"({len(segments)} folders): a batch's prefix must contain the whole match",
        )
    return Rule(
        name=name,
        match=segments,
        depth=depth,
        threshold_count=threshold_count,
        threshold_duration=threshold_duration,
        max_age=max_age,
        max_age_off=max_age_off,
        marker_files=marker_files,
        ignore=ignore,
    )


def _opt_int(
    item: Mapping[str, Any], name: str, bad: Callable[[str, str], RulesError]
) -> int | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad(name, f"{value!r} is not a whole number >= 1")
    return value


def _opt_duration(
    item: Mapping[str, Any], name: str, bad: Callable[[str, str], RulesError]
) -> int | None:
    """Seconds, as a number or a string like '90s', '30m', '2h', '1d'."""
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (found := _DURATION_RE.match(value.strip())):
        seconds = int(found.group(1)) * _UNITS[found.group(2)]
    else:
        raise bad(name, f"{value!r} is not a duration (seconds, or e.g. '30m', '2h')")
    if seconds < 1:
        raise bad(name, f"{value!r} is not a duration of at least 1 second")
    return seconds


def rules_from_settings(settings: Settings) -> Rules:
    """The global thresholds of ``settings`` (a rules file's defaults and overrides go on top)."""
    return Rules(
        threshold_count=settings.threshold_count,
        threshold_duration=timedelta(seconds=settings.threshold_duration),
        max_age=timedelta(seconds=settings.max_age) if settings.max_age else None,
        marker_patterns=tuple(re.compile(fnmatch.translate(p)) for p in settings.marker_files),
        dedupe_window=timedelta(seconds=settings.dedupe_window),
    )
