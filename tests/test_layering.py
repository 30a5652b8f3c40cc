"""The import rule (docs/internal-interfaces.md): the data path runs one way, nothing reaches back up it."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "raccoon_beam"


def _imports(path: pathlib.Path):
    """Every raccoon_beam module ``path`` imports, at any depth (lazy imports included)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("raccoon_beam"):
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("raccoon_beam"))


def _allowed(module: str, prefixes) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("path", sorted((PACKAGE / "transports").glob("*.py")), ids=lambda p: p.name)
def test_transports_import_only_the_wire_the_errors_and_the_protocol(path):
    allowed = ("raccoon_beam.transports", "raccoon_beam.wire", "raccoon_beam.errors", "raccoon_beam.protocol",
               "raccoon_beam._proto", "raccoon_beam._checks")
    imported = [m for m in _imports(path) if m != "raccoon_beam" and not _allowed(m, allowed)]
    assert not imported, imported


def test_retry_imports_no_transport_and_no_delivery():
    imported = set(_imports(PACKAGE / "retry.py"))
    assert not {m for m in imported if _allowed(m, ("raccoon_beam.transports", "raccoon_beam.delivery"))}


@pytest.mark.parametrize(
    "path", [p for p in sorted(PACKAGE.rglob("*.py")) if p.name not in ("io.py", "yaml.py")], ids=str
)
def test_only_the_beam_facing_modules_import_the_sink(path):
    """Nothing below io.py imports it (the path runs one way)."""
    assert "raccoon_beam.io" not in set(_imports(path)) or path.name == "__init__.py"
