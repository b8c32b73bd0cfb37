"""Test set-up: eight CPU devices for the data-parallel tests, rank promotion raises, fresh keys.

The device count must be set before JAX initialises its backends, so it is set here, at import
time of the test session, and never overrides a device count the caller chose in XLA_FLAGS. It is
this process's setting: a test's subprocess that needs devices sets its own
(`train_helpers.subprocess_env`).
"""

import itertools
import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"
DATASETS = SHARED / "datasets"
PRIOR_REFERENCE = SHARED / "prior_reference"

_seeds = itertools.count()


@pytest.fixture
def getkey():
    """A function returning a fresh, never reused PRNG key on each call."""
    base = jax.random.key(0)
    return lambda: jax.random.fold_in(base, next(_seeds))


@pytest.fixture
def highest_precision():
    """Run the test body with float32 matmuls at full precision (reference parity)."""
    with jax.default_matmul_precision("highest"):
        yield
