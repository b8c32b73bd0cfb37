"""The prior bag (MLP/SCM 0.961, GP 0.039; tree datasets with `tree_probability`, off by default)
and the public samplers `sample_task` / `sample_batch`; `sample_adapted` sends the same raw datasets
through another adapter than the classification one (`priors.regression`).

Every dataset draws its own hyperparameters (the reference shares some across a batch of 8; the
marginal distribution of a dataset is the same). The costly part, the network, runs at a static
width chosen by `lax.switch` on an *unbatched* index, for a dynamic number of blocks, so compute
follows the size drawn rather than the maxima. `sample_batch` sorts the datasets by (prior, width
bucket, depth), cuts them into groups, runs the groups one after another (`lax.map`) and vmaps
within a group, where the switch takes the group's largest bucket and the loop its largest depth;
GP datasets run under `lax.cond` only in groups that hold one. On CPU a group is one dataset (each
network at its own size, and the rarely needed steps, categorical columns or the GP, are skipped
where not drawn); on accelerators it is an eighth of the batch (at least 8), so a batch takes 8
sequential steps of wide work. Nothing depends on a Python branch over a random draw: one
compilation per (config, batch_size, group_size).

Tree datasets (`priors.tree`) take the fraction `tree_probability` of the bag, the MLP/SCM and GP
priors share the rest in their proportions. Whether a dataset is a tree dataset, and everything it
draws, comes from a sub-stream of its own (`rng.fold(stream, _TREE)`) that the MLP and GP draws
never touch, so a non-tree dataset is the same whatever `tree_probability`; at 0 the tree code is
not even compiled, and the sampler is the reference prior's, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from priors import classification, gp, mlp, rng, tree
from priors.config import PriorConfig


class Task(NamedTuple):
    """Synthetic classification datasets, padded to the static maxima of a `PriorConfig`.

    Leading axes `...` are () for `sample_task` and (batch,) for `sample_batch`.
    """

    x: jax.Array  # (..., rows, max_features) float32: standardised, scaled by max_features / F, 0-padded
    y: jax.Array  # (..., rows) int32 in 0..max_classes-1 (all 0 when invalid)
    valid: jax.Array  # (...,) bool: False -> the loss must skip the dataset (the reference's -100 labels)
    n_features: jax.Array  # (...,) int32: F, the used columns x[..., :F]
    n_classes: jax.Array  # (...,) int32: distinct labels K' (labels are 0..K'-1); 1 when invalid
    categorical: jax.Array  # (..., max_features) bool: categorical columns


# adapter(stream, x, y, n_features, split, config) -> one task (`sample_adapted`)
Adapter = Callable[..., Any]

MLP, GP, TREE = 0, 1, 2  # dataset kinds (`dataset_kinds`)
_TREE = 0x7EE  # fold tag of the tree sub-stream: the split in `_draw` uses tags 0..3


class _Draw(NamedTuple):
    is_gp: jax.Array
    hyper: mlp.MLPHyper
    bucket: jax.Array
    stream: jax.Array
    # tree datasets; None when config.tree_probability == 0 (nothing drawn, nothing compiled)
    is_tree: jax.Array | None = None
    tree: tree.TreeHyper | None = None
    tree_stream: jax.Array | None = None


def _draw(key: jax.Array, config: PriorConfig) -> _Draw:
    stream = rng.from_key(key)
    k_features, k_bag, k_hyper, k_rest = rng.split(stream, 4)
    # safe_randint(1, max_features): 1..max_features-1 (the reference never uses all columns)
    n_features = rng.randint(k_features, 1, config.max_features)
    hyper = mlp.sample_hyper(k_hyper, config, n_features)
    draw = _Draw(
        is_gp=rng.bernoulli(k_bag, config.gp_probability),
        hyper=hyper,
        bucket=mlp.width_bucket(config, hyper.hidden),
        stream=k_rest,
    )
    if config.tree_probability == 0:
        return draw
    k_is_tree, k_tree_hyper, k_tree_data = rng.split(rng.fold(stream, _TREE), 3)
    return draw._replace(
        is_tree=rng.bernoulli(k_is_tree, config.tree_probability),
        tree=tree.sample_hyper(k_tree_hyper, config),
        tree_stream=k_tree_data,
    )


def _runs_network(draw: _Draw) -> jax.Array:
    """The dataset needs the MLP/SCM network: an MLP dataset, or a tree dataset on its features."""
    if draw.is_tree is None:
        return ~draw.is_gp
    return jnp.where(draw.is_tree, draw.tree.network_features, ~draw.is_gp)


def _is_gp(draw: _Draw) -> jax.Array:
    return draw.is_gp if draw.is_tree is None else draw.is_gp & ~draw.is_tree


def _kind(draw: _Draw) -> jax.Array:
    kind = jnp.where(draw.is_gp, GP, MLP)
    return kind if draw.is_tree is None else jnp.where(draw.is_tree, TREE, kind)


def _classify(stream, x, y, n_features, split, config: PriorConfig) -> Task:
    """The classification adapter of `sample_batch`."""
    out = classification.adapt(stream, x, y, n_features, jnp.bool_(True), split, config)
    return Task(
        x=out.x,
        y=out.y,
        valid=out.valid,
        n_features=n_features,
        n_classes=out.n_classes,
        categorical=out.categorical,
    )


def _one(
    draw: _Draw,
    split,
    width_index,
    n_blocks_run,
    run_gp,
    run_tree,
    config: PriorConfig,
    adapter: Adapter,
    grouped: bool = False,
):
    """One dataset. `width_index` (0: no network, i: `width_buckets[i - 1]`), `n_blocks_run`,
    `run_gp` and `run_tree` (None without tree datasets) are shared by a group (unbatched under
    vmap); `grouped` (static): the dataset runs vmapped in a group, its trees vectorised."""
    k_causes, k_nodes, k_layers, k_network, k_gp, k_adapt = rng.split(draw.stream, 6)
    hyper = draw.hyper
    rows, f_max = config.n_rows, config.max_features

    def network():
        causes = mlp.sample_causes(k_causes, hyper, config)
        layers = mlp.sample_layers(k_layers, hyper, config)
        nodes = lax.cond(
            hyper.is_causal,
            lambda: mlp.select_nodes(k_nodes, hyper, config),
            lambda: (jnp.full((f_max + 1,), -1, jnp.int32), jnp.zeros((f_max + 1,), jnp.int32)),
        )

        def at_width(width):
            return lambda: mlp.run_network(
                k_network, hyper, layers, causes, nodes, config, width=width, n_blocks_run=n_blocks_run
            )

        def nothing():
            return jnp.zeros((rows, f_max + 1), jnp.float32), jnp.zeros((rows,), jnp.float32)

        read, y_out = lax.switch(width_index, [nothing] + [at_width(w) for w in config.width_buckets])
        return mlp.assemble(hyper, causes, read, y_out, config)

    def zeros():
        return jnp.zeros((rows, f_max), jnp.float32), jnp.zeros((rows,), jnp.float32)

    x, y = lax.cond(width_index > 0, network, zeros)
    x_gp, y_gp = lax.cond(run_gp, lambda: gp.sample_raw(k_gp, config, hyper.n_features), zeros)
    if run_tree is not None:
        x_tree, y_tree = lax.cond(
            run_tree,
            lambda: tree.sample_raw(
                draw.tree_stream, draw.tree, x, hyper.n_features, config, vectorised=grouped
            ),
            zeros,
        )
    x = jnp.where(_is_gp(draw), x_gp, x)
    y = jnp.where(_is_gp(draw), y_gp, y)
    if run_tree is not None:
        x = jnp.where(draw.is_tree, x_tree, x)
        y = jnp.where(draw.is_tree, y_tree, y)
    return adapter(k_adapt, x, y, hyper.n_features, split, config)


def _alone(draw: _Draw, split, config: PriorConfig, adapter: Adapter):
    width_index = jnp.where(_runs_network(draw), 1 + draw.bucket, 0)
    return _one(draw, split, width_index, draw.hyper.n_blocks, _is_gp(draw), draw.is_tree, config, adapter)


def _group(draws: _Draw, split, config: PriorConfig, adapter: Adapter):
    network = _runs_network(draws)
    width_index = jnp.where(jnp.any(network), 1 + jnp.max(jnp.where(network, draws.bucket, 0)), 0)
    n_blocks_run = jnp.max(jnp.where(network, draws.hyper.n_blocks, 0))
    run_tree = None if draws.is_tree is None else jnp.any(draws.is_tree)
    one = functools.partial(_one, config=config, adapter=adapter, grouped=True)
    return jax.vmap(one, in_axes=(0, 0, None, None, None, None))(
        draws, split, width_index, n_blocks_run, jnp.any(_is_gp(draws)), run_tree
    )


def sample_task(key: jax.Array, config: PriorConfig, split) -> Task:
    """One dataset from the prior bag. `split` (int, may be traced): rows < split are training rows.

    Returns a `Task` with x: (n_rows, max_features), y: (n_rows,), scalar valid / n_features /
    n_classes, categorical: (max_features,). The first dataset of `sample_batch(key, config, 1,
    split)`, and the same compiled program.
    """
    return jax.tree.map(lambda a: a[0], sample_batch(key, config, 1, split))


def default_group_size(batch_size: int) -> int:
    """1 on CPU (every network at its own size); else an eighth of the batch, at least 8."""
    if jax.default_backend() == "cpu":
        return 1
    return min(batch_size, max(8, batch_size // 8))


def sample_batch(
    key: jax.Array, config: PriorConfig, batch_size: int, split, group_size: int | None = None
) -> Task:
    """`batch_size` independent datasets from the prior bag: a `Task` with a leading batch axis.

    `split`: int or (batch_size,) ints, may be traced: rows < split are the training rows.
    `group_size`: datasets whose networks run together; default `default_group_size`. Jitted, static
    in `config`, `batch_size` and `group_size`: one compilation per configuration, whatever the
    key and the split (a Python int, a traced scalar or a (batch_size,) array).
    """
    return sample_adapted(_classify, key, config, batch_size, split, group_size)


def sample_adapted(
    adapter: Adapter,
    key: jax.Array,
    config: PriorConfig,
    batch_size: int,
    split,
    group_size: int | None = None,
):
    """`sample_batch` with another adapter of the raw datasets: `adapter(stream, x, y, n_features,
    split, config)` turns one raw dataset (x: (rows, max_features), zero beyond n_features; y:
    (rows,)) into one task, a NamedTuple of arrays (`priors.regression` passes its own). The same
    raw datasets as `sample_batch` draws for the key; the adapter is static (one compilation per
    adapter and configuration)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    group_size = group_size or default_group_size(batch_size)
    split = jnp.broadcast_to(jnp.asarray(split, jnp.int32), (batch_size,))  # one signature for all
    return _sample_batch(key, config, batch_size, split, group_size, adapter)


