"""The regressor's refitted read-out (`output_layer="refit"`, `estimator.output_layer`): the GCV
ridge solution against scikit-learn's and a brute-force hat matrix, row blocks, and the fitted
regressor (children's hidden layers kept, the read-out the ridge fit, export, "auto")."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

import mothernet_jax as mn
from mothernet_jax import load_predictor
from mothernet_jax.estimator import output_layer
from mothernet_jax.estimator.output_layer import (
    ROW_BLOCK,
    Moments,
    read_out_features,
    ridge_gcv,
    ridge_output_layers,
)
from mothernet_jax.estimator.regressor import MotherNetRegressor
from mothernet_jax.pretrained import save_pretrained, update_info

CONFIG = mn.preset("tiny-regression")



def moments_of(H, t):
    moments = Moments(H.shape[1])
    moments.add(H, t)
    return moments


def test_ridge_gcv_is_ridge_at_the_gcv_best_penalty():
    rng = np.random.default_rng(0)
    H = np.maximum(rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)), 0) + 3.0  # off-centre, like relu units
    t = H @ rng.normal(size=6) + rng.normal(size=40)
    penalties = np.logspace(-3, 3, 13)
    fit = ridge_gcv(moments_of(H, t), penalties)
    reference = Ridge(alpha=fit.penalty).fit(H, t)
    np.testing.assert_allclose(fit.w, reference.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.b, reference.intercept_, rtol=1e-8)

    def gcv(penalty):  # the definition: centred hat matrix plus the intercept's 1/n
        Hc = H - H.mean(0)
        hat = Hc @ np.linalg.solve(Hc.T @ Hc + penalty * np.eye(6), Hc.T) + 1.0 / 40
        residual = t - hat @ t
        return np.mean(residual**2) / (1 - np.trace(hat) / 40) ** 2

    scores = [gcv(p) for p in penalties]
    assert fit.penalty == penalties[int(np.argmin(scores))]
    np.testing.assert_allclose(fit.gcv, min(scores), rtol=1e-8)
    assert penalties[0] < fit.penalty < penalties[-1]  # an inner optimum: the grid's ends are not forced


def test_ridge_gcv_dead_units_and_too_few_rows():
    rng = np.random.default_rng(1)
    H = np.zeros((30, 4))
    H[:, 1] = rng.normal(size=30)  # one live unit, three dead (relu never fires)
    t = 2.0 * H[:, 1] + 5.0
    fit = ridge_gcv(moments_of(H, t))
    np.testing.assert_array_equal(fit.w[[0, 2, 3]], 0.0)
    assert fit.w[1] == pytest.approx(2.0, rel=1e-3) and fit.b == pytest.approx(5.0, rel=1e-3)
    flat = ridge_gcv(moments_of(np.ones((5, 3)), np.arange(5.0)))  # nothing varies: the mean
    np.testing.assert_array_equal(flat.w, 0.0)
    assert flat.b == 2.0
    two = ridge_gcv(moments_of(rng.normal(size=(2, 8)), np.array([0.0, 1.0])))  # no residual dof
    assert np.all(np.isfinite(two.w)) and np.isfinite(two.b)


def test_the_refit_reads_every_row_in_any_block_size(tiny_regression_weights):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = X @ rng.normal(size=4) + 0.1 * rng.normal(size=300)
    reg = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=2, max_train_rows=64, random_state=0).fit(X, y)
    p = reg.predictor_
    encoded = p.encode(X)
    whole, noise = ridge_output_layers(p.children, encoded, p.columns, y, p.target_mean, p.target_std)
    blocks, noise7 = ridge_output_layers(p.children, encoded, p.columns, y, p.target_mean, p.target_std, row_block=7)
    np.testing.assert_allclose(noise, noise7, rtol=1e-6)
    for a, b in zip(whole, blocks, strict=True):
        np.testing.assert_allclose(a.layers[-1][0], b.layers[-1][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a.layers[-1][1], b.layers[-1][1], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a.skip, b.skip, rtol=1e-4, atol=1e-6)
    # every row, not the member's 64 context rows: the fit is scikit-learn's ridge on all 300 rows
    # of [hidden / scale, standardised inputs]
    x = encoded[:, p.columns[0]]
    scale = read_out_features(p.children[0], x[:ROW_BLOCK])[1]
    F, _ = read_out_features(p.children[0], x, scale)
    t = (y - p.target_mean[0]) / p.target_std[0]
    fit = ridge_gcv(moments_of(F, t))
    coef = Ridge(alpha=fit.penalty).fit(F, t).coef_
    width = whole[0].layers[-1][0].shape[0]
    np.testing.assert_allclose(whole[0].layers[-1][0][:, 0] * scale, coef[:width], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(whole[0].skip[:, 0], coef[width:], rtol=1e-3, atol=1e-5)
    assert whole[0].skip.shape == (len(p.columns[0]), 1)


def test_the_read_out_scale_is_over_every_row_whatever_their_order(tiny_regression_weights, monkeypatch):
    """Issue 31: the hidden features' scale was their std over the first ROW_BLOCK (8,192) rows, so
    that beyond them the fit depended on the rows' order. It is their std over every row: the same
    read-out for the rows in any order and any block size."""
    monkeypatch.setattr(output_layer, "ROW_BLOCK", 16)  # what 8,192 is to 100,000 rows
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    X[:16] *= 0.1  # the first block is not like the rest
    y = X @ rng.normal(size=4) + 0.1 * rng.normal(size=200)
    reg = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=2, max_train_rows=64, random_state=0).fit(X, y)
    p = reg.predictor_
    encoded = p.encode(X)
    order = rng.permutation(200)
    fitted, _ = ridge_output_layers(p.children, encoded, p.columns, y, p.target_mean, p.target_std, row_block=16)
    shuffled, _ = ridge_output_layers(
        p.children, encoded[order], p.columns, y[order], p.target_mean, p.target_std, row_block=32
    )
    for a, b in zip(fitted, shuffled, strict=True):
        np.testing.assert_allclose(a.layers[-1][0], b.layers[-1][0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a.skip, b.skip, rtol=1e-6, atol=1e-7)
    x = encoded[:, p.columns[0]]
    scale = read_out_features(p.children[0], x)[1]  # the std of the hidden features over all 200 rows
    F, _ = read_out_features(p.children[0], x, scale)
    t = (y - p.target_mean[0]) / p.target_std[0]
    width = fitted[0].layers[-1][0].shape[0]
    coef = Ridge(alpha=ridge_gcv(moments_of(F, t)).penalty).fit(F, t).coef_
    np.testing.assert_allclose(fitted[0].layers[-1][0][:, 0] * scale, coef[:width], rtol=1e-3, atol=1e-5)


def test_the_refitted_read_out_fits_the_target_and_keeps_the_hidden_layers(tiny_regression_weights, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 4))
    y = 50 + 10 * (X @ rng.normal(size=4)) + rng.normal(size=400)
    train, test = slice(0, 300), slice(300, None)

    def r2(reg):
        residual = y[test] - reg.predict(X[test])
        return 1 - np.mean(residual**2) / np.var(y[test])

    generated = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=2, random_state=0, output_layer="generated").fit(
        X[train], y[train]
    )
    ridge = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=2, random_state=0).fit(X[train], y[train])  # the default
    assert ridge.settings_["output_layer"] == "refit" and generated.settings_["output_layer"] == "generated"
    assert r2(ridge) > 0.8 and r2(ridge) > r2(generated) + 0.3, (r2(ridge), r2(generated))  # random weights
    for a, b in zip(ridge.predictor_.children, generated.predictor_.children, strict=True):
        for (w, bias), (w0, bias0) in zip(a.layers[:-1], b.layers[:-1], strict=True):
            np.testing.assert_array_equal(w[0] if isinstance(w, tuple) else w, w0[0] if isinstance(w0, tuple) else w0)
            np.testing.assert_array_equal(bias, bias0)
    assert all(c.skip is not None for c in ridge.predictor_.children)
    assert all(c.skip is None for c in generated.predictor_.children)
    path = tmp_path / "ridge.npz"
    ridge.export(path)
    np.testing.assert_allclose(load_predictor(path).predict(X[test]), ridge.predict(X[test]), rtol=1e-7)


def test_output_layer_auto_follows_the_manifest_and_bad_values_fail_in_one_line(tiny_regression_weights, tmp_path):
    path = tmp_path / "tiny-regression.msgpack"
    save_pretrained(path, tiny_regression_weights.params, CONFIG, info={"steps": 1}, dtype="float32")
    X = np.random.default_rng(4).normal(size=(80, 3))
    y = X[:, 0] * 2
    assert MotherNetRegressor(weights=path).fit(X, y).settings_["output_layer"] == "refit"  # the library's default
    update_info(path, {"output_layer": "generated", "n_estimators": 3, "max_train_rows": 50})
    auto = MotherNetRegressor(weights=path).fit(X, y)
    assert {k: auto.settings_[k] for k in ("output_layer", "n_estimators", "max_train_rows")} == {
        "output_layer": "generated",
        "n_estimators": 3,
        "max_train_rows": 50,
    }
    assert MotherNetRegressor(weights=path, output_layer="refit").fit(X, y).settings_["output_layer"] == "refit"
    with pytest.raises(ValueError, match=r"^output_layer must be one of generated, refit, refit_prior or 'auto', got 'lasso'$"):
        MotherNetRegressor(weights=path, output_layer="lasso").fit(X, y)


def test_the_predictive_std_is_calibrated_and_exported(tiny_regression_weights, tmp_path):
    """return_std: each member's error estimate is sqrt(GCV) in y's units; on new rows the predicted
    std is about the prediction's actual error (random weights: worse than the noise's 3) and the
    90% interval covers about 90% of them; the exported predictor gives the same std; the generated
    read-out has no estimate."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4))
    y = 100 + 20 * (X @ rng.normal(size=4)) + 3.0 * rng.normal(size=3000)
    train, test = slice(0, 1000), slice(1000, None)
    reg = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=3, random_state=0, output_layer="refit").fit(X[train], y[train])
    mean, std = reg.predict(X[test], return_std=True)
    np.testing.assert_array_equal(mean, reg.predict(X[test]))
    error = np.sqrt(np.mean((y[test] - mean) ** 2))
    assert np.all(std > 0) and 0.8 * error < np.sqrt(np.mean(std**2)) < 1.25 * error, (std.mean(), error)
    covered = np.mean(np.abs(y[test] - mean) <= 1.645 * std)
    assert 0.86 <= covered <= 0.95, covered
    path = tmp_path / "std.npz"
    reg.export(path)
    np.testing.assert_allclose(load_predictor(path).predict(X[test], return_std=True)[1], std, rtol=1e-9)
    generated = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=2, random_state=0, output_layer="generated").fit(
        X[train], y[train]
    )
    with pytest.raises(ValueError, match=r"^return_std needs .* output_layer='refit'$"):
        generated.predict(X[test], return_std=True)


