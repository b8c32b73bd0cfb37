"""The Gaussian-process prior: x ~ N(0, I), y ~ N(0, s exp(-|xi - xj|^2 / (2 l^2)) + noise I).

s, l ~ log_uniform(1e-5, 8); noise = meta_choice(1e-5, 1e-4, 1e-2) (`mothernet/priors/fast_gp.py`
draws these per batch, here per dataset). y is an exact sample: the Cholesky factor of the kernel
times a standard normal vector. In float32 a smooth kernel on 1152 rows is numerically singular far
above the smallest noise level, so `gp_jitter * s` is added to the diagonal (1e-5 relative by
default, 1e-5 s of extra variance, below the reference's smallest noise for s < 1), and if the
factor still fails the jitter grows tenfold, up to three more times (the reference retries a failed
sample the same way); a dataset whose factor never succeeds is flagged invalid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from priors import distributions as D
from priors import rng
from priors.config import PriorConfig

_RETRIES = 4  # jitter x1, x10, x100, x1000


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
    gram = jnp.matmul(x, x.T, precision=lax.Precision.HIGHEST)
    sq_dist = jnp.maximum(sq_norm[:, None] + sq_norm[None, :] - 2.0 * gram, 0.0)
    eye = jnp.eye(rows, dtype=bool)
    sq_dist = jnp.where(eye, 0.0, sq_dist)  # exact zeros: the diagonal must stay s for tiny l
    kernel = outputscale * jnp.exp(-sq_dist / (2.0 * lengthscale**2))

    def attempt(state):
        tries, _ = state
        jitter = noise + config.gp_jitter * outputscale * 10.0 ** tries.astype(jnp.float32)
        factor = jnp.linalg.cholesky(jnp.where(eye, kernel + jitter, kernel))
        return tries + 1, factor

    def failed(state):
        tries, factor = state
        return (tries < _RETRIES) & ~jnp.all(jnp.isfinite(jnp.diagonal(factor)))

    nan_factor = jnp.full((rows, rows), jnp.nan, jnp.float32)
    _, factor = lax.while_loop(failed, attempt, attempt((jnp.int32(0), nan_factor)))
    y = factor @ rng.normal(k_y, (rows,))
    return x, y
