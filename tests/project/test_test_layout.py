"""The tests' own layout: test modules never import each other, and their names stay unique.

What several test modules share lives in the helper modules of ``tests/`` (``serving_helpers``,
``fake_hub``, ...) or in a ``conftest.py``; importing a test module instead runs its module-level
code twice and makes its tests depend on where the other file sits.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def names_of_test_modules(root: Path) -> set[str]:
    """The importable names of the test modules under ``root`` (pytest's rootdir import mode)."""
    return {path.stem for path in root.rglob("test_*.py")}


def imported_names(path: Path) -> set[str]:
    """Top-level module names ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_of_the_tests_imports_a_test_module() -> None:
    tests = names_of_test_modules(TESTS)
    offenders = {
        str(path.relative_to(TESTS)): sorted(imported_names(path) & (tests - {path.stem}))
        for path in sorted(TESTS.rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}, (
        "move what is shared into a helper module of tests/ or a conftest.py"
    )


def test_test_module_names_are_unique_across_areas() -> None:
    # Without __init__.py files pytest imports each test module by its bare name: two of a name collide.
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert {name: count for name, count in names.items() if count > 1} == {}


def test_the_checks_above_see_an_import_between_test_modules(tmp_path: Path) -> None:
    (tmp_path / "area").mkdir()
    (tmp_path / "area" / "test_a.py").write_text("def test_a():\n    from test_b import helper\n")
    (tmp_path / "test_b.py").write_text("import os\nfrom inspyrenet_lite import Remover\n")
    assert names_of_test_modules(tmp_path) == {"test_a", "test_b"}
    assert imported_names(tmp_path / "area" / "test_a.py") == {"test_b"}
    assert imported_names(tmp_path / "test_b.py") == {"os", "inspyrenet_lite"}
