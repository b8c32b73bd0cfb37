"""`generate(params, X, y)` as a JAX user calls it: no config, under jit, vmap, grad and pmap, with
padding for ragged data, and with the checks that still apply when traced."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from model_helpers import (
    assert_directional_derivatives,
    assert_same_child,
    init_params,
    random_model,
    three_tables,
)

import mothernet_jax as mn
from mothernet_jax.generation import generate_batch
from mothernet_jax.model import identify
from mothernet_jax.model.mothernet import abstract_params


@pytest.fixture(scope="module")
def tiny():
    params = random_model("tiny")
    rng = np.random.default_rng(0)
    X = three_tables(rng)
    y = rng.integers(0, 3, size=(3, 40)).astype(np.int32)
    y[:, :3] = [0, 1, 2]  # every dataset has the 3 classes
    return params, X, y


@pytest.fixture(scope="module")
def shipped():
    return mn.load_pretrained()


# -- no config ----------------------------------------------------------------------------------


def test_shipped_weights_need_no_config(shipped, tiny):
    params, config = shipped
    _, X, y = tiny
    assert identify.config_of(params) == config
    assert_same_child(mn.generate(params, X[0], y[0]), mn.generate(params, X[0], y[0], config=config), 0)


@pytest.mark.parametrize("name", ["tiny", pytest.param("paper", marks=pytest.mark.slow)])
def test_init_params_of_a_preset_need_no_config(name, tiny):
    config = mn.preset(name)
    params = init_params(jax.random.key(0), config)
    _, X, y = tiny
    assert identify.config_of(params) == config
    # a copy made by tree_map is a new dict: only its names and shapes identify it
    copy = jax.tree_util.tree_map(jnp.asarray, params)
    assert identify.config_of(copy) == config
    assert_same_child(mn.generate(copy, X[0], y[0]), mn.generate(params, X[0], y[0], config=config), 0)


def test_a_custom_config_needs_config_or_a_candidate(tiny):
    config = mn.preset("tiny").replace(embed_dim=48, n_heads=3, ffn_dim=96)
    params = init_params(jax.random.key(1), config)
    _, X, y = tiny
    # making params registers nothing: the answer depends on the params and the arguments alone
    with pytest.raises(identify.UnknownConfigError, match="custom config cannot be recovered"):
        identify.config_of(params)
    assert identify.config_of(params, candidates=[config]) == config
    jitted = jax.jit(lambda p, X, y: mn.generate(p, X, y, n_classes=3, config=config))
    assert_same_child(jitted(params, X[0], y[0]), mn.generate(params, X[0], y[0], config=config))


def test_unknown_config_raises_a_clear_error_eager_and_traced(tiny):
    config = mn.preset("tiny").replace(embed_dim=40, n_heads=2)  # no preset
    params = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape), abstract_params(config))
    _, X, y = tiny
    with pytest.raises(identify.UnknownConfigError, match="Pass config=") as error:
        mn.generate(params, X[0], y[0])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="Pass config="):
        jax.jit(lambda p: mn.generate(p, X[0], y[0], n_classes=3))(params)
    child = mn.generate(params, X[0], y[0], config=config)  # config= still works
    assert child.layers[0][0].shape == (5, config.child_hidden_size)
    with pytest.raises(identify.UnknownConfigError, match="Flax variables"):
        identify.config_of({"params": params})
    with pytest.raises(identify.UnknownConfigError, match="pytree of arrays"):
        identify.config_of({"x_encoder": [1.0, 2.0]})


def test_configs_that_share_shapes_are_not_guessed(tiny):
    params, X, y = tiny
    assert identify.config_of(params) == mn.preset("tiny")
    four_heads = mn.preset("tiny").replace(n_heads=4)
    with pytest.raises(identify.UnknownConfigError, match="differ in n_heads"):
        identify.config_of(params, candidates=[four_heads])
    assert identify.config_of(params, candidates=[mn.preset("tiny")]) == mn.preset("tiny")
    mn.generate(params, X[0], y[0], config=four_heads)  # config= is taken as given


def test_the_answer_does_not_depend_on_what_the_process_did_before(tiny):
    params, _, _ = tiny
    bf16 = mn.preset("tiny").replace(dtype="bfloat16")
    before = identify.config_of(params)
    jax.eval_shape(lambda key: mn.init_params(key, bf16), jax.random.key(0))
    jax.eval_shape(lambda key: mn.init_params(key, mn.preset("tiny").replace(n_heads=4)), jax.random.key(0))
    assert identify.config_of(params) == before == mn.preset("tiny")
    # a candidate that differs only in dtype comes first and decides the dtype
    assert identify.config_of(params, candidates=[bf16]) == bf16


# -- jit, vmap, pmap ----------------------------------------------------------------------------


def test_jit_gives_the_eager_child(tiny):
    params, X, y = tiny  # the tiny preset: found without config=, as the shipped weights are
    config = mn.preset("tiny")
    jitted = jax.jit(lambda X, y: mn.generate(params, X, y, n_classes=3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # n_classes given: nothing to warn about
        assert_same_child(jitted(X[0], y[0]), mn.generate(params, X[0], y[0]))
    # without n_classes a traced call keeps every output, and says so; its first k are the eager child's
    with pytest.warns(UserWarning, match="without n_classes: the child has all max_classes=10 outputs"):
        every = jax.jit(lambda X, y: mn.generate(params, X, y))(X[0], y[0])
    assert every.layers[-1][0].shape == (config.child_hidden_size, config.max_classes)
    np.testing.assert_allclose(every.layers[-1][0][:, :3], jitted(X[0], y[0]).layers[-1][0], atol=1e-5)


def test_vmap_over_datasets_equals_a_loop(tiny):
    params, X, y = tiny
    batched = jax.jit(jax.vmap(lambda X, y: mn.generate(params, X, y, n_classes=3)))(X, y)
    for i in range(3):
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], batched)
        assert_same_child(one, mn.generate(params, X[i], y[i]))


def test_pmap_over_devices_equals_a_loop(tiny):
    params, X, y = tiny
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py forces eight CPU devices)")
    mapped = jax.pmap(lambda X, y: mn.generate(params, X, y, n_classes=3))(X[:2], y[:2])
    for i in range(2):
        assert_same_child(
            jax.tree_util.tree_map(lambda a, i=i: a[i], mapped), mn.generate(params, X[i], y[i])
        )


def test_padding_arguments_serve_ragged_data_from_one_compiled_function(tiny):
    params, X, y = tiny
    sizes = [(40, 5), (25, 3), (12, 4)]
    rng = np.random.default_rng(5)
    Xp = rng.normal(size=(3, 40, 5)).astype(np.float32) * 1e3  # garbage beyond the sizes...
    Xp[1, 30, 0] = Xp[2, 20, 1] = np.inf  # ...infinite values
    Xp[2, :, 4] = np.nan
    yp = rng.integers(0, 50, size=(3, 40)).astype(np.int32)  # ...and labels out of range
    for i, (n, d) in enumerate(sizes):
        Xp[i, :n, :d], yp[i, :n] = X[i, :n, :d], y[i, :n]
    n_rows, n_features = jnp.array([s[0] for s in sizes]), jnp.array([s[1] for s in sizes])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def one(X, y, n, d):
        return mn.generate(params, X, y, n_classes=10, n_rows=n, n_features=d, read_out="generated")

    singles = [one(Xp[i], yp[i], n_rows[i], n_features[i]) for i in range(3)]
    batched = jax.jit(
        jax.vmap(lambda X, y, n, d: mn.generate(params, X, y, n_classes=10, n_rows=n, n_features=d, read_out="generated"))
    )(Xp, yp, n_rows, n_features)
    assert_same_child(batched, jax.jit(generate_batch)(params, Xp, yp, n_rows, n_features), 1e-5)
    for i, (n, d) in enumerate(sizes):
        child = singles[i]
        eager = mn.generate(params, X[i, :n, :d], y[i, :n], n_classes=10, read_out="generated")
        np.testing.assert_allclose(child.layers[0][0][:d], eager.layers[0][0], atol=1e-5)
        assert not np.any(child.layers[0][0][d:])  # the padded features get no weight
        chex.assert_trees_all_close(child.layers[1:], eager.layers[1:], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(child.mean[:d], eager.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(child.std[:d], eager.std, rtol=1e-5, atol=1e-6)
        # the padded child classifies padded rows as the small child classifies the real ones
        np.testing.assert_allclose(
            mn.child_logits(child, Xp[i, :n]), mn.child_logits(eager, X[i, :n, :d]), atol=1e-4
        )
    # the fitted read-out (the default) reads the real rows and columns only, too
    fitted = jax.jit(
        jax.vmap(lambda X, y, n, d: mn.generate(params, X, y, n_classes=10, n_rows=n, n_features=d))
    )(Xp, yp, n_rows, n_features)
    for i, (n, d) in enumerate(sizes):
        child = jax.tree.map(lambda a, i=i: a[i], fitted)
        eager = mn.generate(params, X[i, :n, :d], y[i, :n], n_classes=10)
        assert np.all(np.isfinite(np.asarray(child.skip))) and not np.any(child.skip[d:])
        np.testing.assert_allclose(
            mn.predict_proba(child, Xp[i, :n]), mn.predict_proba(eager, X[i, :n, :d]), atol=2e-4
        )


# -- grad ---------------------------------------------------------------------------------------


def _test_loss(params, X, y, X_test, y_test):
    child = mn.generate(params, X, y, n_classes=3)
    logits = mn.child_logits(child, X_test)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y_test[:, None], axis=1))


def test_grad_with_respect_to_the_training_rows_matches_finite_differences(tiny, highest_precision):
    params, X, y = tiny
    X_train, y_train = X[0, :24, :3], y[0, :24]
    X_test, y_test = X[1, :, :3], y[1]
    loss = jax.jit(lambda X: _test_loss(params, X, y_train, X_test, y_test))
    grad = jax.jit(jax.grad(lambda X: _test_loss(params, X, y_train, X_test, y_test)))(X_train)
    assert grad.shape == X_train.shape and np.all(np.isfinite(grad)) and np.any(grad)
    assert_directional_derivatives(loss, grad, X_train, np.random.default_rng(7), eps=1e-2, rtol=2e-2, atol=2e-3)


@pytest.mark.slow  # test_model.py's gradients test takes them through generate_batch in the default run
def test_grad_with_respect_to_params_is_finite_and_nonzero(tiny):
    params, X, y = tiny
    data = (X[0], y[0], X[1], y[1])
    for grads in (
        # concrete data, closed over (generate pads on the host), compiled once rather than run
        # operation by operation
        jax.jit(jax.grad(lambda p: _test_loss(p, *data)))(params),
        jax.jit(jax.grad(_test_loss))(params, *map(jnp.asarray, data)),  # traced data
    ):
        norms = [float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads)]
        assert all(np.isfinite(norms)) and sum(norms) > 0
        assert float(jnp.abs(grads["x_encoder"]["linear"]["kernel"]).sum()) > 0


def test_grad_stays_finite_with_missing_values_and_constant_columns(tiny):
    params, X, y = tiny
    X_train = X[0].copy()
    X_train[::3, 0] = np.nan
    X_train[:, 1] = 2.0  # constant
    X_train[1:, 2] = np.nan  # a single observed value
    grad = jax.jit(jax.grad(lambda X: _test_loss(params, X, y[0], np.nan_to_num(X_train), y[0])))(X_train)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[::3, 0] == 0) and np.any(grad[1::3, 0])


# -- checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros((5, 3)), np.array([0, 1, 2, 10, 1]), r"0\.\.9"),
        (np.zeros((5, 3)), np.array([0, 1, 0.5, 1, 1]), "non-integer"),
        (np.array([[0.0, np.inf, 1.0]] * 5), np.zeros(5, int), "infinite values in column 1 "),
        (np.zeros((5, 101)), np.zeros(5, int), "at most 100"),
        (np.zeros((5, 3)), np.zeros(4, int), "same number of rows"),
    ],
)
def test_concrete_bad_input_raises_without_config(tiny, X, y, message):
    params, _, _ = tiny
    with pytest.raises(ValueError, match=message):
        mn.generate(params, X, y)


def test_checks_of_padded_and_traced_input(tiny):
    params, X, y = tiny
    X0, y0 = X[0].copy(), y[0].copy()
    X0[30, 0], y0[31] = np.inf, 42  # beyond n_rows: ignored
    mn.generate(params, X0, y0, n_rows=30)
    with pytest.raises(ValueError, match="infinite values in column 0 "):
        mn.generate(params, X0, y0, n_rows=31)
    with pytest.raises(ValueError, match=r"n_rows=41 must lie in 1\.\.40"):
        mn.generate(params, X0, y0, n_rows=41)
    with pytest.raises(ValueError, match="does not fit labels"):
        mn.generate(params, X[0], y[0], n_classes=2)
    with pytest.raises(TypeError, match="Python int"):
        jax.jit(lambda k: mn.generate(params, X[0], y[0], n_classes=k))(3)
    # shapes are checked when traced too
    with pytest.raises(ValueError, match="at most 100"):
        jax.jit(lambda X: mn.generate(params, X, np.zeros(5, np.int32)))(np.zeros((5, 101), np.float32))
    # values, when traced, are skipped by generate (no effects in a jitted caller) ...
    fit = jax.jit(lambda X, y: mn.generate(params, X, y, n_classes=3))
    assert not jax.make_jaxpr(fit)(X[0], y[0]).effects
    y_bad = y[0].copy()
    y_bad[4] = 3
    child = fit(X[0], y_bad)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(child))
    # ... and computed by valid_dataset, for a loss mask or checkify
    X_bad = X[0].copy()
    X_bad[2, 1] = -np.inf
    valid = jax.jit(mn.generation.valid_dataset, static_argnums=2)
    assert bool(valid(X[0], y[0], 3)) and not valid(X[0], y_bad, 3) and not valid(X_bad, y[0], 3)
    assert bool(valid(X_bad, y_bad, 3, n_rows=2))  # the bad entries lie beyond n_rows
    assert not valid(X[0], y[0].astype(np.float32) + 0.5, 3)

    def checked_fit(X, y):
        checkify.check(mn.generation.valid_dataset(X, y, 3), "bad training set")
        return mn.generate(params, X, y, n_classes=3)

    checked = checkify.checkify(jax.jit(checked_fit))
    assert checked(X[0], y[0])[0].get() is None
    assert "bad training set" in checked(X[0], y_bad)[0].get()
