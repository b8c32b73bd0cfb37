"""The Gaussian-process prior: x ~ N(0, I), y ~ N(0, s exp(-|xi - xj|^2 / (2 l^2)) + noise I).

s, l ~ log_uniform(1e-5, 8); noise = meta_choice(1e-5, 1e-4, 1e-2) (`mothernet/priors/fast_gp.py`
draws these per batch, here per dataset). y is an exact sample: the Cholesky factor of the kernel
times a standard normal vector. In float32 a smooth kernel on 1152 rows can be numerically singular
above the smallest noise level (s = 8, l = 8 and 1 or 2 features need a relative jitter of 1e-4),
so the factorisation first adds `gp_jitter * s` (1e-5 s) to the diagonal and, where the factor is
not finite, retries with ten and a hundred times more jitter (the reference retries a failed sample
too); a dataset whose factor still fails is flagged invalid.

The factor is computed by recursive halving with matrix products (`cholesky`): on CPU that is tens
of times faster than one LAPACK call for the whole matrix (`jnp.linalg.cholesky`), whose threads
spin when the cores are shared.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from priors import distributions as D
from priors import rng
from priors.config import PriorConfig

_RETRIES = 3  # jitter x1, x10, x100
_BASE = 72  # diagonal blocks at most this size go to LAPACK
_TRIANGULAR_BASE = 32  # and triangular inverses at most this size


def _triangular_inverse(lower: jax.Array) -> jax.Array:
    n = lower.shape[0]
    if n <= _TRIANGULAR_BASE:
        return jax.scipy.linalg.solve_triangular(lower, jnp.eye(n, dtype=lower.dtype), lower=True)
    h = n // 2
    top, bottom = _triangular_inverse(lower[:h, :h]), _triangular_inverse(lower[h:, h:])
    corner = -rng.matmul(bottom, rng.matmul(lower[h:, :h], top))
    return jnp.block([[top, jnp.zeros((h, n - h), lower.dtype)], [corner, bottom]])


def cholesky(a: jax.Array) -> jax.Array:
    """Lower Cholesky factor of a symmetric positive-definite (n, n) matrix (NaN where it is not
    numerically positive definite), by recursive halving: the work is matrix products, and LAPACK
    only sees blocks of at most 72 rows."""
    n = a.shape[0]
    if n <= _BASE:
        return jnp.linalg.cholesky(a)
    h = n // 2
    top = cholesky(a[:h, :h])
    left = rng.matmul(a[h:, :h], _triangular_inverse(top).T)
    bottom = cholesky(a[h:, h:] - rng.matmul(left, left.T))
    return jnp.block([[top, jnp.zeros((h, n - h), a.dtype)], [left, bottom]])


def sample_raw(stream: jax.Array, config: PriorConfig, n_features: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One GP dataset. Returns x: (n_rows, max_features) float32 (zero beyond `n_features`), y: (n_rows,)."""
    rows, f_max = config.n_rows, config.max_features
    k_x, k_scales, k_noise, k_y = rng.split(stream, 4)
    x = rng.normal(k_x, (rows, f_max))
    x = jnp.where(jnp.arange(f_max) < n_features, x, 0.0)
    outputscale, lengthscale = D.log_uniform(k_scales, (config.gp_outputscale, config.gp_lengthscale))
    noise_index = D.meta_choice(
        k_noise, len(config.gp_noise_values), config.choice_weight_low, config.choice_weight_high
    )
    noise = jnp.asarray(config.gp_noise_values, jnp.float32)[noise_index]

    sq_norm = jnp.sum(x * x, axis=1)
    gram = rng.matmul(x, x.T)
    sq_dist = jnp.maximum(sq_norm[:, None] + sq_norm[None, :] - 2.0 * gram, 0.0)
    eye = jnp.eye(rows, dtype=bool)
    sq_dist = jnp.where(eye, 0.0, sq_dist)  # exact zeros: the diagonal must stay s for tiny l
    kernel = outputscale * jnp.exp(-sq_dist / (2.0 * lengthscale**2))

    def attempt(state):
        tries, _ = state
        jitter = noise + config.gp_jitter * outputscale * 10.0 ** tries.astype(jnp.float32)
        return tries + 1, cholesky(jnp.where(eye, kernel + jitter, kernel))

    def failed(state):
        tries, factor = state
        return (tries == 0) | ((tries < _RETRIES) & ~jnp.all(jnp.isfinite(jnp.diagonal(factor))))

    # one copy of the factorisation in the program (compile time): the first try runs in the loop
    nan = jnp.full((rows, rows), jnp.nan, jnp.float32)
    _, factor = lax.while_loop(failed, attempt, (jnp.int32(0), nan))
    y = rng.matmul(factor, rng.normal(k_y, (rows,)))
    return x, y
