"""No module uses another module's private names (issue 32): what one module shares is public.

A leading underscore says "only this module relies on it"; a second module
reaching in would break silently when the first changes it. Read from the
source: ``from X import _name`` of the package, and ``something._name`` where
``_name`` is defined by another module of the package (attributes of other
libraries, e.g. ``torch._dynamo``, are theirs to keep).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "inspyrenet_lite").rglob("*.py"), *(ROOT / "space").glob("*.py"), *(ROOT / "bench").glob("*.py")])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, module variables and ``self._x`` attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
    return {name for name in names if _private(name)}


def _package(node: ast.ImportFrom) -> bool:
    return bool(node.level) or (node.module or "").split(".")[0] == "inspyrenet_lite"


def violations() -> list[str]:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}
    defined = {path: _defined(tree) for path, tree in trees.items()}
    everywhere = set().union(*defined.values())
    found = []
    for path, tree in trees.items():
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _package(node):
                found += [f"{where}:{node.lineno}: imports {a.name}" for a in node.names if _private(a.name)]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                    continue
                if node.attr in everywhere and node.attr not in defined[path]:
                    found.append(f"{where}:{node.lineno}: uses {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    assert violations() == []


def test_the_check_sees_both_spellings(tmp_path: Path) -> None:
    one = ast.parse("from inspyrenet_lite.image_io import _hidden\nimport os\nos._exit(0)\n")
    two = ast.parse("def _hidden():\n    pass\n")
    imports = [a.name for n in ast.walk(one) if isinstance(n, ast.ImportFrom) and _package(n) for a in n.names]
    assert [name for name in imports if _private(name)] == ["_hidden"]
    assert _defined(two) == {"_hidden"} and "_exit" not in _defined(one)
