"""MotherNetRegressor's parts that need no regression model: the members' plan without classes, the
member-standardised targets, the exported regressor (NumPy alone, in a process without JAX), the
MSE fine-tuning loss, and bad input in one line each."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from mothernet_jax.estimator.finetune import Finetune, finetune_children
from mothernet_jax.estimator.member_generation import _member_arrays, member_target_scales
from mothernet_jax.estimator.plan import plan_regression_members, target_bins
from mothernet_jax.estimator.regressor import MotherNetRegressor, check_target
from mothernet_jax.runtime.child import Child
from mothernet_jax.runtime.encoding import FeatureEncoder
from mothernet_jax.runtime.predictor import (
    ClassificationPredictor,
    PredictorFileError,
    RegressionPredictor,
    load_predictor,
)


def table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 3, n), rng.exponential(size=n)])
    y = 100 + 5 * X[:, 0] + rng.normal(size=n) + np.exp(2 * X[:, 2])  # a heavy right tail
    return X, y, np.array([False, True, False])


def planned(n, *, n_estimators, max_train_rows, seed):
    """(y, encoder, encoded, plans) of `table(n)`: the table encoded, its regression members planned
    (at most 100 columns, rng seeded by `seed`)."""
    X, y, mask = table(n)
    encoder = FeatureEncoder.fit(X, mask)
    encoded = encoder.transform(X)
    plans = plan_regression_members(
        encoder, encoded, y, n_estimators=n_estimators, max_train_rows=max_train_rows, max_features=100,
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    return y, encoder, encoded, plans


# -- the plan -------------------------------------------------------------------------------------


def test_target_bins_are_quantiles_in_the_order_of_y():
    y = np.arange(100.0)[::-1]
    bins = target_bins(y)
    np.testing.assert_array_equal(np.bincount(bins), np.full(10, 10))
    assert np.all(np.diff(bins[np.argsort(y)]) >= 0)
    ties = target_bins(np.r_[np.zeros(80), np.arange(1.0, 21.0)])  # the deciles 1..7 tie at 0
    np.testing.assert_array_equal(np.bincount(ties), [80, 10, 10])


def test_regression_members_keep_the_targets_spread_and_draw_rotations():
    y, encoder, encoded, plans = planned(3000, n_estimators=6, max_train_rows=200, seed=0)
    assert len(plans) == 6
    assert plans[0].feature_shift == 0 and not plans[0].quantile and not plans[0].onehot
    assert {(p.quantile, p.onehot) for p in plans[1:]} == {(True, True), (True, False), (False, True), (False, False)}
    for p in plans:
        assert p.n_groups == 1 and p.groups.shape == (0,) and p.label_shift == 0
        assert len(p.rows) == 200 and len(np.unique(p.rows)) == 200
        # stratified by deciles: every tenth of the target holds a tenth of the rows
        np.testing.assert_array_equal(np.bincount(target_bins(y)[p.rows], minlength=10), np.full(10, 20))
    assert len({tuple(p.rows) for p in plans}) == 6  # each member its own subsample
    few = plan_regression_members(
        encoder, encoded, y[:50], n_estimators=2, max_train_rows=None, max_features=100,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    np.testing.assert_array_equal(few[0].rows, np.arange(50))


def test_each_member_reads_its_rows_target_standardised():
    y, _, encoded, plans = planned(400, n_estimators=3, max_train_rows=100, seed=1)
    mean, std = member_target_scales(y, plans)
    _, labels, n_rows, _, n_groups = _member_arrays(encoded, y, plans, 128, 100, regression=True)
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(n_groups, [1, 1, 1])
    for m, p in enumerate(plans):
        z = labels[m, : n_rows[m]]
        assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-5
        np.testing.assert_allclose(z.astype(np.float64) * std[m] + mean[m], y[p.rows], rtol=0, atol=1e-6 * std[m])
        assert np.all(labels[m, n_rows[m] :] == 0)
    constant = member_target_scales(np.full(400, 7.0), plans)
    np.testing.assert_array_equal(constant[1], [1.0, 1.0, 1.0])


# -- the exported regressor ---------------------------------------------------------------------------


def random_regression_predictor(X, mask, n_members=3, seed=0):
    rng = np.random.default_rng(seed)
    encoder = FeatureEncoder.fit(X, mask)
    columns = [np.roll(np.arange(encoder.layout()[0].shape[0])[:3], m) for m in range(n_members)]
    children = [
        Child(
            ((rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)),
             (rng.normal(size=(8, 1)).astype(np.float32), rng.normal(size=1).astype(np.float32))),
            rng.normal(size=3).astype(np.float32),
            rng.uniform(0.5, 2, 3).astype(np.float32),
        )
        for _ in range(n_members)
    ]  # fmt: skip
    return RegressionPredictor(
        children,
        target_mean=rng.normal(size=n_members) * 1e6,
        target_std=rng.uniform(1, 10, n_members),
        encoder=encoder,
        columns=columns,
    )


def test_regression_predictor_averages_members_mapped_back_to_y():
    X, _, mask = table(50)
    predictor = random_regression_predictor(X, mask)
    encoded = predictor.encode(X)
    expected = np.zeros(len(X))
    for m, (child, columns) in enumerate(zip(predictor.children, predictor.columns, strict=True)):
        z = (encoded[:, columns] - child.mean) / child.std
        hidden = np.maximum(z @ child.layers[0][0] + child.layers[0][1], 0)
        output = (hidden @ child.layers[1][0] + child.layers[1][1])[:, 0]
        expected += output * predictor.target_std[m] + predictor.target_mean[m]
    np.testing.assert_allclose(predictor.predict(X), expected / 3, rtol=1e-5)
    assert not hasattr(predictor, "predict_proba")  # a regressor's predictor has no classes
    # a row predicts the same alone as in any batch (float64 weights; float32 kernels differ by size)
    single = np.concatenate([predictor.predict(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_array_equal(single, predictor.predict(X))


def test_regression_export_round_trip_without_jax(tmp_path):
    X, _, mask = table(60)
    X = X.astype(object)
    X[3, 1] = None  # a missing category
    predictor = random_regression_predictor(X, mask)
    path = tmp_path / "regressor.npz"
    predictor.save(path)
    np.save(tmp_path / "X.npy", X.astype(np.float64))
    script = f"""
