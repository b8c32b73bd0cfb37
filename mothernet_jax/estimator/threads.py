"""The estimators' own threads: NumPy, SciPy and scikit-learn work inside `fit` and `predict` runs
under a `threadpoolctl` limit on the BLAS and OpenMP pools, restored when the call returns.

Why: between its jitted calls an estimator does NumPy and scikit-learn work (the refitted read-out's
L-BFGS, the children's hidden features, the encoder, the predictor's products), small matrix
products on which a multi-threaded BLAS spends most of its time waiting for and spinning its
threads. Where XLA's pool or another process holds the cores, it loses far more: a 26-class fit of
1,000 x 10 rows took 17.6 s with the BLAS at its default two threads on a loaded 2-core machine
and 0.38 s with one (docs/FAST_DEFAULTS.md, "Threads"). So the estimators take `n_jobs` as
scikit-learn's estimators do: None (the default) is one thread, -1 every core, -2 every core but
one, a positive integer that many. The limit holds inside the estimator's call only; a user's own
NumPy keeps its threads.

XLA's CPU pool is not theirs to set: it is sized once, when JAX starts its backend (one thread per
core, or `PJRT_NPROC`; `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false` keeps its matrix products
on one thread). Its work and the NumPy work never overlap in a fit (each jitted call is waited for
before the NumPy that reads it), so the two pools do not fight.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator


def check_n_jobs(n_jobs) -> None:
    """ValueError, in one line, unless n_jobs is None or a nonzero integer (NumPy's too)."""
    if n_jobs is None:
        return
    if not isinstance(n_jobs, numbers.Integral) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a nonzero integer (-1: every core), got {n_jobs!r}")


def thread_count(n_jobs, cpus: int | None = None) -> int:
    """The threads `n_jobs` stands for on a machine of `cpus` cores (default: this one's): None 1,
    a positive n that n, a negative n cpus + 1 + n (-1: every core), at least 1."""
    check_n_jobs(n_jobs)
    if n_jobs is None:
        return 1
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    return int(n_jobs) if n_jobs > 0 else max(1, cpus + 1 + int(n_jobs))


@contextlib.contextmanager
def own_threads(n_jobs) -> Iterator[int]:
    """Inside: the BLAS and OpenMP pools of this process at `thread_count(n_jobs)` threads; after:
    each as it was (threadpoolctl restores them, on an error too). Yields the thread count."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    threads = thread_count(n_jobs)
    with threadpool_limits(limits=threads):
        yield threads
