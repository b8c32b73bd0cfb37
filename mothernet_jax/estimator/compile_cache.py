"""A persistent compilation cache for the estimators, so that only a machine's first fit of a shape
pays XLA's compilation (seconds on a CPU: docs/FAST_DEFAULTS.md).

`use_default_cache()` runs at every fit. Where the user has not chosen a cache
(`jax_compilation_cache_dir`, or the JAX_COMPILATION_CACHE_DIR variable, which sets it) it points JAX
at `$XDG_CACHE_HOME/mothernet_jax/xla` (default ~/.cache/mothernet_jax/xla) and lets programs that
compile in 0.2 s or more in; MOTHERNET_JAX_COMPILATION_CACHE=0 leaves JAX's settings alone. The
cache holds JAX's serialized XLA executables (docs/FAST_DEFAULTS.md measures a first fit with and
without it).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

MIN_COMPILE_SECONDS = 0.2  # a shape's generation call compiles in ~1 s; its small helpers in less
_done = False


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mothernet_jax" / "xla"


def use_default_cache() -> str | None:
    """Turn on the default cache once per process unless the user chose one or opted out; returns
    the cache folder in use (None: none)."""
    global _done
    if not _done:
        _done = True
        chosen = jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")
        if not chosen and os.environ.get("MOTHERNET_JAX_COMPILATION_CACHE", "1") != "0":
            folder = default_cache_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:  # a read-only home: compile every time, as JAX does by default
                return None
            jax.config.update("jax_compilation_cache_dir", str(folder))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return jax.config.jax_compilation_cache_dir
