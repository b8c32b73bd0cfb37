"""A counter-based random generator for the prior: a pure function of a `jax.random` key.

Why not `jax.random` throughout: the prior makes a few hundred scalar draws and a few large arrays
per dataset. On CPU every `jax.random` call inlines an unrolled threefry graph (30 scalar draws take
about 4 s to compile, 5 gamma draws 6 s, on a 2-core CPU), and threefry makes about 73 M normals/s,
which alone would hold the prior below the reference's 124 datasets/s. Here a key becomes two
uint32 words once (`from_key`, one threefry call); every draw then hashes a counter with those words
(two rounds of the MurmurHash3 finaliser, a bijection with full avalanche), about 330 M normals/s,
and a scalar draw is a handful of integer ops. Sub-streams (`fold`, `split`) are hashes of the
parent at counters >= 2^31, which array draws never reach (arrays hold < 2^31 numbers).

A stream is a (2,) uint32 array (vmappable like a key); draw each stream once, fold it for more.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

_CHILD = 0x80000000  # counters at and above this derive sub-streams
_GAMMA_CANDIDATES = 6  # Marsaglia-Tsang proposals; all rejected with probability < 1e-8


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """float32 matrix product at full precision: on GPUs the default would round the operands to
    TF32 (10 mantissa bits), which would quantise features and break the GP's Cholesky factor."""
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def _fmix32(h: jax.Array) -> jax.Array:
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _hash(stream: jax.Array, counter: jax.Array) -> jax.Array:
    return _fmix32(_fmix32(counter + stream[0]) ^ stream[1])


def from_key(key: jax.Array) -> jax.Array:
    """The stream of a `jax.random` key (typed or raw)."""
    return jax.random.bits(key, (2,), jnp.uint32)


def fold(stream: jax.Array, tag) -> jax.Array:
    """A sub-stream named by an integer `tag` (may be traced, < 2^30)."""
    counter = jnp.uint32(_CHILD) + 2 * jnp.asarray(tag).astype(jnp.uint32)
    return _hash(stream, jnp.stack([counter, counter + 1]))


def split(stream: jax.Array, n: int) -> jax.Array:
    """n sub-streams, (n, 2)."""
    counter = jnp.uint32(_CHILD) + lax.iota(jnp.uint32, 2 * n)
    return _hash(stream, counter).reshape(n, 2)


