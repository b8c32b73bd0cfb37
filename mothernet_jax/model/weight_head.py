"""The weight head: an MLP from the pooled vector phi to the flat weights of the child.

Flat layout per dataset (docs/ARCHITECTURE.md section 1), each block row-major:
`W_out (P x K)`, `b_out (K)` (K = max_classes, or 1 for regression), `A1 (F x r)`, `b1 (P)`, then per further hidden layer `A_l (P x r)`,
`b_l (P)`. Full rank generates W1 (F x P) and W_l (P x P) in place of the A_l. With low rank, the
child's hidden weights are W_l = A_l S_l, where the factors S_l (r x P) are learned parameters of
the weight head, shared by every dataset.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.init import torch_dense

Layer = tuple[jax.Array, jax.Array]  # (weight (..., in, out), bias (..., out))


class WeightHead(nn.Module):
    """MLP |phi| -> H -> N_out, and the shared low-rank factors S_l."""

    config: ModelConfig

    @nn.compact
    def __call__(self, pooled: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """pooled: (B, |phi|) -> flat weights (B, N_out) float32, shared factors ((r, P), ...)."""
        cfg = self.config
        act = {"gelu": lambda z: jax.nn.gelu(z, approximate=False), "relu": jax.nn.relu}[cfg.head_activation]
        h = act(torch_dense(cfg.head_hidden_size, cfg.pooled_size, dtype=cfg.dtype, name="hidden_0")(pooled))
        flat = torch_dense(cfg.n_generated, cfg.head_hidden_size, dtype=cfg.dtype, name="output")(h)
        shared = ()
        if cfg.low_rank:
            init = lambda key, shape: jax.random.normal(key, shape) / cfg.rank
            shared = tuple(
                self.param(f"shared_{layer}", init, (cfg.rank, cfg.child_hidden_size))
                for layer in range(cfg.child_hidden_layers)
            )
        return flat.astype(jnp.float32), shared


def split_generated(flat: jax.Array, config: ModelConfig) -> list[Layer]:
    """Cut the flat head output into the child's layers as generated, first hidden layer first.

    flat: (..., N_out). Returns [(A1 or W1, b1), ..., (W_out, b_out)]: with low rank the hidden
    weights are the per-dataset factors A_l ((..., F, r), then (..., P, r)); the output layer
    (..., P, K) is last (for a linear child, (..., F, K)).
    """
    p, k, f = config.child_hidden_size, config.n_outputs, config.max_features
    lead = flat.shape[:-1]
    offset = 0

    def take(*shape):
        nonlocal offset
        size = 1
        for s in shape:
            size *= s
        block = flat[..., offset : offset + size].reshape(*lead, *shape)
        offset += size
        return block

    if config.child_hidden_layers == 0:
        return [(take(f, k), take(k))]
    out_layer = (take(p, k), take(k))
    width = config.rank if config.low_rank else p
    hidden = [(take(f, width), take(p))]
    for _ in range(config.child_hidden_layers - 1):
        hidden.append((take(p, width), take(p)))
    assert offset == flat.shape[-1], (offset, flat.shape)
    return hidden + [out_layer]


def child_layers(
    flat: jax.Array, shared: tuple[jax.Array, ...], config: ModelConfig, *, factored: bool = False
) -> list[Layer]:
    """The child's dense layers in the padded input space: W_l = A_l S_l with low rank.

    Returns [(W1 (..., F, P), b1), ..., (W_out (..., P, K), b_out)]. factored=True keeps a low-rank
    weight as its factors (A_l (..., in, r), S_l (..., r, P)), S_l broadcast to A_l's leading
    dimensions, as `runtime.child.factored_logits` applies them (r (in + P) per row instead of in x P).
    """
    layers = split_generated(flat, config)
    if config.low_rank and factored:
        return [
            ((a, jnp.broadcast_to(s, (*a.shape[:-2], *s.shape))), b)
            for (a, b), s in zip(layers[:-1], shared, strict=True)
        ] + layers[-1:]
    if config.low_rank:
        layers = [
            (jnp.einsum("...ir,ro->...io", a, s), b) for (a, b), s in zip(layers[:-1], shared, strict=True)
        ] + layers[-1:]
    return layers
