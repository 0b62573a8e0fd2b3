"""Error types: one family per package, all declared in its errors module, none dead."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"edp": "EdpError", "consumers": "ConsumerError", "edp_common": "SharedError"}


def exception_classes(package: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (module file, base names) of every class whose name ends in Error/Refused/Rejection
    or that derives from one."""
    found: dict[str, tuple[str, list[str]]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                if any(b.endswith(("Error", "Exception")) or b in found for b in bases):
                    found[node.name] = (str(path.relative_to(ROOT)), bases)
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_error_type_lives_in_its_package_errors_module_and_joins_its_family(
    package: str,
) -> None:
    classes = exception_classes(package)
    assert classes, package
    outside = {
        name: where for name, (where, _) in classes.items() if where != f"{package}/errors.py"
    }
    assert outside == {}
    base = PACKAGES[package]

    def in_family(name: str) -> bool:
        return name == base or any(in_family(b) for b in classes.get(name, ("", []))[1])

    assert [name for name in classes if not in_family(name)] == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_error_type_is_dead(package: str) -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / package).rglob("*.py"))
    classes = exception_classes(package)
    bases = {b for _, found in classes.values() for b in found}
    dead = [
        name for name in classes if name not in bases and not re.search(rf"raise {name}\b", source)
    ]
    assert dead == []