import sys, numpy as np
from mothernet_jax import load_predictor
predictor = load_predictor({str(path)!r})
assert type(predictor).__name__ == "RegressionPredictor"
np.save({str(tmp_path / "y.npy")!r}, predictor.predict(np.load({str(tmp_path / "X.npy")!r})))
assert "jax" not in sys.modules, "jax was imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), predictor.predict(X.astype(np.float64)))
    loaded = load_predictor(path)
    assert isinstance(loaded, RegressionPredictor)
    np.testing.assert_array_equal(loaded.target_mean, predictor.target_mean)  # float64 kept
    # a classifier's loader refuses a regressor's file the other way round
    classifier_file = tmp_path / "classifier.npz"
    ClassificationPredictor(predictor.children[:1], encoder=predictor.encoder, columns=predictor.columns[:1]).save(
        classifier_file
    )
    assert type(load_predictor(classifier_file)) is ClassificationPredictor
    with pytest.raises(PredictorFileError, match="is an exported classifier, not a RegressionPredictor"):
        RegressionPredictor.load(classifier_file)


# -- fine-tuning ---------------------------------------------------------------------------------------


def test_mse_fine_tuning_fits_the_standardised_target():
    rng = np.random.default_rng(0)
    B, T, F, P = 2, 64, 4, 16
    X = rng.normal(size=(B, T, F)).astype(np.float32)
    target = (X[..., 0] * 2 - X[..., 1]).astype(np.float32)
    layers = [
        (jnp.asarray(rng.normal(size=(B, F, P)) * 0.3, jnp.float32), jnp.zeros((B, P))),
        (jnp.asarray(rng.normal(size=(B, P, 1)) * 0.3, jnp.float32), jnp.zeros((B, 1))),
    ]
    mean, std = jnp.zeros((B, F)), jnp.ones((B, F))
    n_rows, n_groups = np.array([T, T], np.int32), np.array([1, 1], np.int32)

    def mse(ls):
        hidden = jnp.maximum(jnp.einsum("btf,bfp->btp", X, ls[0][0]) + ls[0][1][:, None], 0)
        out = jnp.einsum("btp,bpo->bto", hidden, ls[1][0])[..., 0] + ls[1][1]
        return np.asarray(jnp.mean((out - target) ** 2, axis=1))

    tuned = finetune_children(
        layers, mean, std, X, target, n_rows, n_groups, finetune=Finetune(steps=200, learning_rate=1e-2),
        temperature=0.8, rng=np.random.default_rng(0), loss="mse",
    )  # fmt: skip
    before, after = mse(layers), mse(tuned)
    assert np.all(after < 0.2 * before), (before, after)
    with pytest.raises(ValueError, match="loss must be one of cross_entropy, mse"):
        finetune_children(
            layers, mean, std, X, target, n_rows, n_groups, finetune=Finetune(steps=1), temperature=1.0,
            rng=np.random.default_rng(0), loss="l1",
        )  # fmt: skip


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.array(["a", "1.5", "b"], object), "y must be numeric for a regressor; it holds 'a'"),
        (np.array([1.0, np.nan, 2.0]), "y contains 1 non-finite values .* the first in row 1"),
        (np.array([1.0, 2.0, -np.inf]), "y contains 1 non-finite values .* the first in row 2"),
        (np.array([1 + 1j, 2.0, 3.0]), "Complex data not supported: y holds complex numbers"),
        (None, "requires y to be passed, but the target y is None"),
    ],
)
def test_bad_targets_in_one_line(y, message):
    with pytest.raises(ValueError, match=message):
        check_target(y)
    with pytest.raises(ValueError, match=message):
        MotherNetRegressor(weights="unused.msgpack").fit(np.zeros((3, 2)), y)


def test_numbers_as_text_are_numbers():
    check_target(np.array(["1.5", "2", "-3e4"], object))
    check_target([1, 2, 3])


def test_one_row_and_classification_weights(tiny_weights, monkeypatch, tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="needs at least 2 training rows; got n_samples=1"):
        MotherNetRegressor(weights=tiny_weights).fit(X[:1], [1.0])
    with pytest.raises(ValueError, match="are a classification model; MotherNetRegressor needs a regression"):
        MotherNetRegressor(weights=tiny_weights).fit(X, np.arange(20.0))
    with monkeypatch.context() as patch:  # a package without regression weights
        patch.setattr("mothernet_jax.estimator.regressor.shipped_path", lambda name: tmp_path / f"{name}.msgpack")
        with pytest.raises(ValueError, match=r"no regression weights are shipped with this package \(small-regression"):
            MotherNetRegressor().fit(X, np.arange(20.0))
    with pytest.raises(ValueError, match="n_estimators must be an integer >= 1"):
        MotherNetRegressor(weights=tiny_weights, n_estimators=0).fit(X, np.arange(20.0))