def bits(stream: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """uint32 random bits of `shape`."""
    return bits_at(stream, lax.iota(jnp.uint32, math.prod(shape)).reshape(shape))


def bits_at(stream: jax.Array, counter: jax.Array) -> jax.Array:
    """uint32 random bits at explicit counters (< 2^31): the same counter gives the same bits, so a
    permuted counter array draws a permuted array."""
    return _hash(stream, counter.astype(jnp.uint32))


def _to_uniform(bits: jax.Array) -> jax.Array:
    return (bits >> 8).astype(jnp.float32) * (2.0**-24)


def _to_normal(bits: jax.Array) -> jax.Array:
    # inverse CDF at 2^23 equally spaced, symmetric probabilities: (k + 1/2) 2^-22 - 1 is exact in
    # float32 and never +-1, so |z| <= 5.3, like `jax.random.normal` in float32
    v = ((bits >> 9).astype(jnp.float32) + 0.5) * (2.0**-22) - 1.0
    return jnp.float32(math.sqrt(2.0)) * lax.erf_inv(v)


def uniform(stream: jax.Array, shape: tuple[int, ...] = (), low=0.0, high=1.0) -> jax.Array:
    """float32 U[low, high) (24 random bits)."""
    return low + _to_uniform(bits(stream, shape)) * (jnp.asarray(high, jnp.float32) - low)


def uniform_at(stream: jax.Array, counter: jax.Array) -> jax.Array:
    """float32 U[0, 1) at explicit counters (see `bits_at`)."""
    return _to_uniform(bits_at(stream, counter))


def normal(stream: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """float32 N(0, 1)."""
    return _to_normal(bits(stream, shape))


def normal_at(stream: jax.Array, counter: jax.Array) -> jax.Array:
    """float32 N(0, 1) at explicit counters (see `bits_at`)."""
    return _to_normal(bits_at(stream, counter))


def randint(stream: jax.Array, low, high, shape: tuple[int, ...] = ()) -> jax.Array:
    """int32 uniform on [low, high) (numpy's `randint`); `low` where high <= low (`safe_randint`)."""
    low = jnp.asarray(low, jnp.int32)
    span = jnp.maximum(jnp.asarray(high, jnp.int32) - low, 1)
    u = uniform(stream, shape)
    return low + jnp.minimum((u * span.astype(jnp.float32)).astype(jnp.int32), span - 1)


def bernoulli(stream: jax.Array, p, shape: tuple[int, ...] = ()) -> jax.Array:
    return uniform(stream, shape) < p


def log_gamma(stream: jax.Array, alpha, shape: tuple[int, ...] = ()) -> jax.Array:
    """log of Gamma(alpha, 1) draws (float32, alpha > 0), by Marsaglia and Tsang (2000) with a fixed
    number of proposals; alpha < 1 uses Gamma(alpha + 1) * U^(1 / alpha), kept in log space so that
    small alpha does not underflow."""
    alpha = jnp.broadcast_to(jnp.asarray(alpha, jnp.float32), shape)
    boosted = alpha < 1.0
    a = jnp.where(boosted, alpha + 1.0, alpha)
    d = a - 1.0 / 3.0
    c = lax.rsqrt(9.0 * d)
    z = normal(fold(stream, 0), (_GAMMA_CANDIDATES, *shape))
    u = uniform(fold(stream, 1), (_GAMMA_CANDIDATES, *shape))
    v = (1.0 + c[None] * z) ** 3
    safe_v = jnp.where(v > 0, v, 1.0)
    accept = (v > 0) & (jnp.log1p(-u) < 0.5 * z * z + d[None] - d[None] * safe_v + d[None] * jnp.log(safe_v))
    chosen = safe_v[-1]
    for i in reversed(range(_GAMMA_CANDIDATES - 1)):
        chosen = jnp.where(accept[i], safe_v[i], chosen)
    log_value = jnp.log(d) + jnp.log(chosen)
    boost = jnp.log1p(-uniform(fold(stream, 2), shape)) / alpha
    return jnp.where(boosted, log_value + boost, log_value)


def gamma(stream: jax.Array, alpha, shape: tuple[int, ...] = ()) -> jax.Array:
    """Gamma(alpha, 1) draws (float32)."""
    return jnp.exp(log_gamma(stream, alpha, shape))


def beta(stream: jax.Array, a, b, shape: tuple[int, ...] = ()) -> jax.Array:
    """Beta(a, b) = Ga / (Ga + Gb), computed from log-gammas."""
    alpha = jnp.stack([jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)]).astype(jnp.float32)
    log_ab = log_gamma(stream, alpha, (2, *shape))
    return jax.nn.sigmoid(log_ab[0] - log_ab[1])


def categorical(stream: jax.Array, logits: jax.Array) -> jax.Array:
    """Index drawn with probabilities softmax(logits) over the last axis (Gumbel max), int32."""
    u = uniform(stream, logits.shape)
    gumbel = -jnp.log(-jnp.log1p(-u) + 1e-30)
    return jnp.argmax(logits + gumbel, axis=-1).astype(jnp.int32)


def permutation(stream: jax.Array, size: int, n_active) -> jax.Array:
    """A permutation of 0..size-1, uniformly random on 0..n_active-1 and fixing the rest (int32).

    Ranks of random scores by pairwise comparison (size^2 work, no sort: XLA's CPU sort is slow);
    meant for small sizes (category levels, classes)."""
    slots = jnp.arange(size)
    active = slots < n_active
    u = uniform(stream, (size,))
    before = (u[None, :] < u[:, None]) | ((u[None, :] == u[:, None]) & (slots[None, :] < slots[:, None]))
    rank = jnp.sum(before & active[None, :], axis=1)
    return jnp.where(active, rank, slots).astype(jnp.int32)
