"""Imports point one way: zoo <- analysis <- trainers (ARCHITECTURE.md)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# package -> the packages of ours it may import
ALLOWED = {"zoo": {"zoo"}, "analysis": {"zoo", "analysis"}, "trainers": None}
OURS = {"zoo", "analysis", "trainers"}


def _imports(path: pathlib.Path) -> set[str]:
    """Top-level package names a module imports, wherever in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("package", ["zoo", "analysis"])
def test_lower_layers_never_import_higher_ones(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) - ALLOWED[package])
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) - ALLOWED[package]
    }
    assert not offenders, f"{package}/ imports a higher layer: {offenders}"


def test_the_checker_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from trainers import loop\n")
    assert _imports(module) == {"trainers"}
