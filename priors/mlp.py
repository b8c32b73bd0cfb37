"""The MLP / structural-causal-model prior (TabPFN's "MLP prior"), computed at a static width.

Per dataset: `sample_hyper` draws the network's hyperparameters, `sample_causes` its inputs,
`select_nodes` (causal networks) the nodes behind x and y, and `run_network` the network itself at a
static `width` (a bucket >= the drawn width; units beyond the drawn width stay exact zeros) for a
dynamic number of hidden blocks, shared by the datasets that run together (a dataset with fewer
blocks keeps its last state). `assemble` returns the raw (x, y). Reference (`mothernet/priors/mlp.py`):

- causes: per cause mean ~ N(0, 1), std = |N(0, 1) * mean|; each row N(mean, std^2).
- Linear(C -> H), then (layers - 1) blocks [activation, Linear(H -> H), + Gaussian noise]; the
  non-causal network adds [activation, Linear(H -> 1), noise] whose output is y, and x = the causes
  (C = F).
- causal: H >= 2F + 1; x and y are read from the post-noise block outputs (the first linear output
  excluded): y = the last node if `y_is_effect`; `in_clique` takes a contiguous window of F + 1
  nodes in random order, else a random permutation of all nodes but the last; `sort_features` orders
  the feature nodes by index.
- weights N(0, (init_std / (1 - sqrt(p)))^2) masked by Bernoulli(1 - p), p capped at 0.99, never on
  the first layer; or, with block-wise dropout, n ~ randint(1, ceil(sqrt(min(out, in)))) diagonal
  blocks (out // n) x (in // n) of std init_std / sqrt(kept fraction). Biases U(+-1/sqrt(fan_in)).
- noise std per unit |N(0, noise_std^2)| if `pre_sample_weights`, else noise_std.
- the feature columns are rotated by a random shift (non-causal: done by rotating the rows of the
  first weight matrix, the same thing since the causes are i.i.d. columns).

Clipped heavy tails (mass moved to the maximum, reference defaults): depth above `max_layers` = 10
for about 0.75% of draws; width above `max_hidden` = 256 for about 0.92%; causes above `max_causes`
= 32 for about 0.05%.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from priors import distributions as D
from priors import rng
from priors.config import PriorConfig

TANH, IDENTITY, RELU = 0, 1, 2  # the reference's order of activations


class MLPHyper(NamedTuple):
    """Per-dataset hyperparameters of one MLP/SCM network (all scalars)."""

    n_features: jax.Array  # int32, F in 1..max_features
    is_causal: jax.Array  # bool
    hidden: jax.Array  # int32, width H (>= 2F + 1 when causal)
    n_causes: jax.Array  # int32, C (= F when not causal)
    n_blocks: jax.Array  # int32, layers - 1 >= 1
    dropout: jax.Array  # float32, element-wise dropout probability
    init_std: jax.Array  # float32
    noise_std: jax.Array  # float32
    pre_sample_weights: jax.Array  # bool: per-unit noise std
    y_is_effect: jax.Array  # bool
    block_wise_dropout: jax.Array  # bool
    sort_features: jax.Array  # bool
    in_clique: jax.Array  # bool
    activation: jax.Array  # int32: 0 tanh, 1 identity, 2 relu (the reference's order)


def sample_hyper(stream: jax.Array, config: PriorConfig, n_features: jax.Array) -> MLPHyper:
    """Draw the hyperparameters of one network for a dataset of `n_features` features."""
    streams = rng.split(stream, 5)
    low, high = config.choice_weight_low, config.choice_weight_high
    hidden, causes, layers = D.meta_gamma(streams[0], (config.hidden, config.causes, config.layers))
    is_causal, pre_sample_weights, y_is_effect, block_wise, sort_features, in_clique = D.meta_bool(
        streams[1], 6, low, high
    )
    init_std, noise_std = D.log_uniform(streams[2], (config.init_std, config.noise_std))
    hidden = jnp.where(is_causal, jnp.maximum(hidden, 2 * n_features + 1), hidden)
    return MLPHyper(
        n_features=n_features,
        is_causal=is_causal,
        hidden=jnp.minimum(hidden, config.max_hidden),
        n_causes=jnp.where(is_causal, jnp.minimum(causes, config.max_causes), n_features),
        n_blocks=jnp.minimum(layers, config.max_layers) - 1,
        dropout=D.meta_beta(streams[3], config.dropout),
        init_std=init_std,
        noise_std=noise_std,
        pre_sample_weights=pre_sample_weights,
        y_is_effect=y_is_effect,
        block_wise_dropout=block_wise,
        sort_features=sort_features,
        in_clique=in_clique,
        activation=D.meta_choice(streams[4], 3, low, high),
    )


def width_bucket(config: PriorConfig, hidden: jax.Array) -> jax.Array:
    """Index of the smallest `config.width_buckets` entry that holds `hidden` units."""
    return jnp.searchsorted(jnp.asarray(config.width_buckets), hidden, side="left").astype(jnp.int32)


def causes_width(config: PriorConfig) -> int:
    return max(config.max_causes, config.max_features)


# -- inputs and node selection (width-independent) ------------------------------------------------


def sample_causes(stream: jax.Array, hyper: MLPHyper, config: PriorConfig) -> jax.Array:
    """The causes, (n_rows, causes_width) float32, zero beyond `n_causes`; drawn at width
    `max_causes` where they fit (every causal network), else at the padded width."""
    rows, padded = config.n_rows, causes_width(config)
    k_mean, k_std, k_rows = rng.split(stream, 3)
    mean = rng.normal(k_mean, (padded,))
    std = jnp.abs(rng.normal(k_std, (padded,)) * mean)
    mean, std = (jnp.where(jnp.arange(padded) < hyper.n_causes, v, 0.0) for v in (mean, std))
    buckets = sorted({min(config.max_causes, padded), padded})

    def draw(width):
        def branch(mean, std):
            # counters of the full width: the same causes whichever bucket draws them
            counter = lax.broadcasted_iota(jnp.int32, (rows, width), 0) * padded
            counter = counter + lax.broadcasted_iota(jnp.int32, (rows, width), 1)
            causes = mean[None, :width] + std[None, :width] * rng.normal_at(k_rows, counter)
            if width == padded:
                return causes
            # widen by a product with [I 0]: XLA's CPU backend pads or concatenates a freshly
            # drawn array several times slower (it recomputes the draw inside the copy)
            return rng.matmul(causes, jnp.eye(width, padded, dtype=jnp.float32))

        return branch

    index = jnp.searchsorted(jnp.asarray(buckets), hyper.n_causes, side="left")
    return lax.switch(index, [draw(width) for width in buckets], mean, std)


def select_nodes(stream: jax.Array, hyper: MLPHyper, config: PriorConfig) -> tuple[jax.Array, jax.Array]:
    """Layer and unit of the node behind y (slot 0) and behind each feature column (slots 1..F) of a
    causal network, (max_features + 1,) int32 each; layer -1 marks an unused slot. Nodes are numbered
    layer * H + unit over the post-noise outputs of the hidden blocks."""
    k_perm, k_start, k_clique, k_rotate = rng.split(stream, 4)
    f, n_slots = hyper.n_features, config.max_features
    n_nodes = hyper.n_blocks * hyper.hidden
    n_pick = n_slots + 1
    # a random permutation of all nodes but the last: its first n_pick entries
    scores = rng.uniform(k_perm, (config.max_blocks * config.max_hidden,))
    scores = jnp.where(jnp.arange(scores.shape[0]) < n_nodes - 1, scores, -1.0)
    spread = lax.top_k(scores, n_pick)[1].astype(jnp.int32)
    # in_clique: a window of F + 1 consecutive nodes, in random order
    start = rng.randint(k_start, 0, n_nodes - f)
    clique = start + rng.permutation(k_clique, n_pick, f + 1)
    picked = jnp.where(hyper.in_clique, clique, spread)
    y_node = jnp.where(hyper.y_is_effect, n_nodes - 1, picked[0])
    slot = jnp.arange(n_slots)
    x_nodes = jnp.where(slot < f, picked[1:], jnp.iinfo(jnp.int32).max)
    x_nodes = jnp.where(hyper.sort_features, jnp.sort(x_nodes), x_nodes)
    shift = rng.randint(k_rotate, 0, f)
    x_nodes = x_nodes[(slot + shift) % jnp.maximum(f, 1)]
    nodes = jnp.concatenate([y_node[None], x_nodes])
    used = jnp.concatenate([jnp.ones((1,), bool), slot < f])
    return jnp.where(used, nodes // hyper.hidden, -1), jnp.where(used, nodes % hyper.hidden, 0)


# -- the network at a static width ----------------------------------------------------------------


def _activate(h: jax.Array, activation: jax.Array) -> jax.Array:
    h = jnp.where(activation == RELU, jax.nn.relu(h), h)
    return lax.cond(activation == TANH, jnp.tanh, lambda v: v, h)  # skips the tanh where not drawn


class Layers(NamedTuple):
    """What a network draws outside its width switch, at `max_hidden` width: the first and the
    output layer, and per-layer vectors. Made once instead of once per width bucket (compile time),
    and passed in materialised: XLA would otherwise fuse a small random vector into every element
    of the (rows, width) array it is broadcast into and recompute it per row. Rows of `bias` and
    `noise_scale`: 0 the first layer, 1..max_blocks the hidden blocks, the last the output layer."""

    first: jax.Array  # (causes_width, max_hidden): weights of Linear(C -> H), rows rotated (see below)
    bias: jax.Array  # (max_blocks + 2, max_hidden), zero beyond the layer's outputs
    noise_scale: jax.Array  # (max_blocks + 2, max_hidden) (row 0 unused: no noise after the first layer)
    diagonal_blocks: jax.Array  # (max_blocks + 2,) int32: blocks of block-wise dropout per layer
    output: jax.Array  # (max_hidden,): weights of the output Linear(H -> 1) of a non-causal network
    output_noise: jax.Array  # (n_rows,): its noise


def _weights(
    stream, hyper: MLPHyper, config: PriorConfig, shape, n_in, n_out, dropout, n_diagonal, fan_in=None
):
    """Weights in (fan_in, fan_out) layout (torch's transposed), zero outside [:n_in, :n_out]; the
    same values at any width (counters run over `max_hidden` columns), so a dataset does not
    depend on the bucket it runs in.

    `fan_in` (shape[0],) optionally renames the rows: row i holds what row fan_in[i] would (its
    random values and its place in the dropout blocks), a row permutation without a gather."""
    k_normal, k_keep = rng.split(stream, 2)
    if fan_in is None:
        fan_in = lax.broadcasted_iota(jnp.int32, shape, 0)
    else:
        fan_in = jnp.broadcast_to(fan_in[:, None], shape)
    fan_out = lax.broadcasted_iota(jnp.int32, shape, 1)
    counter = fan_in * config.max_hidden + fan_out
    # element-wise dropout, std scaled by 1 / (1 - sqrt(p)) (prior_mlp_scale_weights_sqrt)
    p = jnp.minimum(dropout, config.max_dropout)
    keep_elementwise = rng.uniform_at(k_keep, counter) < 1.0 - p
    std_elementwise = hyper.init_std / (1.0 - jnp.sqrt(p))
    # block-wise dropout: n diagonal blocks of (out // n) x (in // n)
    block_out, block_in = n_out // n_diagonal, n_in // n_diagonal
    keep_blockwise = (fan_out // block_out == fan_in // block_in) & (fan_out < n_diagonal * block_out)
    kept = (n_diagonal * block_out * block_in).astype(jnp.float32) / (n_out * n_in).astype(jnp.float32)
    std_blockwise = hyper.init_std * lax.rsqrt(kept)
    keep = jnp.where(hyper.block_wise_dropout, keep_blockwise, keep_elementwise)
    std = jnp.where(hyper.block_wise_dropout, std_blockwise, std_elementwise)
    keep = keep & (fan_in < n_in) & (fan_out < n_out)
    return jnp.where(keep, rng.normal_at(k_normal, counter) * std, 0.0)


def sample_layers(stream: jax.Array, hyper: MLPHyper, config: PriorConfig) -> Layers:
    k_bias, k_scale, k_blocks, k_shift, k_first, k_output, k_noise = rng.split(stream, 7)
    n_layers, width, padded = config.max_blocks + 2, config.max_hidden, causes_width(config)
    hidden, n_causes, f = hyper.hidden, hyper.n_causes, hyper.n_features
    layer = jnp.arange(n_layers)[:, None]
    unit = jnp.arange(width)[None, :]
    fan_in = jnp.where(layer == 0, n_causes, hidden)
    fan_out = jnp.where(layer == n_layers - 1, 1, hidden)
    outputs = unit < fan_out
    bias = rng.uniform(k_bias, (n_layers, width), -1.0, 1.0) * lax.rsqrt(fan_in.astype(jnp.float32))
    per_unit = jnp.abs(rng.normal(k_scale, (n_layers, width))) * hyper.noise_std
    noise_scale = jnp.where(hyper.pre_sample_weights, per_unit, hyper.noise_std)
    smaller = jnp.minimum(fan_in[:, 0], fan_out[:, 0]).astype(jnp.float32)
    diagonal_blocks = rng.randint(k_blocks, 1, jnp.ceil(jnp.sqrt(smaller)).astype(jnp.int32) + 1, (n_layers,))
    # non-causal: x = the causes rotated by `shift`, i.e. the network reads column j as input j + shift
    shift = jnp.where(hyper.is_causal, 0, rng.randint(k_shift, 0, f))
    slot = jnp.arange(padded)
    rotated = jnp.where(slot < f, (slot + shift) % jnp.maximum(f, 1), slot)
    first = _weights(
        k_first,
        hyper,
        config,
        (padded, width),
        n_causes,
        hidden,
        jnp.float32(0.0),
        diagonal_blocks[0],
        rotated,
    )
    one = jnp.int32(1)
    output = _weights(k_output, hyper, config, (width, 1), hidden, one, hyper.dropout, diagonal_blocks[-1])
    return Layers(
        first=first,
        bias=jnp.where(outputs, bias, 0.0),
        noise_scale=jnp.where(outputs & (layer > 0), noise_scale, 0.0),
        diagonal_blocks=diagonal_blocks,
        output=output[:, 0],
        output_noise=rng.normal(k_noise, (config.n_rows,)) * noise_scale[-1, 0],
    )


def run_network(
    stream: jax.Array,
    hyper: MLPHyper,
    layers: Layers,
    causes: jax.Array,
    nodes: tuple[jax.Array, jax.Array],
    config: PriorConfig,
    *,
    width: int,
    n_blocks_run: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Run one network at static `width` >= hyper.hidden for min(n_blocks_run, hyper.n_blocks) blocks.

    Returns (read, y_out): read (n_rows, max_features + 1), the values of the `nodes` of a causal
    network (slot 0: y); y_out (n_rows,), the output of a non-causal network.
    """
    rows, f_max = config.n_rows, config.max_features
    k_blocks, k_noise = rng.split(stream, 2)
    hidden = hyper.hidden
    bias, noise_scale = layers.bias[:, :width], layers.noise_scale[:, :width]
    h = rng.matmul(causes, layers.first[:, :width]) + bias[0][None, :]
    node_layer, node_unit = nodes
    unit_counter = lax.broadcasted_iota(jnp.int32, (rows, width), 0) * config.max_hidden
    unit_counter = unit_counter + lax.broadcasted_iota(jnp.int32, (rows, width), 1)

    def block(layer, carry):
        h, read = carry
        w = _weights(
            rng.fold(k_blocks, layer),
            hyper,
            config,
            (width, width),
            hidden,
            hidden,
            hyper.dropout,
            layers.diagonal_blocks[1 + layer],
        )
        noise = rng.normal_at(rng.fold(k_noise, layer), unit_counter) * noise_scale[1 + layer][None, :]
        h = rng.matmul(_activate(h, hyper.activation), w) + bias[1 + layer][None, :] + noise
        # a cond, also for a causal network: its operand h is then a materialised buffer (a gather
        # fused with the block would recompute the noise of every node it reads)
        read = lax.cond(
            hyper.is_causal,
            lambda h, read: jnp.where((node_layer == layer)[None, :], jnp.take(h, node_unit, axis=1), read),
            lambda h, read: read,
            h,
            read,
        )
        return h, read

    # (the per-layer vectors come in materialised: fused into this loop body, a random vector
    # would be recomputed for every row, which made the loop several times slower)
    read = jnp.zeros((rows, f_max + 1), jnp.float32)
    h, read = lax.fori_loop(0, jnp.minimum(n_blocks_run, hyper.n_blocks), block, (h, read))
    y_out = rng.matmul(_activate(h, hyper.activation), layers.output[:width])
    y_out = y_out + layers.bias[-1, 0] + layers.output_noise
    return read, y_out


def assemble(hyper: MLPHyper, causes: jax.Array, read: jax.Array, y_out: jax.Array, config: PriorConfig):
    """Raw x (n_rows, max_features), zero beyond F, and y (n_rows,) of a network."""
    x = jnp.where(hyper.is_causal, read[:, 1:], causes[:, : config.max_features])
    y = jnp.where(hyper.is_causal, read[:, 0], y_out)
    return x, y
