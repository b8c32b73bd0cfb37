"""The library's import boundaries (docs/ARCHITECTURE.md, "Folder map" and "The layers"), read from
the source.

Every import counts, at module level or inside a function: the library never imports its
benchmarks, no two modules import each other, no module imports another's private names, each
layer imports only the layers below it (`LAYERS`), and the runtime imports NumPy and the standard
library alone (no JAX: tests/runtime runs it where JAX cannot be imported).
"""

from __future__ import annotations

import ast
import sys
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


# -- the layers -----------------------------------------------------------------------------------------

# A part of the library (a package, or a top-level module) -> the parts it may import, bottom to top as
# docs/ARCHITECTURE.md draws them. The entry points (cli.py, demo.py, gpu_session.py, benchmarks/) may
# import anything of the library; nothing imports them (the benchmarks: the test above).
FOUNDATION = {"config_base", "config", "settings", "lazy", "progress", "evaluation"}
LAYERS: dict[str, set[str]] = {
    "runtime": set(),
    "config_base": set(),
    "config": {"config_base"},
    "settings": set(),
    "lazy": set(),
    "progress": set(),
    "evaluation": set(),
    "model": {"runtime", "config", "config_base"},
    "generation": {"runtime", "model", "config"},
    "pretrained": {"runtime", "model", "config", "settings"},
    "estimator": {"runtime", "model", "generation", "pretrained", "config", "settings", "progress"},
    "train": {"runtime", "model", "generation", "pretrained", "estimator", "priors"} | FOUNDATION,
    "predictor": {"runtime"},  # the former home of load_predictor, a re-export
    "__init__": {"lazy"},
    "priors": {"config_base"},
}
ENTRY_POINTS = {"cli", "demo", "gpu_session", "benchmarks"}
RUNTIME_THIRD_PARTY = {"numpy"}  # besides the standard library


def part(module: str) -> str:
    """The part of the library a module belongs to: "priors", "runtime", "config", "__init__", ..."""
    parts = module.split(".")
    if parts[0] == "priors":
        return "priors"
    return parts[1] if len(parts) > 1 else "__init__"


def test_each_layer_imports_only_the_layers_below_it():
    assert set(LAYERS) | ENTRY_POINTS >= {part(m) for m in MODULES}, "a part of the library has no layer"
    offenders = []
    for module in MODULES:
        if part(module) in ENTRY_POINTS:
            continue
        allowed = LAYERS[part(module)] | {part(module)}
        for target, _, line in imports(module):
            if target.partition(".")[0] in PACKAGES and target in MODULES and part(target) not in allowed:
                offenders.append(f"{module} imports {target} (line {line}): {part(module)} may import {sorted(allowed)}")
    assert not offenders, "\n".join(offenders)


def test_the_runtime_imports_numpy_and_the_standard_library_alone():
    runtime = [m for m in MODULES if part(m) == "runtime"]
    assert len(runtime) >= 6  # the package and its modules: child, checks, encoding, npz, predictor
    offenders = [
        f"{module} imports {target} (line {line})"
        for module in runtime
        for target, _, line in imports(module)
        if target.partition(".")[0] not in sys.stdlib_module_names | RUNTIME_THIRD_PARTY
        and not target.startswith("mothernet_jax.runtime")
    ]
    assert not offenders, "\n".join(offenders)
