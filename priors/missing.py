"""Missing-value injection of the classification adapter (off by default, as in the reference).

Follows `ClassificationAdapter.__call__` of `mothernet/priors/classification_adapter.py`: when any
missing-value probability is positive, half the datasets get missing values: "for no reason" (each
entry with probability U * nan_prob_no_reason), "for a reason" (entries in the lower part of a
column's 20-level rank code, cut at U * 20 * nan_prob_no_reason * U' levels above the middle: the
reference uses the no-reason probability there, so with it at zero the lower half of every column
goes missing), and "for an unknown reason" (one of the two, by `nan_prob_unknown_reason_reason_prior`).
The value written is NaN with probability `set_value_to_nan`, else one of -999, 0, 1, 999. Only the
used feature columns are touched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from priors import rng
from priors.config import PriorConfig

_LEVELS = 20  # rank levels of "missing for a reason"


def _missing_value(stream: jax.Array, config: PriorConfig) -> jax.Array:
    k_nan, k_choice = rng.split(stream, 2)
    choice = jnp.array([-999.0, 0.0, 1.0, 999.0], jnp.float32)[rng.randint(k_choice, 0, 4)]
    return jnp.where(rng.bernoulli(k_nan, config.set_value_to_nan), jnp.nan, choice)


def _for_no_reason(stream: jax.Array, shape, config: PriorConfig) -> jax.Array:
    k_rate, k_entries = rng.split(stream, 2)
    rate = rng.uniform(k_rate) * config.nan_prob_no_reason
    return rng.uniform(k_entries, shape) < rate


def _for_a_reason(stream: jax.Array, x: jax.Array, config: PriorConfig) -> jax.Array:
    k_rows, k_a, k_b = rng.split(stream, 3)
    rows = x.shape[0]
    boundary_rows = rng.randint(k_rows, 0, rows, (_LEVELS - 1, x.shape[1]))
    boundaries = jnp.take_along_axis(x, boundary_rows, axis=0)  # (19, F)
    level = jnp.sum(x[:, None, :] > boundaries[None, :, :], axis=1) - _LEVELS // 2
    cut = rng.uniform(k_a) * _LEVELS * config.nan_prob_no_reason * rng.uniform(k_b)
    return level < cut


def inject(stream: jax.Array, x: jax.Array, n_features: jax.Array, config: PriorConfig) -> jax.Array:
    """x: (rows, max_features) with the used columns first; returns x with missing entries."""
    streams = rng.split(stream, 10)
    used = jnp.arange(x.shape[1]) < n_features
    active = rng.bernoulli(streams[0], 0.5)

    def apply(x, mask, value_stream):
        return jnp.where(mask & used[None, :], _missing_value(value_stream, config), x)

    no_reason = active & rng.bernoulli(streams[1], config.nan_prob_no_reason)
    x = apply(x, no_reason & _for_no_reason(streams[2], x.shape, config), streams[3])
    if config.nan_prob_a_reason > 0:
        a_reason = active & rng.bernoulli(streams[4], 0.5)
        x = apply(x, a_reason & _for_a_reason(streams[5], x, config), streams[6])
    if config.nan_prob_unknown_reason > 0:
        as_no_reason = rng.bernoulli(streams[7], config.nan_prob_unknown_reason_reason_prior)
        mask = jnp.where(
            as_no_reason, _for_no_reason(streams[8], x.shape, config), _for_a_reason(streams[8], x, config)
        )
        x = apply(x, active & mask, streams[9])
    return x
