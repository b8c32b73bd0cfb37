"""The hypernetwork: parameter counts, reference parity, invariances, compilation, bad input."""

import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import assert_same_child
from shared_data import FIXTURES, needs_fixtures

import mothernet_jax as mn
from mothernet_jax.generation import bucket_rows, generate_batch
from mothernet_jax.model.convert import from_reference
from mothernet_jax.model.mothernet import MotherNet, count_params
from mothernet_jax.model.weight_head import child_layers, split_generated
from mothernet_jax.runtime.child import factored_logits, numpy_predict_proba, to_numpy, weights_as
from mothernet_jax.runtime.predictor import ClassificationPredictor

FIXTURE_CONFIGS = ["tiny_class_average", "tiny_output_attention", "tiny_full_rank_one_layer"]


def reference_models() -> dict:
    return json.loads((FIXTURES / "reference_models.json").read_text())


def fixture_params(name):
    f = np.load(FIXTURES / f"{name}.npz")
    arrays = {k.removeprefix("state/"): f[k] for k in f.files if k.startswith("state/")}
    return f, from_reference(arrays, mn.preset(name))


# -- shapes and parameter counts ------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [("paper", 88_548_490), ("paper_2023", 149_660_810)])
def test_parameter_counts_of_the_paper_models(name, expected):
    assert count_params(mn.preset(name)) == expected


@needs_fixtures
@pytest.mark.parametrize("name", FIXTURE_CONFIGS)
def test_parameter_counts_match_the_reference(name):
    assert count_params(mn.preset(name)) == reference_models()[name]["n_params"]


def test_weight_head_output_length_is_the_documented_layout():
    assert mn.preset("paper").n_generated == 25_738


@needs_fixtures
def test_weight_head_output_length_matches_the_reference():
    ref = reference_models()
    for name in FIXTURE_CONFIGS:
        assert mn.preset(name).n_generated == ref[name]["state_dict_shapes"]["decoder.mlp.2.bias"][0]


def test_fresh_init_zeroes_the_output_projections(getkey):
    params = mn.init_params(getkey(), mn.preset("tiny"))
    layer = params["transformer"]["layer_0"]
    for part in (layer["attention"]["out"], layer["ffn_out"]):
        assert not np.any(part["kernel"]) and not np.any(part["bias"])
    assert np.any(layer["attention"]["qkv"]["kernel"])


# -- numerics against the reference fixtures --------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("name", FIXTURE_CONFIGS)
def test_parity_with_reference_fixtures(name, highest_precision):
    f, params = fixture_params(name)
    config = mn.preset(name)
    split = int(f["single_eval_pos"])
    x, y = f["x"].transpose(1, 0, 2), f["y"].T.astype(np.int32)
    out = MotherNet(config).apply({"params": params}, x[:, :split], y[:, :split], jnp.full((3,), split))
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-5)
    close(out.transformer_out, f["transformer_out"].transpose(1, 0, 2))
    close(out.pooled, f["pooled"].reshape(3, -1))
    generated = split_generated(out.generated, config)
    n_layers = len([k for k in f.files if k.startswith("generated/") and k.endswith("/weight")])
    assert len(generated) == n_layers
    for j, (weight, bias) in enumerate(generated):
        close(weight, f[f"generated/layer{j}/weight"])
        close(bias, f[f"generated/layer{j}/bias"])
    if config.low_rank:
        for j, shared in enumerate(out.shared):
            close(shared, f[f"shared_weights/{j}"])
    layers = child_layers(out.generated, out.shared, config)
    logits = jax.vmap(lambda layers, z: factored_logits(layers, z, jnp))(layers, jnp.asarray(np.nan_to_num(x[:, split:])))
    close(logits, f["logits"].transpose(1, 0, 2))


