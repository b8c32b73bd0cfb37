"""Token encoders: a training row (x_i, y_i) becomes x_enc(x_i) + y_enc(y_i); no positional code."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.init import torch_dense


class XEncoder(nn.Module):
    """Linear(max_features -> d) on the padded feature vector; NaN counts as 0."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (..., max_features) float -> (..., d)."""
        x = jnp.where(jnp.isnan(x), 0.0, x)
        return torch_dense(
            self.config.embed_dim, self.config.max_features, dtype=self.config.dtype, name="linear"
        )(x)


class YEncoder(nn.Module):
    """One-hot over max_classes, then Linear(max_classes -> d); a masked row gets a zero one-hot."""

    config: ModelConfig

    @nn.compact
    def __call__(self, y: jax.Array, row_mask: jax.Array) -> jax.Array:
        """y: (...,) int labels, row_mask: (...,) bool -> (..., d)."""
        one_hot = jax.nn.one_hot(y, self.config.max_classes) * row_mask[..., None]
        return torch_dense(
            self.config.embed_dim, self.config.max_classes, dtype=self.config.dtype, name="linear"
        )(one_hot)
