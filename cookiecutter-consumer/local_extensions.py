"""Jinja filters of the cookiecutter-consumer template: put free text into TOML and YAML safely."""

from __future__ import annotations

from jinja2 import Environment
from jinja2.ext import Extension

# Characters TOML basic strings or YAML double-quoted scalars do not allow raw:
# C0 controls, DEL, C1 controls, and the line/paragraph separators YAML treats as breaks.
_ESCAPED_RANGES = ((0x00, 0x1F), (0x7F, 0x9F), (0x2028, 0x2029), (0xFFFE, 0xFFFF))


def double_quoted_escape(value: object) -> str:
    """``value`` escaped to sit between double quotes in TOML, YAML or JSON: ``"{{ x | ... }}"``.

    The quotes stay in the template, so the unrendered files are valid TOML and YAML too.
    """
    parts = []
    for char in str(value):
        code = ord(char)
        if char in '"\\':
            parts.append("\\" + char)
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate cannot be written in UTF-8
            parts.append("\\ufffd")
        elif any(low <= code <= high for low, high in _ESCAPED_RANGES):
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(char)
    return "".join(parts)


class QuotingExtension(Extension):
    """Adds the ``double_quoted_escape`` filter (see :func:`double_quoted_escape`)."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["double_quoted_escape"] = double_quoted_escape
