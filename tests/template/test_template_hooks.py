"""The template's pre-generation hook: invalid names stop generation with a clear message,
and answers are read as data, whatever quotes or backslashes they hold."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException
from hypothesis import given
from hypothesis import strategies as st

from tests.template.baking import TEMPLATE_DIR, bake

HOSTILE = '"""); import os; os._exit(3)  # \\\'\'\' r"""\\'


def load_template_module(relative: str) -> ModuleType:
    path = TEMPLATE_DIR / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_name": "123 Lab"}, "project_slug '123-lab' must be lowercase letters"),
        ({"project_slug": "Bad Slug"}, "project_slug 'Bad Slug'"),
        ({"package_name": "class"}, "package_name 'class' is taken"),
        ({"package_name": "json"}, "package_name 'json' is taken"),
        ({"package_name": "consumers"}, "package_name 'consumers' is taken"),
        ({"quarantine_bucket": "Bad_Bucket"}, "quarantine_bucket 'Bad_Bucket' is not a valid"),
        ({"aws_region": "mars-1"}, "aws_region 'mars-1' is not an AWS region"),
        ({"workflow_name": "a b"}, "workflow_name 'a b' may hold only"),
        ({"event_bus_name": "bus name"}, "event_bus_name 'bus name' is not a valid"),
    ],
)
def test_an_invalid_answer_stops_generation_with_a_message_naming_it(
    answers: dict[str, str], message: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FailedHookException):
        bake(answers, tmp_path)

    assert message in capfd.readouterr().err
    assert not any((tmp_path / "out").glob("*/pyproject.toml"))  # nothing half-generated left


def test_hostile_quotes_in_free_text_are_data_not_code(tmp_path: Path) -> None:
    project = bake({"description": HOSTILE, "author": HOSTILE}, tmp_path)

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == HOSTILE
    assert pyproject["project"]["authors"] == [{"name": HOSTILE}]


DEFAULT_ANSWERS = {
    "project_name": "My EDP Consumer",
    "project_slug": "my-edp-consumer",
    "package_name": "my_edp_consumer",
    "quarantine_bucket": "my-quarantine-bucket",
    "event_bus_name": "edp",
    "workflow_name": "",
    "aws_region": "us-east-1",
    "python_version": "3.13",
}


def test_the_hook_accepts_the_default_answers() -> None:
    hook = load_template_module("hooks/pre_gen_project.py")

    assert hook.problems(DEFAULT_ANSWERS) == []


def test_the_hook_refuses_a_runtime_lambda_does_not_offer() -> None:
    hook = load_template_module("hooks/pre_gen_project.py")

    assert hook.problems({**DEFAULT_ANSWERS, "python_version": "2.7"}) == [
        "python_version '2.7' must be one of 3.12, 3.13, 3.14"
    ]


def test_no_python_file_of_the_template_holds_a_jinja_block() -> None:
    offenders = [
        path.relative_to(TEMPLATE_DIR)
        for path in TEMPLATE_DIR.rglob("*.py")
        if "{%" in path.read_text(encoding="utf-8")
    ]

    assert offenders == []


TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60)


@given(text=TEXT)
def test_escaped_free_text_reads_back_identically_in_toml_and_yaml(text: str) -> None:
    escape = load_template_module("local_extensions.py").double_quoted_escape

    escaped = escape(text)

    assert tomllib.loads(f'value = "{escaped}"')["value"] == text
    assert yaml.safe_load(f'value: "{escaped}"')["value"] == text