@needs_fixtures
def test_generate_and_numpy_export_reproduce_the_reference_classifier(highest_precision):
    c = np.load(FIXTURES / "classifier_tiny_class_average.npz")
    _, params = fixture_params("tiny_class_average")
    y = np.searchsorted(c["classes"], c["y_train"])
    child = to_numpy(mn.generate(params, c["X_train"], y, config=mn.preset("tiny_class_average"), read_out="generated"))
    np.testing.assert_allclose(child.mean, c["mean"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(child.std, c["std"], rtol=1e-5, atol=1e-5)
    for j, (weight, bias) in enumerate(child.layers):
        np.testing.assert_allclose(weight, c[f"exported/layer{j}/weight"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(bias, c[f"exported/layer{j}/bias"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numpy_predict_proba(child, c["X_test"]), c["predict_proba"], atol=1e-5)
    jax_proba = mn.predict_proba(
        mn.generate(params, c["X_train"], y, config=mn.preset("tiny_class_average"), read_out="generated"), c["X_test"]
    )
    np.testing.assert_allclose(np.asarray(jax_proba), c["predict_proba"], atol=1e-5)


# -- invariances ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    config = mn.preset("tiny")
    params = mn.init_params(jax.random.key(3), config)
    # random weights everywhere, so that no invariance holds by accident of a zero init
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [leaf + 0.05 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)]
    )
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 7)).astype(np.float32) * 3 + 1
    X[rng.random(X.shape) < 0.05] = np.nan
    y = rng.integers(0, 4, size=90)
    return config, params, X, y


def test_permuting_training_rows_leaves_the_child_unchanged(tiny):
    config, params, X, y = tiny
    perm = np.random.default_rng(1).permutation(len(y))
    assert_same_child(
        mn.generate(params, X, y, config=config), mn.generate(params, X[perm], y[perm], config=config)
    )


def test_padding_rows_and_features_behind_the_mask_changes_nothing(tiny):
    generate_batch_jit = jax.jit(generate_batch, static_argnames="config")
    config, params, X, y = tiny
    n, d = X.shape
    rng = np.random.default_rng(2)

    def batch(rows, features):
        Xp = rng.normal(size=(1, rows, features)).astype(np.float32) * 50  # garbage behind the masks
        Xp[0, :n, :d] = X
        yp = rng.integers(0, config.max_classes, size=(1, rows)).astype(np.int32)
        yp[0, :n] = y
        return generate_batch_jit(params, Xp, yp, jnp.array([n]), jnp.array([d]), config=config)

    small, large = batch(128, 7), batch(256, 100)
    np.testing.assert_allclose(small.layers[0][0][0], large.layers[0][0][0, :d], atol=1e-5)
    assert not np.any(large.layers[0][0][0, d:])  # the padded features get no weight
    for (wa, ba), (wb, bb) in zip(small.layers[1:], large.layers[1:], strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-5)
        np.testing.assert_allclose(ba, bb, atol=1e-5)


def test_the_child_gives_one_probability_per_class_of_the_training_set(tiny):
    config, params, X, y = tiny
    child = mn.generate(params, X, y, config=config)
    proba = np.asarray(mn.predict_proba(child, X))
    assert proba.shape == (len(y), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_a_second_call_in_the_same_bucket_does_not_recompile(tiny, monkeypatch):
    config, params, X, y = tiny
    from mothernet_jax import generation

    # a fresh jit of the same core, whose traces chex counts: at most one per row bucket
    core = chex.assert_max_traces(generation.generate_batch, n=1)
    jitted = jax.jit(core, static_argnames=("config", "attention"))
    monkeypatch.setattr(generation, "generate_batch_jit", jitted)
    mn.generate(params, X[:40], y[:40], config=config)  # compiles the 128-row bucket
    mn.generate(params, X[:70, :3], y[:70], config=config)
    mn.generate(params, X, y, config=config)
    with pytest.raises(AssertionError, match="trace"):  # 180 rows: the next bucket, a new trace
        mn.generate(params, np.tile(X, (2, 1)), np.tile(y, 2), config=config)
    assert bucket_rows(1) == 128 and bucket_rows(128) == 128 and bucket_rows(129) == 256
    assert bucket_rows(180) == 256 and bucket_rows(257) == 384  # multiples of 128, not powers of two


def test_generate_batch_is_jittable_and_vmappable(tiny):
    config, params, X, y = tiny
    Xb = np.zeros((3, 128, 7), np.float32)
    yb = np.zeros((3, 128), np.int32)
    Xb[:, :90], yb[:, :90] = X, y
    fn = jax.jit(
        lambda p, a, b: generate_batch(p, a, b, jnp.array([90, 60, 30]), jnp.array([7, 5, 2]), config=config)
    )
    children = fn(params, Xb, yb)
    one = mn.generate(params, X[:60, :5], y[:60], config=config, n_classes=10)
    np.testing.assert_allclose(children.layers[0][0][1, :5], one.layers[0][0], atol=1e-5)
    logits = jax.jit(jax.vmap(mn.child_logits))(children, Xb)
    assert logits.shape == (3, 128, 10) and np.all(np.isfinite(logits))


def test_gradients_flow_through_the_generated_child(tiny):
    config, params, X, y = tiny
    Xn = np.nan_to_num(X)

    def loss(p):
        child = generate_batch(
            p, Xn[None], y[None].astype(np.int32), jnp.array([90]), jnp.array([7]), config=config
        )
        child = jax.tree_util.tree_map(lambda a: a[0], child)
        logits = mn.child_logits(child, Xn)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    grads = jax.jit(jax.grad(loss))(params)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0


def test_nan_is_accepted_and_infinity_is_not(tiny):
    config, params, X, y = tiny
    child = mn.generate(params, X, y, config=config)
    assert np.all(np.isfinite(np.asarray(mn.child_logits(child, X))))
    X_all_nan_column = X.copy()
    X_all_nan_column[:, 2] = np.nan
    child = mn.generate(params, X_all_nan_column, y, config=config)
    assert np.all(np.isfinite(np.asarray(mn.child_logits(child, X_all_nan_column))))


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros(5), np.zeros(5, int), "2-D"),
        (np.zeros((5, 3)), np.zeros(4, int), "same number of rows"),
        (np.zeros((0, 3)), np.zeros(0, int), "no rows"),
        (np.zeros((5, 101)), np.zeros(5, int), "at most 100"),
        (np.zeros((5, 3)), np.array([0, 1, 2, 10, 1]), r"0\.\.9"),
        (np.zeros((5, 3)), np.array([0, 1, -1, 1, 1]), r"0\.\.9"),
        (np.zeros((5, 3)), np.array([0, 1, 0.5, 1, 1]), "non-integer"),
        (np.zeros((5, 3)), np.array(["a", "b", "a", "b", "a"]), "integer class labels"),
        (np.array([[0.0, np.inf, 1.0]] * 5), np.zeros(5, int), "infinite"),
    ],
)
def test_bad_input_raises_a_clear_error(tiny, X, y, message):
    config, params, _, _ = tiny
    with pytest.raises(ValueError, match=message):
        mn.generate(params, X, y, config=config)


