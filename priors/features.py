"""The feature columns of an adapted task, shared by the classification and regression adapters.

`columns(...)` runs the column-wise steps of `ClassificationAdapter`
(`mothernet/priors/classification_adapter.py`) on a raw x (rows, max_features), zero beyond the used
columns, and every adapter of `priors` calls it (`priors.classification`, `priors.regression`):

1. missing values (off by default; `priors.missing`);
2. categorical columns with probability 0.2: p ~ U(0, 1); each used column with probability p
   becomes rank codes at K - 1 values of random rows, K = 2 with probability 1/2 else round(U(2, n)),
   n = max(round(Gamma(1, 10)), 2) levels (clipped to `max_category_levels` = 64, which changes about
   0.01% of categorical columns); codes permuted with probability 0.7, reversed with probability 0.5;
3. outliers: per non-categorical column mean +- 4 sigma, recomputed on the kept values, then the soft
   clip x <- max(x, lo - log(1 + |x|)), min(x, hi + log(1 + |x|));
4. x standardised over all rows (unbiased std + 1e-6), clipped to +-100;
5. x scaled by max_features / F and zero-padded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from priors import missing, rng
from priors.config import PriorConfig

STD_EPS = 1e-6
CLIP = 100.0


def masked_mean_std(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Column mean and unbiased std over the rows where mask holds (torch_masked_mean / _std), in one
    pass over moments shifted by a row of the data (stable when |mean| >> std)."""
    shift = jnp.where(jnp.isnan(x[0]), 0.0, x[0])
    d = jnp.where(mask, x - shift[None, :], 0.0)
    count = jnp.sum(mask, axis=0).astype(jnp.float32)
    total = jnp.sum(d, axis=0)
    mean_d = total / count
    var = jnp.maximum(jnp.sum(d * d, axis=0) - total * mean_d, 0.0) / (count - 1.0)
    return shift + mean_d, jnp.sqrt(var)


def _sort_columns(values: jax.Array) -> jax.Array:
    """values (L, F) sorted along axis 0 by pairwise ranks (L^2 F compares; XLA's CPU sort is slow)."""
    index = jnp.arange(values.shape[0])
    a, b = values[:, None, :], values[None, :, :]
    before = (b < a) | ((b == a) & (index[None, :, None] < index[:, None, None]))
    rank = jnp.sum(before, axis=1)
    columns = jnp.arange(values.shape[1])[None, :]
    return jnp.zeros_like(values).at[rank, columns].set(values)


def _below(sorted_values: jax.Array, x: jax.Array) -> jax.Array:
    """Per column, the number of entries of `sorted_values` (L, F; ascending, +inf padded, L a power
    of two) strictly below each x (rows, F): a branch-free binary search over the flattened table."""
    length, n_columns = sorted_values.shape
    table = sorted_values.T.reshape(-1)
    base = (jnp.arange(n_columns) * length)[None, :]
    count = jnp.zeros(x.shape, jnp.int32)
    step = length // 2
    while step:
        probe = jnp.take(table, base + count + step - 1, mode="clip")
        count = jnp.where(probe < x, count + step, count)
        step //= 2
    last = jnp.take(table, base + count, mode="clip")  # count < L and the last entry is +inf
    return jnp.where(last < x, count + 1, count)


