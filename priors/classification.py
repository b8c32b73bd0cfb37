"""The classification adapter: a raw regression dataset (x, y) becomes a classification task.

Follows `ClassificationAdapter` (`mothernet/priors/classification_adapter.py`), per dataset:

1-3. the column-wise steps of `priors.features` (missing values, categorical columns, outliers);
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
the column-wise steps 1-4 and 6 follow (the same distribution, fewer passes over x): they are
`priors.features.columns`, which the regression adapter (`priors.regression`) shares. An invalid
dataset (no compatible arrangement, or a non-finite value: the reference's -100 labels) keeps its x
(zeros if not finite) and gets labels 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from priors import distributions as D
from priors import features, rng
from priors.config import PriorConfig


class Adapted(NamedTuple):
    x: jax.Array  # (rows, max_features) float32
    y: jax.Array  # (rows,) int32 in 0..max_classes-1
    valid: jax.Array  # bool
    n_classes: jax.Array  # int32
    categorical: jax.Array  # (max_features,) bool


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

    x, categorical, finite = features.columns(k_missing, k_categorical, x, n_features, config)

    present = jnp.any(classes[:, None] == jnp.arange(config.max_classes)[None, :], axis=0)
    rank = jnp.cumsum(present) - 1
    n_classes = jnp.sum(present).astype(jnp.int32)
    shift = rng.randint(k_shift, 0, n_classes)
    labels = ((rank[classes] + shift) % n_classes).astype(jnp.int32)

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
