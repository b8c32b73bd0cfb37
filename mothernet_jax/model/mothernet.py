"""MotherNet: encoders -> transformer over the training rows -> pooling -> weight head."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from mothernet_jax.config import ModelConfig
from mothernet_jax.model import pooling
from mothernet_jax.model.encoders import XEncoder, YEncoder
from mothernet_jax.model.transformer import Transformer
from mothernet_jax.model.weight_head import WeightHead


class Intermediates(NamedTuple):
    """What a forward pass produces on the way; `generated` is the flat head output."""

    transformer_out: jax.Array  # (B, T, d)
    pooled: jax.Array  # (B, |phi|) float32
    generated: jax.Array  # (B, N_out) float32
    shared: tuple[jax.Array, ...]  # low-rank factors S_l, (r, P) each


class MotherNet(nn.Module):
    """The hypernetwork. Inputs are padded: the first `n_rows` rows of each dataset are real.

    x: (B, T, max_features) preprocessed features (NaN counts as 0), y: (B, T) int labels in
    0..max_classes-1 (task="regression": float targets standardised over the training rows),
    n_rows: (B,) int. Test rows never enter.

    With `config.thinking_rows = m`, m learned tokens (shared by every dataset) go before the
    training rows: every row attends to them, and they are left out of the pooling.
    """

    config: ModelConfig
    attention: str | None = None  # jax.nn.dot_product_attention implementation: None, "xla", "cudnn"
    # (None on CPU: transformer.head_major_attention, the same numbers in a layout XLA fuses)

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array, n_rows: jax.Array) -> Intermediates:
        cfg = self.config
        row_mask = jnp.arange(x.shape[1])[None, :] < n_rows[:, None]
        tokens = XEncoder(cfg, name="x_encoder")(x) + YEncoder(cfg, name="y_encoder")(y, row_mask)
        if cfg.thinking_rows:
            outputs = self._with_thinking_rows(tokens, n_rows)
        else:
            outputs = Transformer(cfg, self.attention, name="transformer")(tokens, n_rows)
        if cfg.pooling == "class_average":
            pooled = pooling.class_average(outputs, y, row_mask, cfg.max_classes)
        elif cfg.pooling == "target_bins":
            pooled = pooling.target_bins(outputs, y, row_mask, cfg.max_classes)
        elif cfg.pooling == "target_moments":
            pooled = pooling.target_moments(outputs, y, row_mask)
        elif cfg.pooling == "output_attention":
            pooled = pooling.OutputAttention(cfg, name="output_attention")(outputs, n_rows)
        else:
            pooled = pooling.average(outputs, row_mask)
        generated, shared = WeightHead(cfg, name="weight_head")(pooled.astype(cfg.dtype))
        return Intermediates(outputs, pooled, generated, shared)

    def _with_thinking_rows(self, tokens: jax.Array, n_rows: jax.Array) -> jax.Array:
        """tokens: (B, T, d) -> the transformer outputs of the T data rows, (B, T, d)."""
        cfg = self.config
        batch, rows, width = tokens.shape
        m = cfg.thinking_rows
        thinking = self.param("thinking_rows", nn.initializers.normal(1.0), (m, width))
        thinking = jnp.broadcast_to(thinking.astype(tokens.dtype), (batch, m, width))
        # the real rows must come first and stay contiguous (key_value_seq_lengths); fused cuDNN
        # attention wants lengths in multiples of 128
        total = m + rows
        pad = -total % 128 if self.attention == "cudnn" else 0
        h = jnp.concatenate([thinking, tokens, jnp.zeros((batch, pad, width), tokens.dtype)], axis=1)
        outputs = Transformer(cfg, self.attention, name="transformer")(h, n_rows + m)
        return outputs[:, m : m + rows]


def init_params(key: jax.Array, config: ModelConfig) -> dict:
    """Fresh parameters initialised as the reference (PyTorch defaults, zero output projections).

    The params do not carry their config: `generate(params, X, y)` recovers a preset's or a
    shipped config from the shapes (`model.identify`); for any other config pass `config=`.
    """
    x = jnp.zeros((1, 8, config.max_features), jnp.float32)
    y = jnp.zeros((1, 8), jnp.float32 if config.task == "regression" else jnp.int32)
    return MotherNet(config).init(key, x, y, jnp.array([8]))["params"]


def abstract_params(config: ModelConfig) -> dict:
    """The params pytree of `config` as `jax.ShapeDtypeStruct`s (`jax.eval_shape`, nothing
    allocated)."""
    return jax.eval_shape(lambda key: init_params(key, config), jax.random.key(0))


def count_params(config: ModelConfig) -> int:
    """Exact number of parameters, computed with `jax.eval_shape` (nothing is allocated)."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(abstract_params(config)))