def test_the_residual_moments_are_the_moments_of_the_residual_target():
    rng = np.random.default_rng(7)
    H, t, w0 = rng.normal(size=(50, 4)) + 1.0, rng.normal(size=50), rng.normal(size=4)
    residual, direct = moments_of(H, t).residual(w0), moments_of(H, t - H @ w0)
    for name in ("n", "h", "hh", "ht", "t", "tt"):
        np.testing.assert_allclose(getattr(residual, name), getattr(direct, name), rtol=1e-10, atol=1e-10)
    # the ridge toward w0 at a penalty a: w0 + ridge of the residual = argmin ||t - b - Hw||^2 + a ||w - w0||^2
    fit = ridge_gcv(moments_of(H, t).residual(w0), [2.0])
    Hc, tc = H - H.mean(0), t - t.mean()
    expected = np.linalg.solve(Hc.T @ Hc + 2.0 * np.eye(4), Hc.T @ tc + 2.0 * w0)
    np.testing.assert_allclose(fit.w + w0, expected, rtol=1e-9)


def test_refit_prior_under_an_overwhelming_penalty_predicts_as_generated_up_to_the_mean(tiny_regression_weights, monkeypatch):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 4))
    y = 3 * np.maximum(X[:, 0], 0) + X[:, 1] + 0.1 * rng.normal(size=300)
    kwargs = dict(weights=tiny_regression_weights, n_estimators=2, max_train_rows=64, random_state=0)
    generated = MotherNetRegressor(**kwargs, output_layer="generated").fit(X, y).predict(X)
    monkeypatch.setattr(output_layer, "RELATIVE_PENALTIES", np.array([1e12]))
    prior = MotherNetRegressor(**kwargs, output_layer="refit_prior").fit(X, y).predict(X)
    difference = prior - generated  # the same slopes; the intercept is fitted, unpenalised
    assert np.ptp(difference) < 1e-4 * np.std(generated) and abs(np.mean(prior) - np.mean(y)) < 1e-6 * np.std(y) + 1e-9
    monkeypatch.undo()
    fitted = MotherNetRegressor(**kwargs, output_layer="refit_prior").fit(X[:200], y[:200])
    assert fitted.settings_["output_layer"] == "refit_prior" and fitted.score(X[200:], y[200:]) > 0.8
