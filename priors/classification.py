"""The classification adapter: a raw regression dataset (x, y) becomes a classification task.

Follows `ClassificationAdapter` (`mothernet/priors/classification_adapter.py`), per dataset:

1. missing values (off by default; `priors.missing`);
2. categorical columns with probability 0.2: p ~ U(0, 1); each used column with probability p
   becomes rank codes at K - 1 values of random rows, K = 2 with probability 1/2 else round(U(2, n)),
   n = max(round(Gamma(1, 10)), 2) levels (clipped to `max_category_levels` = 64, which changes about
   0.01% of categorical columns); codes permuted with probability 0.7, reversed with probability 0.5;
3. outliers: per non-categorical column mean +- 4 sigma, recomputed on the kept values, then the soft
   clip x <- max(x, lo - log(1 + |x|)), min(x, hi + log(1 + |x|));
4. x and y standardised over all rows (unbiased std + 1e-6), clipped to +-100 (y's standardisation
   is strictly increasing and, on 1152 rows, never reaches the clip, so classes are taken on raw y);
5. classes: K0 = round(U(2, max_classes)); K = 2 with probability 1/2 else round(U(2, K0)); class =
   the number of K - 1 random-row values of y that y exceeds; the K classes permuted, then reversed
   with probability 1/2;
6. x scaled by max_features / F and zero-padded;
7. train rows (< split) and test rows must hold the same class set with at least 2 classes: the
   rows are rearranged at random up to `compatibility_tries` - 1 times, else the dataset is invalid;
8. labels compacted to 0..K' - 1 and rotated by a random shift.

Rows of a raw dataset are exchangeable, so a "reshuffle" only decides which rows are training rows,
and steps 5 and 7, which read y alone, run first: the arrangement is applied to the raw rows, and
the column-wise steps 1-4 and 6 follow (the same distribution, fewer passes over x). An invalid
dataset (no compatible arrangement, or a non-finite value: the reference's -100 labels) keeps its x
(zeros if not finite) and gets labels 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from priors import distributions as D
from priors import missing, rng
from priors.config import PriorConfig

_STD_EPS = 1e-6
_CLIP = 100.0


class Adapted(NamedTuple):
    x: jax.Array  # (rows, max_features) float32
    y: jax.Array  # (rows,) int32 in 0..max_classes-1
    valid: jax.Array  # bool
    n_classes: jax.Array  # int32
    categorical: jax.Array  # (max_features,) bool


def _masked_mean_std(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
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
    mean, std = _masked_mean_std(x, ~jnp.isnan(x))
    lower, upper = (mean - sigma * std)[None, :], (mean + sigma * std)[None, :]
    kept = (x <= upper) & (x >= lower)
    mean, std = _masked_mean_std(x, kept)
    lower, upper = (mean - sigma * std)[None, :], (mean + sigma * std)[None, :]
    soft = jnp.log1p(jnp.abs(x))
    clipped = jnp.minimum(soft + upper, jnp.maximum(lower - soft, x))
    return jnp.where(categorical[None, :], x, clipped)


def _standardise(x):
    mean, std = _masked_mean_std(x, ~jnp.isnan(x))
    return jnp.clip((x - mean[None, :]) / (std[None, :] + _STD_EPS), -_CLIP, _CLIP)


def _assign_classes(stream, y, config: PriorConfig):
    k_k0, k_two, k_k, k_rows, k_ordered, k_perm, k_reverse = rng.split(stream, 7)
    n_max = config.max_classes
    k0 = D.uniform_int(k_k0, 2, n_max)
    two = rng.bernoulli(k_two, config.two_class_probability)
    n_classes = jnp.where(two, 2, D.uniform_int(k_k, 2.0, k0.astype(jnp.float32)))
    boundaries = y[rng.randint(k_rows, 0, y.shape[0], (n_max - 1,))]
    boundaries = jnp.where(jnp.arange(n_max - 1) < n_classes - 1, boundaries, jnp.inf)
    classes = jnp.sum(y[:, None] > boundaries[None, :], axis=1).astype(jnp.int32)
    perm = rng.permutation(k_perm, n_max, n_classes)
    ordered = rng.bernoulli(k_ordered, config.ordered_classes_probability)
    classes = jnp.where(ordered, classes, perm[classes])
    reverse = rng.bernoulli(k_reverse, config.reversed_classes_probability)
    return jnp.where(reverse, n_classes - 1 - classes, classes)


def _random_subsets(stream, n_subsets: int, rows: int, size) -> jax.Array:
    """(n_subsets, rows) bool, each row a uniformly random subset of exactly `size` rows: the rows
    whose random key is among the `size` smallest, the cut found by bisection (no sort)."""
    index_bits = max(1, (rows - 1).bit_length())
    if index_bits > 16:
        raise ValueError(f"n_rows = {rows} is too large for the train/test reshuffle")
    random_part = rng.bits(stream, (n_subsets, rows)) & jnp.uint32(~((1 << index_bits) - 1) & 0xFFFFFFFF)
    keys = random_part | lax.broadcasted_iota(jnp.uint32, (n_subsets, rows), 1)  # distinct keys

    def bisect(bit, cut):
        candidate = cut | (jnp.uint32(1) << (31 - bit).astype(jnp.uint32))
        below = jnp.sum(keys < candidate[:, None], axis=1)
        return jnp.where(below < size, candidate, cut)

    cut = lax.fori_loop(0, 32, bisect, jnp.zeros((n_subsets,), jnp.uint32))
    return (keys <= cut[:, None]) & (size > 0)


def _compatible(train, one_hot):
    """train (tries, rows) bool, one_hot (rows, K) -> (tries,) bool: the same class set on both
    sides of the split, at least two classes."""
    in_train = rng.matmul(train.astype(jnp.float32), one_hot)  # class counts
    in_test = jnp.sum(one_hot, axis=0)[None, :] - in_train
    return jnp.all((in_train > 0) == (in_test > 0), axis=1) & (jnp.sum(in_train > 0, axis=1) > 1)


def _compatible_arrangement(stream, classes, split, config: PriorConfig):
    """The first of `compatibility_tries` arrangements (the given order, then random ones) whose
    training rows (< split) and test rows hold the same class set of >= 2 classes.

    Returns (train, found, index): train (rows,) bool marks the rows that go to the training part;
    index 0 is the given order. The random arrangements are only drawn when the given one fails."""
    rows = classes.shape[0]
    given = jnp.arange(rows) < split
    one_hot = (classes[:, None] == jnp.arange(config.max_classes)[None, :]).astype(jnp.float32)
    given_ok = _compatible(given[None, :], one_hot)[0]
    if config.compatibility_tries == 1:
        return given, given_ok, jnp.int32(0)

    def reshuffle(_):
        subsets = _random_subsets(stream, config.compatibility_tries - 1, rows, split)
        ok = _compatible(subsets, one_hot)
        first = jnp.argmax(ok)
        return subsets[first], ok[first], (first + 1).astype(jnp.int32)

    return lax.cond(given_ok, lambda _: (given, given_ok, jnp.int32(0)), reshuffle, None)


def _arrange(train: jax.Array) -> jax.Array:
    """A row order that puts the `train` rows first, each part in its original order."""
    n_train = jnp.sum(train)
    position = jnp.where(train, jnp.cumsum(train) - 1, n_train + jnp.cumsum(~train) - 1)
    return jnp.zeros_like(position).at[position].set(jnp.arange(train.shape[0], dtype=position.dtype))


def adapt(
    stream: jax.Array,
    x: jax.Array,
    y: jax.Array,
    n_features: jax.Array,
    raw_ok: jax.Array,
    split: jax.Array,
    config: PriorConfig,
) -> Adapted:
    """Turn a raw dataset into a task. x: (rows, max_features) raw features, zero beyond
    `n_features`; y: (rows,) raw target; raw_ok: False marks a raw dataset already known to be bad;
    split: rows < split are training rows."""
    k_missing, k_categorical, k_classes, k_arrange, k_shift = rng.split(stream, 5)
    f_max = config.max_features
    used = jnp.arange(f_max) < n_features
    raw_ok = raw_ok & jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(y))
    x = jnp.where(raw_ok, x, 0.0)
    y = jnp.where(raw_ok, y, 0.0)

    # Classes first: they depend on y alone (its standardisation is monotone, so ranks are taken on
    # the raw values), and so does the arrangement; the rows are then arranged while x is still a
    # materialised input (a gather fused with the steps below would recompute them per row).
    classes = _assign_classes(k_classes, y, config)
    train, compatible, first = _compatible_arrangement(k_arrange, classes, split, config)

    def rearrange(x, classes):
        order = _arrange(train)
        return x[order], classes[order]

    x, classes = lax.cond(first > 0, rearrange, lambda x, classes: (x, classes), x, classes)

    if config.missing_values:
        x = missing.inject(k_missing, x, n_features, config)
        injected = jnp.isnan(x)
    x, categorical = _categorical(k_categorical, x, n_features, config)
    x = _remove_outliers(x, categorical, config.outlier_sigma)
    x = _standardise(x)
    x = jnp.where(used[None, :], x * (f_max / n_features.astype(jnp.float32)), 0.0)

    present = jnp.any(classes[:, None] == jnp.arange(config.max_classes)[None, :], axis=0)
    rank = jnp.cumsum(present) - 1
    n_classes = jnp.sum(present).astype(jnp.int32)
    shift = rng.randint(k_shift, 0, n_classes)
    labels = ((rank[classes] + shift) % n_classes).astype(jnp.int32)

    finite = jnp.isfinite(x) | injected if config.missing_values else jnp.isfinite(x)
    finite = jnp.all(finite)
    x = jnp.where(finite, x, 0.0)
    valid = raw_ok & finite & compatible
    labels = jnp.where(valid, labels, 0)
    return Adapted(
        x=x,
        y=labels,
        valid=valid,
        n_classes=jnp.where(valid, n_classes, 1),
        categorical=categorical,
    )
