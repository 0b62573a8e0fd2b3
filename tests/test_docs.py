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


# Links and the shape of the pages.

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
README_MAX_LINES = 250


def _outside_fences(text: str) -> str:
    return FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: link syntax and punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(
        r"^#{1,6} (.+)$", _outside_fences(doc.read_text(encoding="utf-8")), re.M
    ):
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(f"{anchor}-{count}" if count else anchor)
    return found


def relative_links(doc: Path) -> list[str]:
    text = _outside_fences(doc.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:, s3:
    ]


LINKS = [(doc, target) for doc in DOCS for target in relative_links(doc)]


def test_the_docs_link_to_each_other() -> None:
    assert len(LINKS) > 50
    assert any(target.startswith("docs/") for doc, target in LINKS if doc.name == "README.md")


@pytest.mark.parametrize(
    ("doc", "target"), LINKS, ids=[f"{d.relative_to(ROOT)}->{t}" for d, t in LINKS]
)
def test_every_relative_link_resolves(doc: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (doc.parent / path).resolve() if path else doc
    assert resolved.exists(), f"{doc.relative_to(ROOT)}: {target} names no file"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), (
            f"{doc.relative_to(ROOT)}: {target}: no heading with that anchor in {resolved.name}"
        )


def test_the_readme_fits_on_a_few_screens() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/"


@pytest.mark.parametrize("doc", DOCS[1:], ids=[d.name for d in DOCS[1:]])
def test_every_docs_page_starts_with_its_contents(doc: Path) -> None:
    text = _outside_fences(doc.read_text(encoding="utf-8"))
    sections = [m.group(1) for m in re.finditer(r"^## (.+)$", text, re.M)]
    before_first = text.split("\n## ", 1)[0]
    missing = [s for s in sections if f"(#{github_anchor(s)})" not in before_first]
    assert not missing, f"{doc.name}: the contents list before the first section lacks {missing}"


def test_no_page_speaks_of_issues_or_targets_by_number() -> None:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for pattern in (
            r"\bissues? #?\d+",
            r"\btargets?\b[^.\n]{0,12}?[≤<(:]?\s*[≤<]\s*\d",
            r"\btargets?\s*\(",
            r"\btargets? (within|of|under|below|above) \d",
        ):
            found = re.search(pattern, text, re.IGNORECASE)
            assert found is None, f"{doc.name}: {found.group(0)!r}: say what was measured instead"


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == "python -m pytest"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^python -m pytest\s+# run the tests$", quick_start, re.M)
    assert "pip install -e '.[dev]' && edp demo" in quick_start


REPO_PATH = re.compile(
    r"`((?:tests|bench|edp|consumers|deploy|workflows|cookiecutter-consumer|docs)/[\w./-]*)`"
)
NOT_REPO_PATHS = {
    "tests/test_handler.py": "a generated consumer project's file",
    "edp/raw": "a package name",
    "edp/edp-emitter.zip": "an S3 key",
    "edp/edp-consumer.zip": "an S3 key",
    "docs/CHANGELOG.md": "quiltdata/quilt's file",
}


def test_every_repository_path_the_docs_name_exists() -> None:
    """Test files, scripts and templates named in code spans exist (so renames reach the docs)."""
    missing = [
        f"{doc.relative_to(ROOT)}: {path}"
        for doc in DOCS
        for path in REPO_PATH.findall(doc.read_text(encoding="utf-8"))
        if path not in NOT_REPO_PATHS and not (ROOT / path).exists()
    ]
    assert not missing, missing
