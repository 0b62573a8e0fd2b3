"""The commands the docs show: every `edp` command parses with the real command line, SQLite URLs
in `--db` are absolute, and the blocks marked runnable run.

A fenced block whose info string is ``bash runnable`` is run with ``bash -euo pipefail`` in a
fresh folder that looks like a checkout root (``tests/`` and ``workflows/`` linked in); ``bash
runnable moto`` also gets a moto server through ``AWS_ENDPOINT_URL`` and fake credentials.
Commands that need AWS or long runs are run elsewhere: ``pip install -e '.[dev]'`` and
``python -m pytest`` by ``.ci/run``, ``edp demo`` by ``tests/test_demo.py``, ``edp run`` by
``tests/service``, ``edp redrive`` by ``tests/edp/test_redrive.py``.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edp.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELLS = ("bash", "sh", "console", "shell")
SEPARATORS = {"&&", "||", ";", "|"}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    info: str
    text: str

    @property
    def runnable(self) -> bool:
        return "runnable" in self.info.split()

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            info = match.group(1).strip()
            if info.split()[:1] and info.split()[0] in SHELLS:
                line = text.count("\n", 0, match.start()) + 1
                found.append(Block(doc, line, info, match.group(2)))
    return found


def edp_commands(block: Block) -> list[list[str]]:
    """Every `edp ...` command in a shell block, as argv (continuations joined, prompts dropped)."""
    text = block.text.replace("\\\n", " ")
    commands = []
    for raw in text.splitlines():
        line = raw.strip()
        if block.info.startswith("console"):
            if not line.startswith("$ "):
                continue
            line = line[2:]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:
            continue  # a line of a heredoc or an unbalanced example: not a command
        segment: list[str] = []
        redirect = False
        for word in [*words, ";"]:
            if redirect:  # the file name after > or <
                redirect = False
            elif word in SEPARATORS:
                if segment[:1] == ["edp"]:
                    commands.append(segment)
                segment = []
            elif word and set(word) <= set("<>&"):
                redirect = True
            else:
                segment.append(word)
    return commands


ALL_BLOCKS = blocks()
COMMANDS = [(str(b), argv) for b in ALL_BLOCKS for argv in edp_commands(b)]


def test_the_docs_show_edp_commands() -> None:
    assert len(COMMANDS) > 10
    assert any(b.runnable for b in ALL_BLOCKS)


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[f"{w} {a[1]}" for w, a in COMMANDS])
def test_every_edp_command_in_the_docs_parses(where: str, argv: list[str]) -> None:
    parser = build_parser()
    try:
        parser.parse_args(argv[1:])
    except SystemExit as exit_info:
        # --help and --version exit 0; anything else is a flag or value the command lacks.
        assert exit_info.code == 0, f"{where}: {shlex.join(argv)} does not parse"


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[f"{w} {a[1]}" for w, a in COMMANDS])
def test_sqlite_urls_in_commands_are_absolute(where: str, argv: list[str]) -> None:
    for flag, value in itertools.pairwise(argv):
        if flag == "--db" and value.startswith("sqlite:///"):
            path = value[len("sqlite:///") :]
            assert path.startswith(("/", "$")), f"{where}: {value} is a relative path"


def test_no_doc_installs_the_toolkit_from_an_index() -> None:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"pip install ['\"]?edp-toolkit", text), (
            f"{doc.name}: the toolkit is not on an index; install it from a checkout (pip install -e)"
        )


def _run_block(block: Block, tmp_path: Path, env: dict[str, str]) -> None:
    for name in ("tests", "workflows"):
        (tmp_path / name).symlink_to(ROOT / name)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "edp").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m edp.cli "$@"\n')
    (shim / "edp").chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EDP_")},
        **env,
        "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{block} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"{block}:\n{result.stderr}"


RUNNABLE = [b for b in ALL_BLOCKS if b.runnable]


@pytest.mark.integration  # each block runs in a bash subprocess, some with a moto server
@pytest.mark.parametrize("block", RUNNABLE, ids=[str(b) for b in RUNNABLE])
def test_runnable_blocks_run(block: Block, tmp_path: Path) -> None:
    if "moto" not in block.info.split():
        _run_block(block, tmp_path, {})
        return
    from consumers.testing.aws import running_moto_server

    if "aws " in block.text and shutil.which("aws") is None:
        pytest.skip("this block uses the AWS CLI, which is not installed")

    with running_moto_server() as server:
        _run_block(
            block,
            tmp_path,
            {
                "AWS_ENDPOINT_URL": server.url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        )
