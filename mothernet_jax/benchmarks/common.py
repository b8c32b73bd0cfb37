"""Shared helpers of the benchmarks: what ran where, and honest timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def device_line() -> str:
    """'backend=gpu device=NVIDIA H100 80GB HBM3 x1 jax=0.11.0'."""
    devices = jax.devices()
    return (
        f"backend={jax.default_backend()} device={devices[0].device_kind} x{len(devices)} "
        f"jax={jax.__version__}"
    )


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
