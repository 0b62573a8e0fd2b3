"""Helpers of the template tests: bake cookiecutter-consumer, read CloudFormation YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "cookiecutter-consumer"


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML, keeping short-form intrinsics (!Ref x) as {"Ref": x}."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> Any:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


CfnLoader.add_multi_constructor("!", _intrinsic)


def bake(answers: dict[str, str], where: Path) -> Path:
    """Generate a project with cookiecutter's API, isolated from the user's cookiecutter config.

    (pytest-cookies renders the context before cookiecutter puts the template folder on
    sys.path, so it cannot load the template's local Jinja extension.)
    """
    from cookiecutter.main import cookiecutter

    config = where / "cookiecutter-config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"cookiecutters_dir": str(where / "cookiecutters"), "replay_dir": str(where / "replay")}
        )
    )
    output = where / "out"
    return Path(
        cookiecutter(
            str(TEMPLATE_DIR),
            no_input=True,
            extra_context=answers,
            output_dir=str(output),
            config_file=str(config),
        )
    )
