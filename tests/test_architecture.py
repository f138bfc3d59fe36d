"""The package's shape: no import cycle, and the engine asks the network model."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gradcheck_cli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every gradcheck_cli module this file imports, at any depth (inside functions
    too, but not under ``if TYPE_CHECKING:``), with the packages on the way."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from . import fast`` imports the module engine/fast.py; ``from .engine
            # import run_check`` the package engine/__init__.py
            targets = [
                f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names
            ]
        for t in targets:
            if not t.startswith("gradcheck_cli"):
                continue
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t:
                found.add(t)
    found.discard(name)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _cycles(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    if graph is None:
        graph = {m: _imports(p) for m, p in MODULES.items()}
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_cycle_in_the_package():
    assert _cycles() == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count():
    imports = _imports(MODULES["gradcheck_cli.api"])
    assert "gradcheck_cli.config" in imports  # imported inside load()


def test_the_engine_never_imports_the_cli_or_rich():
    for name, path in MODULES.items():
        if name.startswith("gradcheck_cli.engine"):
            text = path.read_text()
            assert "import click" not in text and "import rich" not in text, name
            assert "gradcheck_cli.cli" not in _imports(path), name
