"""The package's layers: data flows one way (issue 17).

``modeling/`` (the network) imports nothing of the package outside
``modeling/`` but ``constants``; ``constants`` and ``serialization`` sit below
the network's users; and no cycle remains among the modules' top-level imports.
Imports are read from the source (every import statement, top-level or inside
a function), so a lazy import that crosses a layer is caught too.
"""

from __future__ import annotations

import pytest

from source_helpers import MODULES, NAME, imports_of


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
