"""The set transformer over training rows: post-norm encoder layers, exact GELU, no final norm,
as the reference.

Every row attends to every training row; padded rows are masked as keys through
`key_value_seq_lengths`, which requires the real rows to come first. That is the form the fused
cuDNN attention accepts, so the same code takes the fast path on GPU (`attention="cudnn"`). On a
CPU backend with no implementation named, attention takes `head_major_attention`, the same
computation in the layout XLA's CPU backend fuses into one kernel.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.init import torch_dense, xavier_uniform, zeros

MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # the logit of a padded key, as jax.nn uses


def zero_bias_dense(cfg: ModelConfig, features: int, kernel_init, name: str) -> nn.Dense:
    """A Dense layer with a zero bias, float32 parameters, computing in `cfg.dtype`."""
    return nn.Dense(
        features, kernel_init=kernel_init, bias_init=zeros, dtype=cfg.dtype, param_dtype=jnp.float32, name=name
    )


class SelfAttention(nn.Module):
    """PyTorch `nn.MultiheadAttention` with packed q/k/v and a zero-initialised output projection."""

    config: ModelConfig
    implementation: str | None = None  # None / "xla" / "cudnn", as jax.nn.dot_product_attention;
    # None on a CPU backend: head_major_attention

    @nn.compact
    def __call__(self, h: jax.Array, n_rows: jax.Array) -> jax.Array:
        """h: (B, T, d), n_rows: (B,) int, the first n_rows rows are real -> (B, T, d)."""
        cfg = self.config
        batch, rows, _ = h.shape
        head_dim = cfg.embed_dim // cfg.n_heads
        qkv = zero_bias_dense(cfg, 3 * cfg.embed_dim, xavier_uniform, "qkv")(h)
        if self.implementation is None and jax.default_backend() == "cpu":
            attended = head_major_attention(qkv.reshape(batch, rows, 3, cfg.n_heads, head_dim), n_rows)
        else:
            q, k, v = jnp.split(qkv.reshape(batch, rows, 3 * cfg.n_heads, head_dim), 3, axis=2)
            attended = jax.nn.dot_product_attention(
                q,
                k,
                v,
                key_value_seq_lengths=n_rows.astype(jnp.int32),
                implementation=self.implementation,
            )
        return zero_bias_dense(cfg, cfg.embed_dim, zeros, "out")(attended.reshape(batch, rows, cfg.embed_dim))


def head_major_attention(qkv: jax.Array, n_rows: jax.Array) -> jax.Array:
    """Softmax attention over the first n_rows keys, as `jax.nn.dot_product_attention` with
    `key_value_seq_lengths` computes it (logits and softmax in float32), in the form XLA's CPU
    backend runs fastest: q, k, v moved head-major (B, N, T, H) by one transpose, so that both
    products are plain batched matrix products it fuses with the softmax into one kernel (the
    generic form copies the (T, T) probabilities and each operand into other layouts apart; see
    docs/ARCHITECTURE.md section 5 for the timings).

    qkv: (B, T, 3, N, H) -> (B, T, N, H).
    """
    head_dim = qkv.shape[-1]
    q, k, v = jnp.moveaxis(qkv, 1, 3).swapaxes(0, 1)  # (B, N, T, H) each
    logits = jnp.einsum("bnth,bnsh->bnts", q, k, preferred_element_type=jnp.float32) * head_dim**-0.5
    real = jnp.arange(qkv.shape[1])[None, :] < n_rows[:, None]  # (B, S): padding comes last
    logits = logits + jnp.where(real, 0.0, MASKED)[:, None, None, :]
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bnts,bnsh->bnth", weights, v).swapaxes(1, 2)


def layer_norm(cfg: ModelConfig, name: str) -> nn.LayerNorm:
    """LayerNorm as the reference's (eps 1e-5), statistics in float32."""
    return nn.LayerNorm(epsilon=1e-5, dtype=cfg.dtype, param_dtype=jnp.float32, name=name)


class EncoderLayer(nn.Module):
    """h = LN(h + MHA(h)); h = LN(h + W2 gelu(W1 h)), as `nn.TransformerEncoderLayer(norm_first=False)`."""

    config: ModelConfig
    implementation: str | None = None

    @nn.compact
    def __call__(self, h: jax.Array, n_rows: jax.Array) -> jax.Array:
        cfg = self.config
        attended = SelfAttention(cfg, self.implementation, name="attention")(h, n_rows)
        h = layer_norm(cfg, "norm1")(h + attended)
        hidden = torch_dense(cfg.ffn_dim, cfg.embed_dim, dtype=cfg.dtype, name="ffn_in")(h)
        hidden = jax.nn.gelu(hidden, approximate=False)
        out = zero_bias_dense(cfg, cfg.embed_dim, zeros, "ffn_out")(hidden)
        return layer_norm(cfg, "norm2")(h + out)


class Transformer(nn.Module):
    """`n_layers` independent encoder layers."""

    config: ModelConfig
    implementation: str | None = None

    @nn.compact
    def __call__(self, h: jax.Array, n_rows: jax.Array) -> jax.Array:
        for i in range(self.config.n_layers):
            h = EncoderLayer(self.config, self.implementation, name=f"layer_{i}")(h, n_rows)
        return h
