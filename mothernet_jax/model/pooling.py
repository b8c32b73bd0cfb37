"""Pooling: the transformer outputs of the training rows become one vector phi per dataset.

- `class_average` (2024 default): the mean output of the rows of each class, concatenated in class
  order (an absent class gives a zero vector); |phi| = max_classes * d.
- `output_attention` (2023 paper): a learned query attends over the outputs; |phi| = pooling_embed_dim.
- `average`: the mean output of all training rows; |phi| = d.

Regression only (y a float target standardised over the training rows):

- `target_bins`: `class_average` over max_classes bins of the standardised target, cut at the
  standard normal's quantiles (equal shares of a normal target): the mean output of the rows in each
  bin, in order of the target; |phi| = max_classes * d.
- `target_moments`: the mean output and the mean of output x target over the training rows;
  |phi| = 2 d.
"""

import statistics

import jax
import jax.numpy as jnp
from flax import linen as nn

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.init import torch_linear_kernel, xavier_uniform, zeros


def class_average(outputs: jax.Array, y: jax.Array, row_mask: jax.Array, n_classes: int) -> jax.Array:
    """outputs: (B, T, d), y: (B, T) int, row_mask: (B, T) bool -> (B, n_classes * d) float32."""
    members = jax.nn.one_hot(y, n_classes, dtype=jnp.float32) * row_mask[..., None]
    sums = jnp.einsum("btk,btd->bkd", members, outputs.astype(jnp.float32))
    counts = members.sum(axis=1)[..., None]
    means = sums / jnp.maximum(counts, 1.0)
    return means.reshape(means.shape[0], -1)


def average(outputs: jax.Array, row_mask: jax.Array) -> jax.Array:
    """outputs: (B, T, d), row_mask: (B, T) bool -> (B, d) float32."""
    weights = row_mask.astype(jnp.float32)
    sums = jnp.einsum("bt,btd->bd", weights, outputs.astype(jnp.float32))
    return sums / jnp.maximum(weights.sum(axis=1, keepdims=True), 1.0)


def target_bin_edges(n_bins: int) -> tuple[float, ...]:
    """The n_bins - 1 inner edges: the standard normal's quantiles k / n_bins."""
    normal = statistics.NormalDist()
    return tuple(normal.inv_cdf(k / n_bins) for k in range(1, n_bins))


def target_bins(outputs: jax.Array, z: jax.Array, row_mask: jax.Array, n_bins: int) -> jax.Array:
    """outputs: (B, T, d), z: (B, T) float standardised target, row_mask: (B, T) bool
    -> (B, n_bins * d) float32."""
    bins = jnp.searchsorted(jnp.asarray(target_bin_edges(n_bins), jnp.float32), z.astype(jnp.float32))
    return class_average(outputs, bins, row_mask, n_bins)


def target_moments(outputs: jax.Array, z: jax.Array, row_mask: jax.Array) -> jax.Array:
    """outputs: (B, T, d), z: (B, T) float standardised target, row_mask: (B, T) bool -> (B, 2 d)."""
    weighted = outputs.astype(jnp.float32) * z.astype(jnp.float32)[..., None]
    return jnp.concatenate([average(outputs, row_mask), average(weighted, row_mask)], axis=-1)


class OutputAttention(nn.Module):
    """A learned query (1 x E, N(0, 1)) attends over the outputs with separate q/k/v projections
    (`nn.MultiheadAttention(E, heads, kdim=d, vdim=d)`)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, outputs: jax.Array, n_rows: jax.Array) -> jax.Array:
        """outputs: (B, T, d), n_rows: (B,) int -> (B, E) float32."""
        cfg = self.config
        embed, heads = cfg.pooling_embed_dim, cfg.n_heads
        batch, rows, _ = outputs.shape
        dense = lambda name, init: nn.Dense(
            embed, kernel_init=init, bias_init=zeros, dtype=cfg.dtype, param_dtype=jnp.float32, name=name
        )
        query = self.param("query", nn.initializers.normal(1.0), (1, embed))
        q = dense("q", xavier_uniform)(query).reshape(1, 1, heads, embed // heads)
        k = dense("k", xavier_uniform)(outputs).reshape(batch, rows, heads, embed // heads)
        v = dense("v", xavier_uniform)(outputs).reshape(batch, rows, heads, embed // heads)
        q = jnp.broadcast_to(q, (batch, 1, heads, embed // heads)).astype(k.dtype)
        attended = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=n_rows.astype(jnp.int32))
        pooled = nn.Dense(
            embed,
            kernel_init=torch_linear_kernel,
            bias_init=zeros,  # nn.MultiheadAttention zeroes its out_proj bias
            dtype=cfg.dtype,
            param_dtype=jnp.float32,
            name="out",
        )(attended.reshape(batch, embed))
        return pooled.astype(jnp.float32)
