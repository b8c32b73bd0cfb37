"""Lazy exports of a package: its public names import their module on first use.

    __getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {"name": "package.module"})

so that importing the package stays cheap (no JAX until a name that needs it is used).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: dict[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The module-level `__getattr__`, `__dir__` and `__all__` of `package`.

    exports: public name -> the module that defines it (imported, and the value kept in
    `namespace`, on first access); submodules: names of `package`'s submodules to import on access.
    """
    submodules = tuple(submodules)

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(submodules))

    return __getattr__, __dir__, sorted(exports)
