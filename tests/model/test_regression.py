"""The regression model (ModelConfig.task="regression"): its config, shapes, and `generate` for a
continuous target, eager and under jit, vmap and grad, with no config argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import assert_same_child, random_model, three_tables

import mothernet_jax as mn
from mothernet_jax.generation import generate_batch, standardise_target, valid_dataset
from mothernet_jax.model import identify
from mothernet_jax.runtime.child import numpy_predict_regression, to_numpy


@pytest.fixture(scope="module")
def tiny():
    params = random_model("tiny-regression")
    rng = np.random.default_rng(0)
    X = three_tables(rng)
    y = (X[..., 0] * 2.0 - X[..., 1] + rng.normal(size=(3, 40)) * 0.1 + 50.0).astype(np.float32)
    return params, X, y


# -- config -----------------------------------------------------------------------------------------


def test_task_is_validated_in_one_line():
    with pytest.raises(ValueError, match="ModelConfig.task must be one of") as error:
        mn.ModelConfig(task="ranking")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="'class_average' needs classes") as error:
        mn.ModelConfig(task="regression")  # the default pooling is class_average
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="'target_bins' needs a continuous target"):
        mn.ModelConfig(pooling="target_bins")
    for pooling in ("target_bins", "target_moments", "average", "output_attention"):
        assert mn.ModelConfig(task="regression", pooling=pooling).pooling == pooling
    assert mn.ModelConfig().task == "classification"
    assert mn.preset("paper") == mn.ModelConfig()


def test_regression_presets_are_the_classification_shapes_with_one_output():
    tiny, small = mn.preset("tiny-regression"), mn.preset("small-regression")
    assert tiny == mn.preset("tiny").replace(task="regression", pooling="target_moments")
    assert small == mn.preset("small").replace(task="regression", pooling="target_moments")
    for config in (tiny, small):
        assert config.n_outputs == 1 and config.y_inputs == 1 and config.pooled_size == 2 * config.embed_dim
        assert mn.ModelConfig.from_json(config.to_json()) == config
    # the small regression model: 6 x 192 transformer, head 384 -> 448 -> N_out, child ... -> 1
    assert small.n_generated == (128 + 1) * 1 + 100 * 16 + 128 + (128 * 16 + 128)
    assert mn.count_params(small) == 3_789_313
    params = jax.eval_shape(lambda k: mn.init_params(k, small), jax.random.key(0))
    assert params["y_encoder"]["linear"]["kernel"].shape == (1, 192)
    assert params["weight_head"]["hidden_0"]["kernel"].shape == (384, 448)


@pytest.mark.parametrize("name", ["tiny-regression", "small-regression"])
def test_the_config_is_recovered_from_the_shapes(name):
    config = mn.preset(name)
    params = jax.eval_shape(lambda k: mn.init_params(k, config), jax.random.key(0))
    assert identify.config_of(params) == config
    # the classification model of the same sizes is another config
    classify = config.replace(task="classification", pooling="average")
    classify = jax.eval_shape(lambda k: mn.init_params(k, classify), jax.random.key(0))
    with pytest.raises(identify.UnknownConfigError):
        identify.config_of(classify)


def test_target_poolings_by_hand():
    from mothernet_jax.model import pooling

    rng = np.random.default_rng(0)
    outputs = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
    z = jnp.asarray([[-2.0, -0.1, 0.1, 2.0, 0.5, 9.0], [1.0, -1.0, 0.0, 0.0, 0.0, 0.0]])
    mask = jnp.asarray([[True] * 5 + [False], [True] * 2 + [False] * 4])
    moments = np.asarray(pooling.target_moments(outputs, z, mask))
    for b, n in ((0, 5), (1, 2)):
        o, t = np.asarray(outputs[b, :n]), np.asarray(z[b, :n])
        np.testing.assert_allclose(moments[b], np.concatenate([o.mean(0), (o * t[:, None]).mean(0)]), rtol=1e-5)
    # two bins cut at 0: the rows below the target's median and those above, in that order
    bins = np.asarray(pooling.target_bins(outputs, z, mask, 2)).reshape(2, 2, 3)
    o = np.asarray(outputs[0])
    np.testing.assert_allclose(bins[0, 0], o[:2].mean(0), rtol=1e-5)
    np.testing.assert_allclose(bins[0, 1], o[2:5].mean(0), rtol=1e-5)
    assert pooling.target_bin_edges(4) == pytest.approx((-0.6744898, 0.0, 0.6744898))
    for name in ("target_bins", "average", "output_attention"):  # each a regression model (shapes)
        config = mn.preset("tiny-regression").replace(pooling=name)
        params = mn.model.mothernet.abstract_params(config)
        child = jax.eval_shape(lambda p, c=config: mn.generate(p, outputs[0], jnp.arange(6.0), config=c), params)
        assert child.layers[-1][0].shape == (32, 1)


# -- generate ---------------------------------------------------------------------------------------


def test_generate_returns_a_child_with_one_output_in_the_targets_units(tiny):
    params, X, y = tiny
    child = mn.generate(params, X[0], y[0])
    assert [tuple(w.shape) for w, _ in child.layers] == [(5, 32), (32, 32), (32, 1)]
    prediction = mn.predict_regression(child, X[0])
    assert prediction.shape == (40,) and np.all(np.isfinite(prediction))
    # y enters standardised and the output layer is mapped back: an increasing affine change of y
    # changes the predictions by the same map, and nothing else
    moved = mn.predict_regression(mn.generate(params, X[0], 3.0 * y[0] - 500.0), X[0])
    np.testing.assert_allclose(moved, 3.0 * prediction - 500.0, rtol=1e-5, atol=1e-3)
    flipped = mn.predict_regression(mn.generate(params, X[0], -y[0]), X[0])  # the model sees -z
    assert np.abs(np.asarray(flipped) + np.asarray(prediction)).max() > 1e-2
    # so the child's prediction is (the standardised prediction) * std + mean of the training rows
    z, mean, std = standardise_target(jnp.asarray(y[:1]), jnp.array([40]))
    np.testing.assert_allclose(float(mean[0]), y[0].mean(), rtol=1e-6)
    np.testing.assert_allclose(float(std[0]), y[0].std(ddof=1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(z[0]), (y[0] - y[0].mean()) / y[0].std(ddof=1), atol=1e-5)
    # the NumPy path gives the same predictions
    np.testing.assert_allclose(numpy_predict_regression(to_numpy(child), X[0]), prediction, rtol=1e-5, atol=1e-4)


def test_a_constant_target_or_one_row_gives_that_constant(tiny):
    params, X, _ = tiny
    for rows in (40, 1):
        child = mn.generate(params, X[0, :rows], np.full(rows, 4.25, np.float32))
        np.testing.assert_array_equal(np.asarray(mn.predict_regression(child, X[1])), 4.25)


def test_jit_and_padding_give_the_eager_child(tiny):
    params, X, y = tiny
    eager = mn.generate(params, X[0], y[0], read_out="generated")
    jitted = jax.jit(lambda p, X, y: mn.generate(p, X, y, read_out="generated"))(params, X[0], y[0])
    assert_same_child(jitted, eager)
    # rows beyond n_rows and columns beyond n_features are ignored, whatever they hold
    X_pad = np.concatenate([X[0], np.full((24, 5), np.nan, np.float32)])
    X_pad = np.concatenate([X_pad, np.full((64, 2), np.inf, np.float32)], axis=1)
    y_pad = np.concatenate([y[0], np.full(24, np.inf, np.float32)])
    padded = jax.jit(lambda X, y, n, d: mn.generate(params, X, y, n_rows=n, n_features=d, read_out="generated"))(
        X_pad, y_pad, 40, 5
    )
    np.testing.assert_allclose(
        mn.predict_regression(padded, np.pad(X[1], ((0, 0), (0, 2)))), mn.predict_regression(eager, X[1]),
        rtol=1e-5, atol=1e-4,
    )  # fmt: skip


def test_vmap_over_datasets_equals_a_loop_and_generate_batch(tiny):
    params, X, y = tiny
    batched = jax.jit(jax.vmap(lambda X, y: mn.generate(params, X, y, read_out="generated")))(X, y)
    for i in range(3):
        one = mn.generate(params, X[i], y[i], read_out="generated")
        assert_same_child(jax.tree_util.tree_map(lambda a, i=i: a[i], batched), one)
    n = np.full(3, 40)
    assert_same_child(jax.jit(generate_batch)(params, X, y, n, np.full(3, 5)), batched)


def _mse(params, X_train, y_train, X_test, y_test):
    child = mn.generate(params, X_train, y_train)
    return jnp.mean((mn.predict_regression(child, X_test) - y_test) ** 2)


def test_grad_through_generate_is_finite_and_reaches_every_part(tiny):
    params, X, y = tiny
    grad = jax.jit(jax.grad(_mse, argnums=(0, 2)))
    grads, grad_y = grad(params, X[0], y[0], X[1], y[1])
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        assert np.all(np.isfinite(g)), path
    assert float(jnp.abs(grads["y_encoder"]["linear"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["weight_head"]["output"]["kernel"]).sum()) > 0
    # with respect to the targets: finite, non-zero, and as finite differences say
    assert np.all(np.isfinite(grad_y)) and np.any(grad_y)
    direction = np.random.default_rng(1).normal(size=40).astype(np.float32)
    eps = 1e-2
    mse = jax.jit(_mse)
    f = lambda t: float(mse(params, X[0], y[0] + t * direction, X[1], y[1]))
    numeric = (f(eps) - f(-eps)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(grad_y, direction)), numeric, rtol=5e-2, atol=1e-2)
    # a constant target: the gradient stays finite
    constant = grad(params, X[0], np.full(40, 3.0, np.float32), X[1], y[1])
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(constant))


def test_bad_input_raises_one_line(tiny):
    params, X, y = tiny
    cases = [
        (dict(y=np.where(np.arange(40) == 3, np.nan, y[0])), "finite targets"),
        (dict(y=np.where(np.arange(40) == 3, np.inf, y[0])), "finite targets"),
        (dict(y=np.array(["a"] * 40)), "numeric targets"),
        (dict(y=y[0, :30]), "same number of rows"),
        (dict(n_classes=2), "n_classes is for classification"),
    ]
    for change, message in cases:
        arguments = dict(X=X[0], y=y[0]) | change
        with pytest.raises(ValueError, match=message) as error:
            mn.generate(params, **arguments)
        assert "\n" not in str(error.value)
    # traced: the target's check is a traced bool
    assert bool(valid_dataset(X[0], y[0], None))
    assert not bool(jax.jit(lambda y: valid_dataset(X[0], y, None))(jnp.asarray(y[0]).at[2].set(np.nan)))
    assert bool(valid_dataset(X[0], jnp.asarray(y[0]).at[2].set(np.nan), None, n_rows=2))
