"""Shared helpers of the benchmarks: what ran where, how many threads, and honest timing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, MutableMapping

import jax

EIGEN_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def device_line() -> str:
    """'backend=gpu device=NVIDIA H100 80GB HBM3 x1 jax=0.11.0'."""
    devices = jax.devices()
    return (
        f"backend={jax.default_backend()} device={devices[0].device_kind} x{len(devices)} "
        f"jax={jax.__version__}"
    )


def xla_thread_environment(threads: int, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables that cap XLA's CPU pools at `threads`, merged into those of `environ`.

    PJRT_NPROC sizes the CPU client's intra-op and dispatch pools (XLA's `DefaultThreadPoolSize`,
    read when JAX starts its CPU backend; without it, one thread per core). For one thread,
    `--xla_cpu_multi_thread_eigen=false` also keeps Eigen's matrix products on the calling thread;
    the other flags already in XLA_FLAGS are kept.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    environ = os.environ if environ is None else environ
    flags = [
        f for f in environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_cpu_multi_thread_eigen")
    ]
    if threads == 1:
        flags.append(EIGEN_SINGLE_THREAD)
    return {"PJRT_NPROC": str(threads), "XLA_FLAGS": " ".join(flags)}


def backend_started() -> bool:
    """Whether JAX has started a backend in this process (after which XLA_FLAGS and PJRT_NPROC are
    read no more)."""
    from jax._src import xla_bridge  # no public name for this (jax 0.10)

    return xla_bridge.backends_are_initialized()


def cap_xla_threads(threads: int, environ: MutableMapping[str, str] | None = None) -> str:
    """Caps XLA's CPU pools at `threads` by setting `xla_thread_environment` in `environ` (default:
    this process's). Returns the line a report prints: the variables and whether they are in effect.
    XLA reads them when JAX starts its backend (importing jax does not start it): after that, the
    cap holds only where the environment had it already (a parent process set it)."""
    environ = os.environ if environ is None else environ
    variables = xla_thread_environment(threads, environ)
    if backend_started():
        set_before = environ.get("PJRT_NPROC") == str(threads) and (
            threads > 1 or EIGEN_SINGLE_THREAD in environ.get("XLA_FLAGS", "").split()
        )
        if not set_before:
            return (
                "XLA not capped: JAX's backend had started before the cap "
                f"(PJRT_NPROC={environ.get('PJRT_NPROC', 'unset')})"
            )
    environ.update(variables)
    return f"XLA capped: PJRT_NPROC={variables['PJRT_NPROC']}, XLA_FLAGS={variables['XLA_FLAGS'] or '(none)'}"


def median_seconds(fn: Callable[[], object], *, repeats: int = 20, warmup: int = 2) -> float:
    """Median wall time of fn(), blocking on its JAX results; warm-up calls (compilation) excluded."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)
