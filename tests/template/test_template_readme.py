"""The "Generate" command of docs/writing-a-consumer.md, run as written (the toolkit's path made real)."""

from __future__ import annotations

import re
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.template.baking import CfnLoader

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_readmes_no_input_generate_command_makes_the_project_it_names(
    tmp_path: Path,
) -> None:
    text = (REPO_ROOT / "docs" / "writing-a-consumer.md").read_text(encoding="utf-8")
    block = text.split("## Generate", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    command = re.search(r"^cookiecutter --no-input .*?(?<!\\)$", block, re.MULTILINE | re.DOTALL)
    cd = re.search(r"^cd (\S+)$", block, re.MULTILINE)
    assert command is not None and cd is not None
    script = command.group(0).replace("/path/to/edp-toolkit", str(REPO_ROOT))
    cookiecutter = Path(sysconfig.get_path("scripts")) / "cookiecutter"
    if not cookiecutter.exists():
        pytest.skip("the cookiecutter command is not installed")

    result = subprocess.run(
        ["bash", "-c", script.replace("cookiecutter ", f"{cookiecutter} ", 1)],
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},  # no user cookiecutter config
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    project = tmp_path / cd.group(1)
    template = yaml.load((project / "template.yaml").read_text(encoding="utf-8"), CfnLoader)
    assert template["Parameters"]["QuarantineBucketName"]["Default"] == "genome-quarantine"
    assert (project / "README.md").read_text(encoding="utf-8").startswith("# Genome Lab Consumer\n")
