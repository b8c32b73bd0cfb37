"""The set transformer over training rows: post-norm encoder layers, exact GELU, no final norm.

Every row attends to every training row; padded rows are masked as keys through
`key_value_seq_lengths`, which requires the real rows to come first. That is the form the fused
cuDNN attention accepts, so the same code takes the fast path on GPU (`attention="cudnn"`).
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.init import torch_dense, xavier_uniform, zeros


class SelfAttention(nn.Module):
    """PyTorch `nn.MultiheadAttention` with packed q/k/v and a zero-initialised output projection."""

    config: ModelConfig
    implementation: str | None = None  # None / "xla" / "cudnn", as jax.nn.dot_product_attention

    @nn.compact
    def __call__(self, h: jax.Array, n_rows: jax.Array) -> jax.Array:
        """h: (B, T, d), n_rows: (B,) int, the first n_rows rows are real -> (B, T, d)."""
        cfg = self.config
        batch, rows, _ = h.shape
        head_dim = cfg.embed_dim // cfg.n_heads
        qkv = nn.Dense(
            3 * cfg.embed_dim,
            kernel_init=xavier_uniform,
            bias_init=zeros,
            dtype=cfg.dtype,
            param_dtype=jnp.float32,
            name="qkv",
        )(h)
        q, k, v = jnp.split(qkv.reshape(batch, rows, 3 * cfg.n_heads, head_dim), 3, axis=2)
        attended = jax.nn.dot_product_attention(
            q,
            k,
            v,
            key_value_seq_lengths=n_rows.astype(jnp.int32),
            implementation=self.implementation,
        )
        return nn.Dense(
            cfg.embed_dim,
            kernel_init=zeros,
            bias_init=zeros,
            dtype=cfg.dtype,
            param_dtype=jnp.float32,
            name="out",
        )(attended.reshape(batch, rows, cfg.embed_dim))


class EncoderLayer(nn.Module):
    """h = LN(h + MHA(h)); h = LN(h + W2 gelu(W1 h)), as `nn.TransformerEncoderLayer(norm_first=False)`."""

    config: ModelConfig
    implementation: str | None = None

    @nn.compact
    def __call__(self, h: jax.Array, n_rows: jax.Array) -> jax.Array:
        cfg = self.config
        norm = lambda name: nn.LayerNorm(epsilon=1e-5, dtype=cfg.dtype, param_dtype=jnp.float32, name=name)
        h = norm("norm1")(h + SelfAttention(cfg, self.implementation, name="attention")(h, n_rows))
        hidden = torch_dense(cfg.ffn_dim, cfg.embed_dim, dtype=cfg.dtype, name="ffn_in")(h)
        hidden = jax.nn.gelu(hidden, approximate=False)
        out = nn.Dense(
            cfg.embed_dim,
            kernel_init=zeros,
            bias_init=zeros,
            dtype=cfg.dtype,
            param_dtype=jnp.float32,
            name="ffn_out",
        )(hidden)
        return norm("norm2")(h + out)


class Transformer(nn.Module):
    """`n_layers` independent post-norm encoder layers."""

    config: ModelConfig
    implementation: str | None = None

    @nn.compact
    def __call__(self, h: jax.Array, n_rows: jax.Array) -> jax.Array:
        for i in range(self.config.n_layers):
            h = EncoderLayer(self.config, self.implementation, name=f"layer_{i}")(h, n_rows)
        return h
