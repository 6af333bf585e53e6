"""The layers import downward only: no import cycle (imports inside functions count),
``core`` and ``schemas`` import nothing above them, one resolver of metric names."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "rldk"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """rldk modules that ``path`` imports anywhere in its body (top level or in functions)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me and name != "rldk":
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    # C extension modules (built from *.c next to the .py files) import no rldk module
    modules = {module_name(f) for f in files} | {module_name(f) for f in PACKAGE.rglob("*.c")}
    return {module_name(f): imports_of(f, modules) for f in files}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_is_acyclic():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


LOWER = ("rldk.core", "rldk.schemas", "rldk.semantics")
ABOVE_CORE = ("rldk.converters", "rldk.analyzers", "rldk.commands", "rldk.writer", "rldk.data",
              "rldk.integrations", "rldk.cli")


def test_core_imports_nothing_above_it():
    bad = [(m, t) for m, targets in graph().items() if m.startswith(LOWER)
           for t in targets if t.startswith(ABOVE_CORE)]
    assert bad == []


def test_semantics_imports_no_rldk_module():
    assert graph()["rldk.semantics"] == set()


def test_one_name_resolver():
    """Only rldk.semantics maps framework metric names to quantities."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "semantics.py" and ("CANONICAL" in text or "def resolve_name" in text
                                            or "REWARD_NAMES" in text or "EXTRA_NAMES" in text):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []
