"""The library's import boundaries (docs/ARCHITECTURE.md, "Folder map"), read from the source.

Every import counts, at module level or inside a function: the library never imports its
benchmarks, no two modules import each other, and no module imports another's private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mothernet_jax", "priors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str, importer: str, level: int, is_package: bool) -> str:
    if not level:
        return name
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import statement of `module`.
    `from a import b` where a.b is a module counts as an import of a.b."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", module, node.level, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return found


def _internal_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in imports(module):
            if target in MODULES and target != module:
                edges[module].add(target)
    return edges


def test_the_analysis_sees_the_imports_it_judges():
    # a check that found no imports would pass everything: it must see known ones
    edges = _internal_edges()
    assert "mothernet_jax.evaluation" in edges["mothernet_jax.train.validate"]
    assert "mothernet_jax.config" in edges["mothernet_jax.generation"]
    assert sum(len(v) for v in edges.values()) > 50


def test_the_library_never_imports_its_benchmarks():
    offenders = [
        f"{module} imports {target} (line {line})"
        for module in MODULES
        if not module.startswith("mothernet_jax.benchmarks")
        for target, _, line in imports(module)
        if target == "mothernet_jax.benchmarks" or target.startswith("mothernet_jax.benchmarks.")
    ]
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles():
    edges = _internal_edges()
    # a package's __init__ re-exporting its own modules lazily is not a cycle of concepts: the
    # packages here import their modules on first use (lazy.py), never at import time
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _private_uses(module: str) -> list[str]:
    """Private names of other modules that `module` imports (`from m import _x`) or reads from a
    module it imported (`import m` / `from pkg import m`, then `m._x`)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    bound: dict[str, str] = {}  # local name -> internal module it names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", module, node.level, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    bound[alias.asname or alias.name] = sub
                elif _private(alias.name) and target in MODULES and target != module:
                    found.append(f"{module} imports {alias.name} from {target} (line {node.lineno})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr):
            target = bound.get(node.value.id)
            if target is not None and target != module:
                found.append(f"{module} reads {target}.{node.attr} (line {node.lineno})")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_a_private_name_of_another():
    offenders = [line for module in MODULES for line in _private_uses(module)]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_read(package):
    assert any(m.startswith(package) for m in MODULES)
