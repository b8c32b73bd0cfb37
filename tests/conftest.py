"""Test set-up: eight CPU devices for the data-parallel tests, rank promotion raises, a persistent
compilation cache, fresh keys.

The device count must be set before JAX initialises its backends, so it is set here, at import
time of the test session, and never overrides a device count the caller chose in XLA_FLAGS. It is
this process's setting: a test's subprocess that needs devices sets its own
(`train_helpers.subprocess_env`).

Every compiled program goes to a persistent compilation cache (`JAX_COMPILATION_CACHE_DIR`, by
default a folder of this user's under the temporary directory), so a second run of the suite skips
most of XLA's work; the variables are set in the environment, so the tests' subprocesses (the demo,
the notebooks, the benchmarks) use the same cache.
"""

import itertools
import os
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"mothernet-jax-tests-{os.getuid()}")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)
jax.config.update(
    "jax_persistent_cache_min_entry_size_bytes", int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"])
)

@pytest.fixture
def getkey(request):
    """A function returning a fresh PRNG key on each call. Each test draws its own sequence, seeded
    by its name, so that its keys are the same whether it runs alone, in its folder or in the whole
    suite (and whichever tests the markers leave out)."""
    base = jax.random.key(zlib.crc32(request.node.nodeid.encode()))
    draws = itertools.count()
    return lambda: jax.random.fold_in(base, next(draws))


@pytest.fixture(scope="session")
def tiny_weights():
    """A random `tiny` classification model (seed 1), shared by the estimator tests; made when a
    test first asks for it, not at import."""
    from estimator_helpers import random_weights

    import mothernet_jax as mn

    return random_weights(mn.preset("tiny"), 1)


@pytest.fixture(scope="session")
def tiny_regression_weights():
    """A random `tiny-regression` model (seed 0), shared like `tiny_weights`."""
    from estimator_helpers import random_weights

    import mothernet_jax as mn

    return random_weights(mn.preset("tiny-regression"), 0)


@pytest.fixture
def highest_precision():
    """Run the test body with float32 matmuls at full precision (reference parity)."""
    with jax.default_matmul_precision("highest"):
        yield
