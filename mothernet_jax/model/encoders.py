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
    """Classification: one-hot over max_classes, then Linear(max_classes -> d). Regression: the
    standardised float target as a 1-vector, then Linear(1 -> d). A masked row gets a zero input."""

    config: ModelConfig

    @nn.compact
    def __call__(self, y: jax.Array, row_mask: jax.Array) -> jax.Array:
        """y: (...,) int labels (classification) or float standardised targets (regression),
        row_mask: (...,) bool -> (..., d)."""
        cfg = self.config
        if cfg.task == "regression":
            inputs = jnp.where(row_mask, y.astype(jnp.float32), 0.0)[..., None]
        else:
            inputs = jax.nn.one_hot(y, cfg.max_classes) * row_mask[..., None]
        return torch_dense(cfg.embed_dim, cfg.y_inputs, dtype=cfg.dtype, name="linear")(inputs)
