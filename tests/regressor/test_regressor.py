"""MotherNetRegressor end to end on a random `tiny-regression` model: scikit-learn conformance, parity
with `generate`, scale equivariance, bounded chunks, fine-tuning, export without JAX."""

import functools
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
from estimator_helpers import sklearn_checks
from sklearn.base import clone

import mothernet_jax as mn
from mothernet_jax.estimator.regressor import MotherNetRegressor
from mothernet_jax.runtime.child import numpy_predict_regression
from mothernet_jax.runtime.predictor import RegressionPredictor, load_predictor


def linear(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)


# -- scikit-learn conformance ------------------------------------------------------------------------


@sklearn_checks(
    MotherNetRegressor(
        n_estimators=2, random_state=0, finetune_steps=100, finetune_learning_rate=1e-2, output_layer="refit"
    ),
    {},
)
def test_sklearn_compatible(estimator, check, tiny_regression_weights):
    check(clone(estimator).set_params(weights=tiny_regression_weights))


# -- what fit computes -------------------------------------------------------------------------------


def test_one_member_is_generate_on_the_raw_table(tiny_regression_weights):
    X, y = linear(150)
    reg = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=1, max_train_rows=None, output_layer="generated").fit(X, y)
    child = mn.generate(tiny_regression_weights.params, X.astype(np.float32), y, read_out="generated")
    np.testing.assert_allclose(
        reg.predict(X), numpy_predict_regression(jax.tree_util.tree_map(np.asarray, child), X), rtol=1e-4, atol=1e-4 * y.std()
    )


def test_predictions_follow_an_affine_change_of_the_target(tiny_regression_weights):
    X, y = linear(160, seed=1)
    base = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=3, random_state=0).fit(X, y).predict(X)
    moved = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=3, random_state=0).fit(X, 1e6 + 250 * y).predict(X)
    np.testing.assert_allclose(moved, 1e6 + 250 * base, rtol=0, atol=1e-3 * 250 * y.std())
    assert np.std(base) > 0  # the members predict something, not a constant


def test_chunks_and_seeds(tiny_regression_weights, monkeypatch):
    X, y = linear(300, seed=2)
    one = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=5, max_train_rows=100, random_state=3).fit(X, y)
    again = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=5, max_train_rows=100, random_state=3).fit(X, y)
    np.testing.assert_array_equal(one.predict(X), again.predict(X))
    assert [m["n_rows"] for m in one.ensemble_] == [100] * 5
    from mothernet_jax.estimator import member_generation

    calls = []
    original = member_generation.generate_members

    def counted(*args, **kwargs):
        calls.append(args[1].shape[0])  # members in the call
        return original(*args, **kwargs)

    monkeypatch.setattr(member_generation, "generate_members", counted)
    monkeypatch.setattr(  # 128 padded rows a member: 2 members a call
        "mothernet_jax.estimator.fitting.generate_children",
        functools.partial(member_generation.generate_children, member_rows=128 * 2),
    )
    chunked = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=5, max_train_rows=100, random_state=3).fit(X, y)
    np.testing.assert_allclose(chunked.predict(X), one.predict(X), rtol=1e-4, atol=1e-4 * y.std())
    assert calls == [2, 2, 2]  # 5 members in calls of 2, the last padded


def test_fine_tuning_lowers_the_training_error(tiny_regression_weights):
    X, y = linear(200, seed=3)
    mse = {}
    for steps in (0, 100):
        reg = MotherNetRegressor(
            weights=tiny_regression_weights, n_estimators=2, random_state=0, finetune_steps=steps, finetune_learning_rate=1e-2,
            output_layer="generated",
        ).fit(X, y)  # fmt: skip
        mse[steps] = np.mean((reg.predict(X) - y) ** 2)
        assert reg.finetune_steps_ == steps
    assert mse[100] < 0.5 * mse[0], mse


# -- export ------------------------------------------------------------------------------------------


def test_export_predicts_the_same_without_jax(tiny_regression_weights, tmp_path):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {"a": rng.normal(size=120), "b": rng.choice(["x", "y", "z"], 120), "c": rng.normal(size=120)}
    )
    frame.loc[3, "a"] = np.nan
    y = frame["a"].fillna(0).to_numpy() * 3 + (frame["b"] == "x") * 2.0
    reg = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=3, random_state=0).fit(frame, y)
    path = tmp_path / "regressor.npz"
    reg.export(path)
    test = frame.iloc[:40].copy()
    test.loc[0, "b"] = "never seen"
    np.savez(tmp_path / "X.npz", a=test["a"].to_numpy(), b=test["b"].to_numpy(str), c=test["c"].to_numpy())
    script = f"""
import sys, numpy as np
from mothernet_jax import load_predictor
data = np.load({str(tmp_path / "X.npz")!r})
X = np.column_stack([data["a"].astype(object), data["b"].astype(object), data["c"].astype(object)])
np.save({str(tmp_path / "y.npy")!r}, load_predictor({str(path)!r}).predict(X))
assert "jax" not in sys.modules, "jax was imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reg.predict(test), rtol=1e-6, atol=1e-9)
    assert isinstance(load_predictor(path), RegressionPredictor)


def test_every_fine_tuning_lever_runs_on_the_squared_error(tiny_regression_weights):
    X, y = linear(200, seed=5)
    base = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=2, random_state=0, output_layer="generated").fit(X, y)
    for levers in (
        {"finetune_layers": "output"},
        {"finetune_rows": 32},
        {"finetune_holdout": 0.2},
    ):
        reg = MotherNetRegressor(
            weights=tiny_regression_weights, n_estimators=2, random_state=0, finetune_steps=50, finetune_learning_rate=1e-2,
            output_layer="generated", **levers,
        ).fit(X, y)  # fmt: skip
        assert reg.settings_ == {**base.settings_, "finetune_steps": 50, "finetune_learning_rate": 1e-2, **levers}
        changed = np.mean((reg.predict(X) - y) ** 2) < np.mean((base.predict(X) - y) ** 2)
        assert changed, levers  # each lowers the training error of random weights' children
    output_only = MotherNetRegressor(
        weights=tiny_regression_weights, n_estimators=1, random_state=0, finetune_steps=50, finetune_layers="output",
        output_layer="generated",
    ).fit(X, y)  # fmt: skip
    untouched = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=1, random_state=0, output_layer="generated").fit(X, y)
    tuned, generated = output_only.predictor_.children[0].layers, untouched.predictor_.children[0].layers
    for (w, b), (w0, b0) in zip(tuned[:-1], generated[:-1], strict=True):  # hidden layers as generated
        np.testing.assert_array_equal(dense(w), dense(w0))
        np.testing.assert_array_equal(b, b0)
    assert not np.array_equal(dense(tuned[-1][0]), dense(generated[-1][0]))  # the output layer moved


def dense(weight):
    return weight[0] @ weight[1] if isinstance(weight, tuple) else weight
