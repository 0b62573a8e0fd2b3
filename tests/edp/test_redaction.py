"""Passwords never show: URLs and libpq key=value connection strings are masked in every message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edp.errors import SettingsError
from edp.settings import Settings
from edp.store.urls import redact_url

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://u:SECRET@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=SECRET&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("postgresql://u@h/db?sslpassword=SECRET", "postgresql://u@h/db?sslpassword=***"),
        ("host=db password=SECRET user=edp", "host=db password=*** user=edp"),
        ("host=db PASSWORD = SECRET", "host=db PASSWORD = ***"),
        ("password='SECRET with spaces' dbname=x", "password=*** dbname=x"),
        (r"password='SEC\'RET' dbname=x", "password=*** dbname=x"),
        ("dbname=x sslpassword=SECRET", "dbname=x sslpassword=***"),
        (
            "postgresql://u@h/db?options=-csearch_path=s",
            "postgresql://u@h/db?options=-csearch_path=s",
        ),
    ],
)
def test_every_form_of_password_is_masked(given: str, shown: str) -> None:
    assert redact_url(given.replace("SECRET", SECRET)) == shown


def test_a_key_value_connection_string_in_a_setting_error_is_masked() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(database_url=f"host=db port=5432 password={SECRET}")
    assert SECRET not in str(caught.value) and "password=***" in str(caught.value)


@pytest.mark.parametrize("command", ["simulate", "status"])
def test_the_cli_never_prints_a_key_value_password(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edp.cli", command, "--db", f"host=db password={SECRET}"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
