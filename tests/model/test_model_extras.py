"""Thinking rows, the one model extra the reference does not have (measured in docs/TRAINING.md's
recipe ablation): off by default with the reference's parameter tree, on with m * d parameters, and
still a set function of the training rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mothernet_jax as mn
from mothernet_jax.model.mothernet import MotherNet, abstract_params, count_params


def test_thinking_rows_are_off_by_default_and_the_parameter_tree_is_the_reference():
    for name in ("paper", "paper_2023", "small", "tiny"):
        assert mn.preset(name).thinking_rows == 0
    params = abstract_params(mn.preset("tiny"))  # the tree init_params makes, its leaves shapes
    assert set(params) == {"x_encoder", "y_encoder", "transformer", "weight_head"}
    assert set(params["transformer"]) == {"layer_0", "layer_1"}
    assert set(params["transformer"]["layer_0"]["norm1"]) == {"scale", "bias"}
    assert set(params["weight_head"]) == {"hidden_0", "output", "shared_0", "shared_1"}


def test_thinking_rows_add_m_times_d_parameters():
    base = mn.preset("small")
    config = base.replace(thinking_rows=16)
    assert count_params(config) - count_params(base) == 16 * base.embed_dim


def test_with_thinking_rows_the_model_stays_a_set_function_of_the_real_rows(getkey):
    config = mn.preset("tiny").replace(thinking_rows=4)
    params = mn.init_params(getkey(), config)
    # the output projections start at zero, which would hide attention (and the thinking rows)
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: jax.random.normal(jax.random.key(len(path)), p.shape) * 0.1
        if "out" in str(path) and "attention" in str(path)
        else p,
        params,
    )
    assert params["thinking_rows"].shape == (config.thinking_rows, config.embed_dim)
    x = jax.random.normal(getkey(), (1, 24, config.max_features))
    y = jax.random.randint(getkey(), (1, 24), 0, 3)
    n = jnp.array([20])
    forward = jax.jit(lambda p, x, y, n: MotherNet(config).apply({"params": p}, x, y, n).generated)
    apply = lambda x, y, n: forward(params, x, y, n)
    reference = apply(x, y, n)
    order = jnp.concatenate([jax.random.permutation(getkey(), 20), jnp.arange(20, 24)])
    np.testing.assert_allclose(apply(x[:, order], y[:, order], n), reference, rtol=1e-4, atol=1e-5)
    # padding rows beyond n_rows are masked: their content changes nothing
    noise = x.at[:, 20:].set(jax.random.normal(getkey(), (1, 4, config.max_features)))
    np.testing.assert_allclose(apply(noise, y, n), reference, rtol=1e-4, atol=1e-5)
    # the thinking rows take part: a different value changes the output
    moved = dict(params, thinking_rows=params["thinking_rows"] + 1.0)
    other = forward(moved, x, y, n)
    assert float(jnp.max(jnp.abs(other - reference))) > 1e-4


def test_a_bad_thinking_rows_value_names_the_field():
    with pytest.raises(ValueError, match="ModelConfig.thinking_rows"):
        mn.preset("tiny").replace(thinking_rows=-1)


# -- the CPU attention form -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, tolerance, thinking_rows",
    # bfloat16: the same function at another dtype (slow: it compiles both forms again)
    # thinking rows: the same attention with 3 more keys (their own test below stays in the default run)
    [("float32", 2e-6, 0), pytest.param("float32", 2e-6, 3, marks=pytest.mark.slow),
     pytest.param("bfloat16", 2e-2, 0, marks=pytest.mark.slow)],
)
def test_cpu_attention_form_equals_jax_dot_product_attention(dtype, tolerance, thinking_rows):
    # attention=None on CPU takes transformer.head_major_attention; "xla" is jax.nn's own form.
    # Ragged datasets (one of a single row), every weight nonzero, values and gradients alike.
    config = mn.preset("tiny").replace(dtype=dtype, thinking_rows=thinking_rows)
    params = mn.init_params(jax.random.key(0), config)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 128, config.max_features)), jnp.float32)
    y = jnp.asarray(rng.integers(0, config.max_classes, size=(3, 128)))
    n_rows = jnp.array([128, 57, 1])

    def loss(p, attention):
        out = MotherNet(config, attention).apply({"params": p}, x, y, n_rows)
        return out.generated.astype(jnp.float32).sum(), out

    (_, ours), grads = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(params, None)
    (_, theirs), grads_xla = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(params, "xla")
    real = np.arange(128)[None, :] < np.asarray(n_rows)[:, None]
    scale = lambda a: np.abs(np.asarray(a, np.float32)).max()
    for a, b in [(ours.transformer_out[real], theirs.transformer_out[real]), (ours.generated, theirs.generated)]:
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=tolerance * scale(b))
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_xla), strict=True):
        np.testing.assert_allclose(a, b, atol=tolerance * max(scale(b), 1e-6))
