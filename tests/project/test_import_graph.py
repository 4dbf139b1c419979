"""The package's layers: data flows one way (issue 17).

``modeling/`` (the network) imports nothing of the package outside
``modeling/`` but ``constants``; ``constants`` and ``serialization`` sit below
the network's users; and no cycle remains among the modules' top-level imports.
Imports are read from the source (every import statement, top-level or inside
a function), so a lazy import that crosses a layer is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "inspyrenet_lite"
NAME = "inspyrenet_lite"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, top_level_only: bool) -> set[str]:
    """Package modules ``path`` imports (relative imports resolved; ``from X import name`` counts X)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == NAME)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != NAME:
                continue
            found.add(target)
            # "from .pkg import submodule" imports the submodule.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists():
                    found.add(candidate)
    found.discard(module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_modeling_imports_nothing_of_the_package_above_it() -> None:
    offenders = {}
    for name, path in MODULES.items():
        if not name.startswith(f"{NAME}.modeling"):
            continue
        outside = {
            m for m in imports_of(path, top_level_only=False)
            if not m.startswith(f"{NAME}.modeling") and m not in (NAME, f"{NAME}.constants")
        }
        if outside:
            offenders[name] = sorted(outside)
    assert offenders == {}


@pytest.mark.parametrize("low", ["constants", "serialization"])
def test_the_lowest_floors_import_only_what_is_below_them(low: str) -> None:
    allowed = {"constants": set(), "serialization": {f"{NAME}.constants"}}[low]
    assert imports_of(MODULES[f"{NAME}.{low}"], top_level_only=False) <= allowed


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_top_level_imports() -> None:
    graph = {
        name: {m for m in imports_of(path, top_level_only=True) if m in MODULES and m != NAME}
        for name, path in MODULES.items()
    }
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
