"""What the model tests share: a random model with every weight non-zero, the tables it reads, and
the comparison of two children, gradients against finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

import mothernet_jax as mn
from mothernet_jax.runtime.child import to_numpy

# jitted: one compilation instead of one per operation
init_params = jax.jit(mn.init_params, static_argnums=1)


def assert_same_child(a, b, tol=1e-5):
    chex.assert_trees_all_close(to_numpy(a), to_numpy(b), rtol=tol, atol=tol)


def assert_directional_derivatives(loss, grad, x, rng, *, eps, rtol, atol, draws=3):
    """`grad` (of scalar `loss` at `x`) matches central finite differences along `draws` random unit
    directions."""
    for _ in range(draws):
        direction = rng.normal(size=x.shape).astype(np.float32)
        direction /= np.linalg.norm(direction)
        numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
        np.testing.assert_allclose(float(jnp.vdot(grad, direction)), float(numeric), rtol=rtol, atol=atol)


@jax.jit
def perturbed(params, key):
    """Random weights everywhere (a fresh init zeroes some projections), as a new dict."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [leaf + 0.05 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)]
    )


def random_model(preset: str):
    """The params of `preset`, initialised with key 3 and perturbed with key 4."""
    return perturbed(init_params(jax.random.key(3), mn.preset(preset)), jax.random.key(4))


def three_tables(rng: np.random.Generator) -> np.ndarray:
    """(3, 40, 5) float32 features: 3 datasets of 40 rows and 5 columns, mean 1, std 3."""
    return (rng.normal(size=(3, 40, 5)) * 3 + 1).astype(np.float32)