@functools.partial(jax.jit, static_argnames=("config", "batch_size", "group_size", "adapter"))
def _sample_batch(key, config: PriorConfig, batch_size: int, split, group_size: int, adapter: Adapter):
    group = group_size
    n_groups = -(-batch_size // group)
    total = n_groups * group
    # dataset i draws from fold_in(key, i): the same datasets whatever the batch size or grouping
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(total, dtype=jnp.uint32))
    draws = jax.vmap(functools.partial(_draw, config=config))(keys)
    split = jnp.concatenate([split, jnp.full((total - batch_size,), config.n_rows // 2, jnp.int32)])

    if group == 1:
        return jax.tree.map(
            lambda a: a[:batch_size],
            lax.map(lambda args: _alone(*args, config=config, adapter=adapter), (draws, split)),
        )
    n_buckets = len(config.width_buckets)
    if draws.is_tree is None:
        kind = draws.is_gp.astype(jnp.int32)
    else:  # MLP, tree on network features, tree on independent features, GP: the same work together
        tree_kind = jnp.where(draws.tree.network_features, 1, 2)
        kind = jnp.where(draws.is_tree, tree_kind, jnp.where(draws.is_gp, 3, 0))
    sort_key = (kind * n_buckets + draws.bucket) * (config.max_layers + 1) + draws.hyper.n_blocks
    order = jnp.argsort(sort_key)
    grouped = jax.tree.map(lambda a: a[order].reshape(n_groups, group, *a.shape[1:]), (draws, split))
    tasks = lax.map(lambda args: _group(*args, config=config, adapter=adapter), grouped)
    inverse = jnp.argsort(order)[:batch_size]
    return jax.tree.map(lambda a: a.reshape(total, *a.shape[2:])[inverse], tasks)


def dataset_kinds(key: jax.Array, config: PriorConfig, batch_size: int) -> jax.Array:
    """The prior each dataset of `sample_batch(key, config, batch_size, ...)` comes from, (batch_size,)
    int32: `MLP` (0), `GP` (1) or `TREE` (2). Draws the hyperparameters only, not the data."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return _dataset_kinds(key, config, batch_size)


@functools.partial(jax.jit, static_argnames=("config", "batch_size"))
def _dataset_kinds(key, config: PriorConfig, batch_size: int) -> jax.Array:
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch_size, dtype=jnp.uint32))
    return jax.vmap(lambda k: _kind(_draw(k, config)))(keys).astype(jnp.int32)
