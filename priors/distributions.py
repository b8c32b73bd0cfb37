"""The meta-distributions of the reference prior (`mothernet/distributions.py`), over `priors.rng` streams.

Rounding follows the reference: Python's `round` (half to even, as `jnp.round`), so
`uniform_int(2, 10) = round(U(2, 10))` gives each endpoint half the probability of an inner value.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from priors import rng
from priors.config import LogUniform, MetaBeta, MetaGamma


def log_uniform(stream: jax.Array, dists: tuple[LogUniform, ...]) -> jax.Array:
    """One draw from each of `dists` (vectorised), (len(dists),) float32: `exp(U(ln low, ln high))`."""
    low = jnp.array([math.log(d.low) for d in dists], jnp.float32)
    high = jnp.array([math.log(d.high) for d in dists], jnp.float32)
    return jnp.exp(rng.uniform(stream, (len(dists),), low, high))


def uniform_int(stream: jax.Array, low, high, shape: tuple[int, ...] = ()) -> jax.Array:
    """`round(U(low, high))` (half to even): the reference's `uniform_int_sampler_f`, int32."""
    return jnp.round(rng.uniform(stream, shape, low, high)).astype(jnp.int32)


def meta_gamma(stream: jax.Array, dists: tuple[MetaGamma, ...]) -> jax.Array:
    """One draw from each of `dists` (vectorised), (len(dists),) int32:
    `lower_bound + round(Gamma(e^a, s / e^a))`, a ~ U(0, ln max_alpha), s ~ U(0, max_scale)."""
    streams = rng.split(stream, 3)
    n = len(dists)
    log_max_alpha = jnp.array([math.log(d.max_alpha) for d in dists], jnp.float32)
    max_scale = jnp.array([d.max_scale for d in dists], jnp.float32)
    lower_bound = jnp.array([d.lower_bound for d in dists], jnp.float32)
    shape = jnp.exp(rng.uniform(streams[0], (n,)) * log_max_alpha)
    scale = rng.uniform(streams[1], (n,)) * max_scale
    value = lower_bound + jnp.round(rng.gamma(streams[2], shape, (n,)) * (scale / shape))
    return value.astype(jnp.int32)


def meta_beta(stream: jax.Array, dist: MetaBeta) -> jax.Array:
    """`scale * Beta(b, k)`, b, k ~ U(low, high)."""
    streams = rng.split(stream, 3)
    b = rng.uniform(streams[0], (), dist.low, dist.high)
    k = rng.uniform(streams[1], (), dist.low, dist.high)
    return dist.scale * rng.beta(streams[2], b, k)


def meta_choice(stream: jax.Array, n_choices: int, low: float = -3.0, high: float = 5.0) -> jax.Array:
    """Index into n choices: logits [1, w_2, .., w_n], w ~ U(low, high), one categorical draw."""
    streams = rng.split(stream, 2)
    weights = rng.uniform(streams[0], (n_choices - 1,), low, high)
    logits = jnp.concatenate([jnp.ones((1,), jnp.float32), weights])
    return rng.categorical(streams[1], logits)


def meta_bool(stream: jax.Array, n: int, low: float = -3.0, high: float = 5.0) -> jax.Array:
    """n independent meta_choice draws over [True, False] (vectorised), (n,) bool: True with
    probability softmax([1, w])[0] = sigmoid(1 - w), w ~ U(low, high)."""
    streams = rng.split(stream, 2)
    weight = rng.uniform(streams[0], (n,), low, high)
    return rng.uniform(streams[1], (n,)) < jax.nn.sigmoid(1.0 - weight)
