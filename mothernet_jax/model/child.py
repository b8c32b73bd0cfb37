"""The generated child applied in JAX: `child_logits`, `predict_proba`, `predict_regression` (jit,
vmap and grad them). The child and its arithmetic are `mothernet_jax.runtime.child`'s (the same
functions run with NumPy in an exported predictor); this module only calls them with jax.numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mothernet_jax.runtime.child import (
    DEFAULT_TEMPERATURE,
    Child,
    check_columns,
    check_task,
    child_outputs,
    standardise_rows,
)


def child_logits(child: Child, x):
    """Logits of the child on raw rows. x: (n, d) float (NaN allowed) -> (n, k) float32.
    ValueError when x has not the child's d columns."""
    x = jnp.asarray(x, jnp.float32)
    check_columns(child, x)
    z = standardise_rows(x, child.mean, child.std, jnp)
    return child_outputs(child, z, jnp)


def predict_proba(child: Child, x, temperature: float = DEFAULT_TEMPERATURE):
    """Class probabilities softmax(logits / temperature). x: (n, d) -> (n, k). ValueError for a
    regression child (one output unit)."""
    check_task(child, "classification")
    return jax.nn.softmax(child_logits(child, x) / temperature, axis=-1)


def predict_regression(child: Child, x):
    """Predictions of a regression child (one output unit, in the target's units as `generate`
    returns it). x: (n, d) raw rows (NaN allowed) -> (n,) float32. ValueError for a classifier's
    child (more than one output)."""
    check_task(child, "regression")
    return child_logits(child, x)[..., 0]
