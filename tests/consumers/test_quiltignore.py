""".quiltignore rules on logical keys, matching what quilt3 does for a local folder."""

from __future__ import annotations

import pathlib

import pytest

from consumers.quiltignore import filter_ignored, is_ignored, parse_quiltignore
from consumers.settings import DEFAULT_QUILTIGNORE

KEYS = [
    "README.md",
    "data/run.csv",
    "data/.DS_Store",
    ".DS_Store",
    "._resource",
    "raw/big.bin",
    "raw/nested/more.bin",
    "notes/raw.txt",
    "logs/2024/app.log",
    "Icon",
    "sub/Icon",
]


def test_parse_drops_blank_lines_comments_and_carriage_returns() -> None:
    assert parse_quiltignore("a\r\n\n# comment\n  \n*.log  \n") == ("a", "*.log")


@pytest.mark.parametrize(
    ("rules", "ignored"),
    [
        (["*.log"], {"logs/2024/app.log"}),
        (["raw/"], {"raw/big.bin", "raw/nested/more.bin"}),
        (["raw"], {"raw/big.bin", "raw/nested/more.bin"}),
        (["raw/*"], {"raw/big.bin", "raw/nested/more.bin"}),
        (["logs"], {"logs/2024/app.log"}),
        (["nested"], {"raw/nested/more.bin"}),
        (["README.md"], {"README.md"}),
        (
            parse_quiltignore(DEFAULT_QUILTIGNORE),
            {"data/.DS_Store", ".DS_Store", "._resource", "Icon", "sub/Icon"},
        ),
        ([], set()),
    ],
)
def test_each_rule_ignores_exactly_the_expected_keys(rules: list[str], ignored: set[str]) -> None:
    assert {key for key in KEYS if is_ignored(key, rules)} == ignored
    assert filter_ignored(KEYS, rules) == [key for key in KEYS if key not in ignored]


@pytest.mark.parametrize(
    "rules",
    [
        ["*.log"],
        ["raw/"],
        ["raw"],
        ["nested"],
        ["README.md"],
        list(parse_quiltignore(DEFAULT_QUILTIGNORE)),
    ],
)
def test_same_result_as_quilt3_set_dir_on_a_local_folder(
    tmp_path: pathlib.Path, rules: list[str]
) -> None:
    import quilt3

    root = tmp_path / "pkg"
    for key in KEYS:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key)
    (root / ".quiltignore").write_text("\n".join(rules) + "\n")
    expected = {key for key, _ in quilt3.Package().set_dir(".", str(root)).walk()} - {
        ".quiltignore"
    }
    assert set(filter_ignored(KEYS, rules)) == expected
