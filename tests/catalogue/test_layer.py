"""The catalogue is one layer below ranking, evaluation, jobs and serving: nothing in it imports them."""

from __future__ import annotations

import ast
from pathlib import Path

import xrec.catalogue

PACKAGE = Path(xrec.catalogue.__file__).parent
#: What the catalogue layer may import from xrec: itself and the error types.
ALLOWED = ("xrec.catalogue", "xrec.errors")


def xrec_imports(path: Path) -> set[str]:
    """Every ``xrec...`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name == "xrec" or name.startswith("xrec.")}


def test_the_catalogue_imports_nothing_above_it():
    files = sorted(PACKAGE.glob("*.py"))
    assert {f.stem for f in files} >= {"tables", "ids", "languages", "templates", "items", "interactions"}
    above = {f"{f.name}: {name}" for f in files for name in xrec_imports(f)
             if not any(name == a or name.startswith(a + ".") for a in ALLOWED)}
    assert not above, sorted(above)
