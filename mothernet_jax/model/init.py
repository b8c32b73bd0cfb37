"""Initialisers that reproduce PyTorch's defaults, so a fresh model starts where the reference does.

`nn.Linear` draws weight and bias from U(+-1/sqrt(fan_in)) (kaiming-uniform with a = sqrt(5));
`nn.MultiheadAttention` draws its input projections xavier-uniform with zero bias.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

# kaiming-uniform with a = sqrt(5): bound sqrt(3 * (1/3) / fan_in) = 1 / sqrt(fan_in)
torch_linear_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
xavier_uniform = nn.initializers.xavier_uniform()
zeros = nn.initializers.zeros


def torch_linear_bias(fan_in: int):
    """U(+-1/sqrt(fan_in)), the bias of a PyTorch `nn.Linear` with `fan_in` inputs."""
    bound = 1.0 / jnp.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(features: int, fan_in: int, *, dtype, name: str | None = None) -> nn.Dense:
    """A Dense layer initialised like `torch.nn.Linear(fan_in, features)`."""
    return nn.Dense(
        features,
        kernel_init=torch_linear_kernel,
        bias_init=torch_linear_bias(fan_in),
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )
