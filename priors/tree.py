"""The tree prior: datasets whose target is a random decision-tree ensemble over the features.

The MLP/SCM and GP priors make smooth targets; tabular data is often made of sharp thresholds and
logical rules over levels, which tree models capture (TabICL mixes 30% tree-SCM datasets into its
prior, TabForestPFN random decision trees). Per dataset (`PriorConfig.tree_*` fields):

1. features: with probability `tree_network_features_probability` the x of the MLP/SCM network,
   drawn as for an MLP dataset (`priors.mlp`, its own y unused); else independent columns, each a
   standard normal, a U(0, 1) or an integer code floor(U * L) with L ~ U{2..10} levels (a third each);
2. the SCM form, with probability `tree_effect_probability`: each used column but one (the root
   kept for sure) becomes, with probability q ~ U(0, tree_max_effect_share), an effect: the leaf
   value of one random tree over the remaining (root) columns, a variable with at most 2^d values;
3. the target: the sum of n_trees random trees over all used columns, divided by sqrt(n_trees).

A random tree of depth d is grown on the data, level by level: each node draws a split feature
uniformly from its candidate columns and takes as threshold the median of that feature's values at
three random rows among the rows that reach the node, so every split cuts the data it sees, as a
fitted tree's would (the fraction going left is about Beta(2, 2), not uniform, so deep trees keep
populated leaves); a row goes right where its value exceeds the threshold. Leaves get N(0, 1)
values. Depth d and the number of trees come from `tree_depth` and `tree_count` (MetaGamma, like
the MLP's depth and width), clipped to the static `max_tree_depth` and `max_trees`.

Noise enters through the inputs, not the output: the mechanisms read x + s * std(column) * N(0, 1),
s ~ `tree_noise_std`, one noise value per (row, column) shared by every tree, while the observed x
stays clean, so rows near a threshold land on a random side. The target stays piecewise constant up
to 1e-3 times one standardised column, which orders the rows within a leaf: the adapter's class
boundaries are target values of random rows (`priors.classification`), and a boundary drawn inside
a leaf then cuts it by a threshold on that column, one more rule, where output noise would split the
leaf at random (and a target of a few levels would often give one class: an invalid dataset).

Cost: a tree of depth d on R rows is a loop of d levels, each a few gathers and one segment max
over the rows, O(R d) and no sort; the target's trees and the effects' trees run in loops of
dynamic length (the number drawn), so a tree dataset costs a few milliseconds on a CPU core
besides its features. Datasets that run vmapped in groups (accelerators, `priors.bag`) use the
`vectorised` form instead: every tree at its static maximum, all at once, no sequential loop.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from priors import distributions as D
from priors import rng
from priors.config import PriorConfig

_MAX_LEVELS = 10  # integer-coded independent columns take U{2.._MAX_LEVELS} levels
_PICKS = 3  # a split's threshold: the median of its feature at this many random rows of the node
_ORDER_SCALE = 1e-3  # weight of the column that orders the rows within a leaf (leaf values ~ N(0, 1))


class TreeHyper(NamedTuple):
    """Per-dataset hyperparameters of a tree dataset (all scalars)."""

    network_features: jax.Array  # bool: x from the MLP/SCM network, else independent columns
    depth: jax.Array  # int32 in 1..max_tree_depth: depth of the target's trees
    n_trees: jax.Array  # int32 in 1..max_trees
    effect_depth: jax.Array  # int32 in 1..max_tree_depth: depth of the effects' trees
    effect_share: jax.Array  # float32: probability that a column is an effect (0: no SCM form)
    noise_std: jax.Array  # float32: input noise, in column standard deviations


def sample_hyper(stream: jax.Array, config: PriorConfig) -> TreeHyper:
    """Draw the hyperparameters of one tree dataset."""
    k_sizes, k_network, k_scm, k_share, k_noise = rng.split(stream, 5)
    depth, effect_depth, n_trees = D.meta_gamma(
        k_sizes, (config.tree_depth, config.tree_depth, config.tree_count)
    )
    scm = rng.bernoulli(k_scm, config.tree_effect_probability)
    share = rng.uniform(k_share, (), 0.0, config.tree_max_effect_share)
    return TreeHyper(
        network_features=rng.bernoulli(k_network, config.tree_network_features_probability),
        depth=jnp.clip(depth, 1, config.max_tree_depth),
        n_trees=jnp.clip(n_trees, 1, config.max_trees),
        effect_depth=jnp.clip(effect_depth, 1, config.max_tree_depth),
        effect_share=jnp.where(scm, share, 0.0),
        noise_std=D.log_uniform(k_noise, (config.tree_noise_std,))[0],
    )


def independent_features(stream: jax.Array, n_features: jax.Array, config: PriorConfig) -> jax.Array:
    """Independent columns, (n_rows, max_features) float32, zero beyond `n_features`: per column a
    standard normal, a U(0, 1) or an integer code floor(U * L), L ~ U{2.._MAX_LEVELS}."""
    rows, f_max = config.n_rows, config.max_features
    k_kind, k_levels, k_normal, k_uniform = rng.split(stream, 4)
    kind = rng.randint(k_kind, 0, 3, (f_max,))
    levels = rng.randint(k_levels, 2, _MAX_LEVELS + 1, (f_max,)).astype(jnp.float32)
    u = rng.uniform(k_uniform, (rows, f_max))
    x = jnp.where((kind == 0)[None, :], rng.normal(k_normal, (rows, f_max)), u)
    x = jnp.where((kind == 2)[None, :], jnp.floor(u * levels[None, :]), x)
    return jnp.where((jnp.arange(f_max) < n_features)[None, :], x, 0.0)


class TreeInputs(NamedTuple):
    """What the trees of a dataset read: the clean x for thresholds, x plus noise for the splits."""

    x: jax.Array  # (rows, max_features)
    noise_scale: jax.Array  # (max_features,): noise std per column
    noise: jax.Array  # (2,) stream of the per-(row, column) input noise


def grow(
    stream: jax.Array,
    inputs: TreeInputs,
    candidates: jax.Array,
    n_candidates: jax.Array | int,
    depth: jax.Array | int,
    config: PriorConfig,
    *,
    vectorised: bool = False,
) -> jax.Array:
    """Grow one random tree on the data and return the leaf of every row, (n_rows,) int32 in
    0..2^depth - 1 (leaf = the path's left/right bits, first split highest). Split features are
    drawn from `candidates[:n_candidates]` ((max_features,) int32 column indices); `depth` (at most
    `config.max_tree_depth`) may be traced: a loop of that many levels, or with `vectorised` all
    `max_tree_depth` levels unrolled, those past `depth` without effect (the same leaves)."""
    rows, f_max = inputs.x.shape
    k_features, k_rows = rng.split(stream, 2)
    n_internal = (1 << config.max_tree_depth) - 1
    features = candidates[rng.randint(k_features, 0, n_candidates, (n_internal,))]
    row = jnp.arange(rows, dtype=jnp.int32)
    index_bits = max(1, (rows - 1).bit_length())
    flat_x = inputs.x.reshape(-1)

    n_slots = 1 << (config.max_tree_depth - 1)  # nodes of the widest level
    pick = lax.broadcasted_iota(jnp.int32, (_PICKS, rows), 0)

    def level(depth_index, node):
        feature = features[(jnp.left_shift(1, depth_index) - 1) + node]
        # _PICKS random rows per node: each the row of the node with the largest random score
        # (scores fresh per level and pick, ties broken by the row index in the low bits)
        score = rng.bits_at(rng.fold(k_rows, depth_index), pick * rows + row[None, :]) >> (index_bits + 1)
        score = (score.astype(jnp.int32) << index_bits) | row[None, :]
        best = jax.ops.segment_max(
            score.reshape(-1), (pick * n_slots + node[None, :]).reshape(-1), _PICKS * n_slots
        )
        picked_rows = best.reshape(_PICKS, n_slots)[:, node] & ((1 << index_bits) - 1)  # (_PICKS, rows)
        a, b, c = flat_x[picked_rows * f_max + feature[None, :]]
        threshold = jnp.maximum(jnp.minimum(a, b), jnp.minimum(jnp.maximum(a, b), c))  # their median
        cell = row * f_max + feature
        value = flat_x[cell] + inputs.noise_scale[feature] * rng.normal_at(inputs.noise, cell)
        return 2 * node + (value > threshold).astype(jnp.int32)

    node = jnp.zeros((rows,), jnp.int32)
    if not vectorised:
        return lax.fori_loop(0, depth, level, node)
    for depth_index in range(config.max_tree_depth):
        node = jnp.where(depth_index < depth, level(depth_index, node), node)
    return node


def _compact(mask: jax.Array) -> jax.Array:
    """The indices where `mask` holds, first and in order, (n,) int32 (the rest 0)."""
    index = jnp.arange(mask.shape[0], dtype=jnp.int32)
    slot = jnp.where(mask, jnp.cumsum(mask) - 1, mask.shape[0])
    return jnp.zeros_like(index).at[slot].set(index, mode="drop")


def _effects(
    stream: jax.Array, hyper: TreeHyper, inputs: TreeInputs, n_features, config: PriorConfig, vectorised: bool
):
    """The SCM form: random used columns (all but a root) replaced by the leaf value of one tree over
    the root columns; one tree per effect column, in a loop of dynamic length, or `vectorised`: a
    tree for every column at once, the unused ones discarded."""
    rows, f_max = inputs.x.shape
    k_root, k_chosen, k_trees, k_leaves = rng.split(stream, 4)
    column = jnp.arange(f_max)
    used = column < n_features
    root = rng.randint(k_root, 0, n_features)
    effect = used & (column != root) & rng.bernoulli(k_chosen, hyper.effect_share, (f_max,))
    is_root = used & ~effect
    roots, effects = _compact(is_root), _compact(effect)

    def effect_values(j):
        leaves = grow(
            rng.fold(k_trees, j),
            inputs,
            roots,
            jnp.sum(is_root),
            hyper.effect_depth,
            config,
            vectorised=vectorised,
        )
        return rng.normal_at(rng.fold(k_leaves, j), leaves)

    if vectorised:
        values = jax.vmap(effect_values)(column)  # (f_max, rows): row j is column j
        return jnp.where(effect[None, :], values.T, inputs.x)

    def add_effect(i, values):
        return lax.dynamic_update_slice(values, effect_values(effects[i])[None, :], (i, 0))

    # values (f_max, rows): row i is effect column effects[i]; then read back per column
    values = lax.fori_loop(0, jnp.sum(effect), add_effect, jnp.zeros((f_max, rows), jnp.float32))
    slot = jnp.clip(jnp.cumsum(effect) - 1, 0, f_max - 1)
    return jnp.where(effect[None, :], values[slot].T, inputs.x)


def sample_raw(
    stream: jax.Array,
    hyper: TreeHyper,
    network_x: jax.Array,
    n_features: jax.Array,
    config: PriorConfig,
    *,
    vectorised: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """One tree dataset. `network_x` (n_rows, max_features): the network's features, used when
    `hyper.network_features`. Returns x: (n_rows, max_features) float32 (zero beyond `n_features`)
    and the raw target y: (n_rows,) float32.

    `vectorised` (static): every tree at its static maximum size at once, the parts beyond the draw
    discarded, instead of loops of the drawn length: more work, but no sequential loop, for datasets
    that run vmapped in groups on an accelerator (where a loop runs to the group's longest anyway).
    The same dataset either way."""
    rows, f_max = config.n_rows, config.max_features
    k_x, k_noise, k_effects, k_trees, k_leaves, k_order = rng.split(stream, 6)
    used = jnp.arange(f_max) < n_features
    x = lax.cond(
        hyper.network_features,
        lambda: network_x,
        lambda: independent_features(k_x, n_features, config),
    )

    def read(x):
        mean = jnp.mean(x, axis=0)
        std = jnp.sqrt(jnp.mean((x - mean[None, :]) ** 2, axis=0))
        noise_scale = jnp.where(used, hyper.noise_std * std, 0.0)
        return TreeInputs(x=x, noise_scale=noise_scale, noise=k_noise), mean, std

    x = _effects(k_effects, hyper, read(x)[0], n_features, config, vectorised)
    inputs, mean, std = read(x)
    all_columns = jnp.arange(f_max, dtype=jnp.int32)

    def tree_values(t):
        leaves = grow(
            rng.fold(k_trees, t), inputs, all_columns, n_features, hyper.depth, config, vectorised=vectorised
        )
        return rng.normal_at(rng.fold(k_leaves, t), leaves)

    if vectorised:
        trees = jnp.arange(config.max_trees)
        y = jnp.sum(jnp.where((trees < hyper.n_trees)[:, None], jax.vmap(tree_values)(trees), 0.0), axis=0)
    else:
        y = lax.fori_loop(0, hyper.n_trees, lambda t, y: y + tree_values(t), jnp.zeros((rows,), jnp.float32))
    y = y * lax.rsqrt(hyper.n_trees.astype(jnp.float32))
    # order within a leaf: a tiny multiple of one standardised column, so a class boundary drawn at a
    # row of a leaf cuts it with a threshold on that column (one more split) instead of at random
    j = rng.randint(k_order, 0, n_features)
    order = (x[:, j] - mean[j]) / jnp.where(std[j] > 0, std[j], 1.0)
    return x, y + _ORDER_SCALE * order
