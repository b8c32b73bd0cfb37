"""A persistent compilation cache for the estimators, so that only a machine's first fit of a shape
pays XLA's compilation (seconds on a CPU: docs/FAST_DEFAULTS.md).

`use_default_cache()` runs at the first fit of a process. Where the user has not chosen a cache (the
`jax_compilation_cache_dir` setting, or the JAX_COMPILATION_CACHE_DIR variable, which sets it) it
sets two of JAX's settings, which hold for the whole process (every JAX program it compiles, not
only the estimators'):

- `jax_compilation_cache_dir` to `$XDG_CACHE_HOME/mothernet_jax/xla` (default
  ~/.cache/mothernet_jax/xla), a folder of JAX's serialized XLA executables;
- `jax_persistent_cache_min_compile_time_secs` to 0.2 s (JAX's default is 1 s), so that the
  generation calls, which compile in about a second, are cached; left alone where the user set it
  (the JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS variable, or a value other than JAX's default).

To turn it off: MOTHERNET_JAX_COMPILATION_CACHE=0 in the environment (JAX's settings are then left
as they are), or choose a cache of your own before the first fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

MIN_COMPILE_SECONDS = 0.2  # a shape's generation call compiles in ~1 s; its small helpers in less
JAX_MIN_COMPILE_SECONDS = 1.0  # JAX's own default of jax_persistent_cache_min_compile_time_secs
_done = False


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mothernet_jax" / "xla"


def default_cache_updates(
    cache_dir: str | None, min_compile_seconds: float, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """The JAX settings `use_default_cache` changes, given the current ones (`cache_dir`,
    `min_compile_seconds`) and the environment: none where the user chose a cache or opted out
    (MOTHERNET_JAX_COMPILATION_CACHE=0); else the cache folder, and the minimum compile time unless
    the user set it."""
    if cache_dir or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    if environ.get("MOTHERNET_JAX_COMPILATION_CACHE", "1") == "0":
        return {}
    updates: dict[str, Any] = {"jax_compilation_cache_dir": str(default_cache_dir(environ))}
    user_set = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" in environ
    if not user_set and min_compile_seconds == JAX_MIN_COMPILE_SECONDS:
        updates["jax_persistent_cache_min_compile_time_secs"] = MIN_COMPILE_SECONDS
    return updates


def use_default_cache() -> str | None:
    """Turn on the default cache once per process unless the user chose one or opted out
    (`default_cache_updates`); returns the cache folder in use (None: none)."""
    global _done
    if not _done:
        _done = True
        updates = default_cache_updates(
            jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
        )
        if updates:
            try:
                Path(updates["jax_compilation_cache_dir"]).mkdir(parents=True, exist_ok=True)
            except OSError:  # a read-only home: compile every time, as JAX does by default
                return None
            for name, value in updates.items():
                jax.config.update(name, value)
    return jax.config.jax_compilation_cache_dir
