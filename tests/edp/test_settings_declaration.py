"""One declaration per setting (edp.settings.SETTINGS) generates the flags, env parsing, error
labels and the table in docs/settings.md; these tests fail when any of them drifts from it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from edp.cli import build_parser, settings_from_args
from edp.errors import SettingsError
from edp.settings import ENV_VARS, SETTINGS, SETTINGS_HELP, Setting, Settings
from edp.settings_table import END, PAGE, REGENERATE, START, main, render_table, replace_table
from tests.helpers import subcommand


def test_the_docs_table_is_the_generated_one() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert page == replace_table(page, render_table()), (
        f"docs/settings.md's settings table is out of date; run: {REGENERATE}"
    )


def test_every_field_is_declared_once() -> None:
    declared = [s.field for s in SETTINGS]
    assert sorted(declared) == sorted(f.name for f in fields(Settings))
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)


def test_the_epilog_names_every_env_var() -> None:
    flat = " ".join(SETTINGS_HELP.split())
    for var in ENV_VARS:
        assert var in flat
    assert "EDP_DATABASE_SECRET_ARN" in flat


@pytest.mark.parametrize("command", ["simulate", "run", "backfill"])
def test_every_declared_flag_is_on_the_commands_that_take_settings(command: str) -> None:
    parser = build_parser()
    options = {
        flag for action in subcommand(parser, command)._actions for flag in action.option_strings
    }
    assert {s.flag for s in SETTINGS if s.flag} <= options


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind == "int"], ids=lambda s: s.env)
def test_a_bad_whole_number_names_its_flag_and_env_var(setting: Setting) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_sources(env={setting.env: "0", "EDP_DATABASE_URL": "memory://"})
    assert f"{setting.name} ({setting.flag} / {setting.env})" in str(caught.value)


def test_env_vars_and_flags_reach_the_same_fields() -> None:
    env = {
        "EDP_BUCKET_NAME": "a-bucket,b-bucket",
        "EDP_MARKER_FILES": "_SUCCESS",
        "EDP_BUCKET_PREFIX_DEPTH": "3",
        "EDP_DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x",
        "EDP_EVENTBRIDGE_KEYS_ENCODED": "false",
        "EDP_EVENT_IDS_RELIABLE": "false",
        "EDP_RULES": "rules.yaml",
        "EDP_DATABASE_URL": "memory://",
    }
    from_env = Settings.from_sources(env=env)
    args = build_parser().parse_args(
        [
            "simulate",
            "--bucket",
            "a-bucket",
            "--bucket",
            "b-bucket",
            "--marker-files",
            "_SUCCESS",
            "--prefix-depth",
            "3",
            "--eventbridge-keys-unencoded",
            "--event-ids-unreliable",
            "--rules",
            "rules.yaml",
            "--db",
            "memory://",
        ]
    )
    from_flags = settings_from_args(
        args, database_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:x"
    )
    assert from_env == from_flags
    assert from_env.buckets == ("a-bucket", "b-bucket") and from_env.prefix_depth == 3
    assert not from_env.eventbridge_keys_encoded and not from_env.event_ids_reliable


def test_the_check_command_says_how_to_regenerate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "settings.md"
    page.write_text(f"# t\n\n{START}\n| stale |\n{END}\n", encoding="utf-8")
    assert main(["--check", "--page", str(page)]) == 1
    assert REGENERATE in capsys.readouterr().err
    assert main(["--page", str(page)]) == 0
    assert main(["--check", "--page", str(page)]) == 0
