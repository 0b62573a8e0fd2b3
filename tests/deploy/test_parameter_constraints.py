"""Every emitter template parameter that feeds a setting allows exactly what the setting allows.

The constraints are not copied into the test: the settings declaration (``edp.settings.SETTINGS``)
names the stack parameter that feeds each setting's environment variable; the test checks the
Lambdas' environment wires them so, then asks both sides about the same probe values:
CloudFormation's constraint check (Type, AllowedPattern, AllowedValues, Min/MaxValue,
Min/MaxLength) and the emitter's own validation (``Settings.from_sources``). A value the template
lets through and the settings reject would make both Lambdas fail every call.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from edp.errors import SettingsError
from edp.settings import MAX_WHOLE_NUMBER, SETTINGS, Settings

NUMBERS = ["0", "1", "2", "20", "300", "86400", str(MAX_WHOLE_NUMBER), str(MAX_WHOLE_NUMBER + 1)]
ODD = ["", "-1", "1.5", "1e3", "abc", "00", "+1", " 1", "10000000000000000000000000"]
TEXT = ["my-bucket", "a..b", "192.168.0.1", "Bad_Bucket", "ab", "x" * 64, "raw/*,tmp/*", "true"]
TEXT += ["false", "perhaps", "default", "edp", "_SUCCESS,manifest.json"]


def fed_settings(template: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """parameter -> (env var it feeds, whether "0" means unset through an !If condition), for
    every parameter the settings declaration names; each must feed its env var in every Lambda."""
    fed: dict[str, tuple[str, bool]] = {}
    functions = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
    ]
    for setting in SETTINGS:
        if setting.parameter is None:
            continue
        assert setting.parameter in template["Parameters"], setting
        for properties in functions:
            value = properties["Environment"]["Variables"][setting.env]
            if isinstance(value, dict) and "Fn::If" in value:
                _, value, _ = value["Fn::If"]
                fed[setting.parameter] = (setting.env, True)
            else:
                fed.setdefault(setting.parameter, (setting.env, False))
            assert value == {"Ref": setting.parameter}, (setting.env, value)
    return fed


def template_accepts(parameter: dict[str, Any], value: str) -> bool:
    """CloudFormation's check of a parameter value against its declared constraints."""
    if parameter["Type"] == "Number":
        try:
            number = float(value)
        except ValueError:
            return False
        if "MinValue" in parameter and number < float(parameter["MinValue"]):
            return False
        return not ("MaxValue" in parameter and number > float(parameter["MaxValue"]))
    if "AllowedValues" in parameter and value not in [str(v) for v in parameter["AllowedValues"]]:
        return False
    if "AllowedPattern" in parameter and not re.fullmatch(parameter["AllowedPattern"], value):
        return False
    if len(value) < int(parameter.get("MinLength", 0)):
        return False
    return len(value) <= int(parameter.get("MaxLength", 1 << 30))


def settings_accept(var: str, value: str, zero_is_off: bool) -> bool:
    env = {} if zero_is_off and value == "0" else {var: value}
    try:
        Settings.from_sources(env={**env, "EDP_DATABASE_URL": "memory://"})
    except SettingsError:
        return False
    return True


def test_every_setting_parameter_is_checked(emitter_template: dict[str, Any]) -> None:
    # Every parameter that feeds an EDP_ variable is declared (none escapes the check below).
    env_refs = {
        value["Ref"]
        for resource in emitter_template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        for var, value in resource["Properties"]["Environment"]["Variables"].items()
        if var.startswith("EDP_") and isinstance(value, dict) and "Ref" in value
    } | {
        value["Fn::If"][1]["Ref"]
        for resource in emitter_template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        for value in resource["Properties"]["Environment"]["Variables"].values()
        if isinstance(value, dict) and "Ref" in value.get("Fn::If", [None, {}])[1]
    }
    assert env_refs & set(emitter_template["Parameters"]) == set(fed_settings(emitter_template))
    assert set(fed_settings(emitter_template)) >= {
        "BucketName",
        "BucketIgnorePrefixes",
        "BucketPrefixDepth",
        "BucketThresholdDuration",
        "BucketThresholdEventCount",
        "BucketThresholdMaxAge",
        "MarkerFiles",
        "DedupeWindow",
        "EventBridgeKeysEncoded",
        "EventBusName",
    }


@pytest.mark.parametrize("value", NUMBERS + ODD + TEXT)
def test_the_template_never_lets_through_what_the_emitter_rejects(
    emitter_template: dict[str, Any], value: str
) -> None:
    for name, (var, zero_is_off) in fed_settings(emitter_template).items():
        parameter = emitter_template["Parameters"][name]
        if template_accepts(parameter, value):
            assert settings_accept(var, value, zero_is_off), (name, value)


@pytest.mark.parametrize("value", NUMBERS)
def test_whole_number_parameters_have_the_settings_bounds(
    emitter_template: dict[str, Any], value: str
) -> None:
    # Every whole number the emitter takes, the template takes too (and no other).
    for name, (var, zero_is_off) in fed_settings(emitter_template).items():
        if not settings_accept(var, "20", zero_is_off) or settings_accept(var, "1.5", zero_is_off):
            continue  # not a whole-number setting
        parameter = emitter_template["Parameters"][name]
        assert template_accepts(parameter, value) == settings_accept(var, value, zero_is_off), (
            name,
            value,
        )
