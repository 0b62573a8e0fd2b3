"""The settings table in docs/settings.md, generated from the settings declaration.

``python -m edp.settings_table`` rewrites the table between the page's markers;
``python -m edp.settings_table --check`` exits 1 if the page's table is not the generated one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edp.settings import SETTINGS

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
REGENERATE = "python -m edp.settings_table"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table() -> str:
    """The Markdown table: one row per declared setting."""
    rows = [
        "| setting | env var | CLI flag | stack parameter | default | valid | what it does |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flag = "—"
        if s.flag:
            flag = f"`{s.flag}`" + (" (repeatable)" if s.repeatable else "")
        parameter = f"`{s.parameter}`" if s.parameter else "—"
        cells = [f"`{s.name}`", f"`{s.env}`", flag, parameter, s.default, s.valid, s.help]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def replace_table(page: str, table: str) -> str:
    """``page`` with the text between the markers replaced by ``table``."""
    if START not in page or END not in page:
        raise ValueError(f"the page has no {START} ... {END} markers")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="Write (or --check) the settings table in docs/settings.md."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    parser.add_argument("--page", type=Path, default=PAGE, help="the page (default: %(default)s)")
    args = parser.parse_args(argv)
    current = args.page.read_text(encoding="utf-8")
    wanted = replace_table(current, render_table())
    if args.check:
        if current != wanted:
            print(f"{args.page}: settings table out of date; run: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        args.page.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