@needs_fixtures
def test_convert_rejects_arrays_of_another_config():
    f, _ = fixture_params("tiny_class_average")
    arrays = {k.removeprefix("state/"): f[k] for k in f.files if k.startswith("state/")}
    with pytest.raises(ValueError, match="missing"):
        from_reference(arrays, mn.preset("tiny_output_attention"))
    arrays["encoder.weight"] = arrays["encoder.weight"][:, :50]
    with pytest.raises(ValueError, match="encoder.weight"):
        from_reference(arrays, mn.preset("tiny_class_average"))


# -- the NumPy-only predictor -----------------------------------------------------------------------


def test_numpy_predictor_runs_without_jax(tiny, tmp_path):
    config, params, X, y = tiny
    child = mn.generate(params, X, y, config=config)
    path = tmp_path / "child.npz"
    ClassificationPredictor([child], classes=np.array(["a", "b", "c", "d"])).save(path)
    expected = np.asarray(mn.predict_proba(child, X))
    np.save(tmp_path / "X.npy", X)
    script = (
        "import sys, numpy as np\n"
        "from mothernet_jax import load_predictor\n"
        f"p = load_predictor({str(path)!r})\n"
        f"proba = p.predict_proba(np.load({str(tmp_path / 'X.npy')!r}))\n"
        "assert 'jax' not in sys.modules, 'jax was imported'\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, proba)\n"
        "print(p.predict(np.load(%r))[:3])\n" % str(tmp_path / "X.npy")
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def test_the_predictor_runs_the_childs_numpy_forward_pass(tiny):
    config, params, X, y = tiny
    child = to_numpy(mn.generate(params, X, y, config=config))
    X = np.array(X, np.float64)
    X[0, 1] = np.nan  # a raw column's missing value: standardised to 0 by the same code
    one = ClassificationPredictor([child], temperature=0.7).predict_proba(X)
    in_float64 = weights_as(child, np.float64)  # products in float64: the same in any batch
    np.testing.assert_array_equal(one, numpy_predict_proba(in_float64, X, 0.7))
    np.testing.assert_allclose(one, numpy_predict_proba(child, X, 0.7), atol=1e-6)
    np.testing.assert_allclose(one, np.asarray(mn.predict_proba(child, X, 0.7)), atol=1e-6)
    np.testing.assert_array_equal(ClassificationPredictor([child], temperature=0.7).predict_proba(X[::-1])[::-1], one)


def test_a_linear_child_has_one_layer(getkey):
    config = mn.preset("tiny").replace(child_hidden_layers=0)
    assert config.n_generated == 101 * 10
    params = mn.init_params(getkey(), config)
    X = np.random.default_rng(0).normal(size=(20, 4))
    y = np.arange(20) % 3
    child = mn.generate(params, X, y, config=config)
    assert len(child.layers) == 1 and child.layers[0][0].shape == (4, 3)
    assert np.asarray(mn.predict_proba(child, X)).shape == (20, 3)