def _categorical(stream, x, n_features, config: PriorConfig):
    """Turn a random subset of the used columns into rank codes; returns (x, categorical mask).

    The work runs in three conds on the same predicate (skipped when no column is categorical):
    their outputs are materialised, where one fused computation would recompute the random
    boundaries for every comparison that reads them."""
    rows, f_max = x.shape
    levels_max = config.max_category_levels
    table = 1 << (levels_max - 1).bit_length()  # power of two >= levels_max
    streams = rng.split(stream, 10)
    has_categorical = rng.bernoulli(streams[0], config.categorical_probability)
    columns = jnp.arange(f_max)
    chosen = (
        has_categorical
        & (columns < n_features)
        & rng.bernoulli(streams[5], rng.uniform(streams[1]), (f_max,))
    )
    any_chosen = jnp.any(chosen)
    # levels n = max(round(Gamma(1, scale)), 2) (Gamma(1) is exponential); K = 2 or round(U(2, n))
    levels = jnp.round(-jnp.log1p(-rng.uniform(streams[2], (f_max,))) * config.category_levels_scale)
    levels = jnp.maximum(levels, 2.0)
    many = jnp.round(rng.uniform(streams[3], (f_max,), 2.0, levels))
    two = rng.bernoulli(streams[4], config.category_two_levels_probability, (f_max,))
    n_codes = jnp.minimum(jnp.where(two, 2.0, many), levels_max).astype(jnp.int32)
    boundary_rows = rng.randint(streams[6], 0, rows, (table, f_max))
    keep_order = rng.bernoulli(streams[8], config.category_ordered_probability, (f_max,))
    reverse = rng.bernoulli(streams[9], config.category_reversed_probability, (f_max,))

    def boundaries(x, boundary_rows, n_codes):
        # the K - 1 boundary values of a column, +inf beyond
        values = jnp.take_along_axis(x, boundary_rows, axis=0)
        slots = jnp.arange(table)[:, None]
        return jnp.where((slots < n_codes[None, :] - 1) & ~jnp.isnan(values), values, jnp.inf)

    def sort_and_permutations(values, n_codes):
        perms = jax.vmap(lambda s, n: rng.permutation(s, levels_max, n), out_axes=1)(
            rng.split(streams[7], f_max), n_codes
        )
        return _sort_columns(values), perms

    def encode(x, sorted_values, perms, n_codes, keep_order, reverse, chosen):
        # code = number of boundary values strictly below x (the reference's (x > b).sum())
        code = jnp.where(jnp.isnan(x), 0, _below(sorted_values, x))
        code = jnp.where(keep_order[None, :], code, jnp.take_along_axis(perms, code, axis=0))
        code = jnp.where(reverse[None, :], n_codes[None, :] - 1 - code, code)
        return jnp.where(chosen[None, :], code.astype(jnp.float32), x)

    values = lax.cond(
        any_chosen, boundaries, lambda *_: jnp.zeros((table, f_max), x.dtype), x, boundary_rows, n_codes
    )
    sorted_values, perms = lax.cond(
        any_chosen,
        sort_and_permutations,
        lambda *_: (jnp.zeros((table, f_max), x.dtype), jnp.zeros((levels_max, f_max), jnp.int32)),
        values,
        n_codes,
    )
    x = lax.cond(
        any_chosen, encode, lambda x, *_: x, x, sorted_values, perms, n_codes, keep_order, reverse, chosen
    )
    return x, chosen


def _remove_outliers(x, categorical, sigma):
    mean, std = masked_mean_std(x, ~jnp.isnan(x))
    lower, upper = (mean - sigma * std)[None, :], (mean + sigma * std)[None, :]
    kept = (x <= upper) & (x >= lower)
    mean, std = masked_mean_std(x, kept)
    lower, upper = (mean - sigma * std)[None, :], (mean + sigma * std)[None, :]
    soft = jnp.log1p(jnp.abs(x))
    clipped = jnp.minimum(soft + upper, jnp.maximum(lower - soft, x))
    return jnp.where(categorical[None, :], x, clipped)


def _standardise(x):
    mean, std = masked_mean_std(x, ~jnp.isnan(x))
    return jnp.clip((x - mean[None, :]) / (std[None, :] + STD_EPS), -CLIP, CLIP)


def columns(
    k_missing: jax.Array, k_categorical: jax.Array, x: jax.Array, n_features: jax.Array, config: PriorConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Steps 1-5 on x (rows, max_features), raw and finite, zero beyond `n_features`.

    Returns (x, categorical, finite): x with injected missing entries kept as they were written (NaN
    or a sentinel); categorical (max_features,) bool; finite: () bool, every entry finite or an
    injected missing value (where it is False the adapter flags the dataset invalid)."""
    f_max = config.max_features
    used = jnp.arange(f_max) < n_features
    if config.missing_values:
        x = missing.inject(k_missing, x, n_features, config)
        injected = jnp.isnan(x)
    x, categorical = _categorical(k_categorical, x, n_features, config)
    x = _remove_outliers(x, categorical, config.outlier_sigma)
    x = _standardise(x)
    x = jnp.where(used[None, :], x * (f_max / n_features.astype(jnp.float32)), 0.0)
    finite = jnp.isfinite(x) | injected if config.missing_values else jnp.isfinite(x)
    return x, categorical, jnp.all(finite)
