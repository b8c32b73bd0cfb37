"""The controls of every accuracy claim: the untrained hypernetwork at the weights' default settings
(one key per split) and random ReLU features with the same read-out, in the benchmarks that choose."""

import json

import jax
import numpy as np
import pytest
from bench_helpers import two_datasets
from sklearn.metrics import roc_auc_score
from test_bench_regression import linear_data, write_regression

import mothernet_jax as mn
from mothernet_jax import settings
from mothernet_jax.benchmarks import levers, regression, regression_levers
from mothernet_jax.benchmarks.controls import RandomFeaturesClassifier, RandomFeaturesRegressor
from mothernet_jax.benchmarks.methods import METHODS, resolve_methods
from mothernet_jax.evaluation import regression_split
from mothernet_jax.pretrained import REGRESSION_NAME, load_info, shipped_path


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_untrained_is_the_shipped_config_and_settings_with_init_params_of_the_split_seed():
    model = METHODS["untrained"].build(np.array([False, True]), 7)
    params, config = model.weights
    shipped = mn.load_pretrained()
    assert config == shipped.config
    assert _leaves_equal(params, mn.init_params(jax.random.key(7), config))
    assert not _leaves_equal(params, METHODS["untrained"].build(np.zeros(2, bool), 8).weights[0])
    recommended = load_info()
    for name in settings.CLASSIFIER:  # the settings "auto" gives the shipped weights, spelled out
        assert model.get_params()[name] == recommended.get(name, settings.LIBRARY_DEFAULTS[name]), name
    assert model.random_state == 7 and model.categorical_features.tolist() == [False, True]
    regressor = regression.REGRESSION_METHODS["untrained"].build(np.zeros(2, bool), 3)
    assert regressor.weights[1] == mn.load_pretrained(shipped_path(REGRESSION_NAME)).config
    assert regressor.get_params()["output_layer"] == load_info(shipped_path(REGRESSION_NAME))["output_layer"]


def test_random_features_read_a_nonlinear_signal_that_a_linear_model_misses():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 4))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)  # XOR of two signs: no linear signal
    model = RandomFeaturesClassifier(random_state=0).fit(x[:500], y[:500])
    proba = model.predict_proba(x[500:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    assert roc_auc_score(y[500:], proba[:, 1]) > 0.85
    assert len(model.layers_) == 4 and [w.shape for w, _ in model.layers_[0]] == [(4, 128), (128, 128)]
    linear = METHODS["logistic_regression"].build(np.zeros(4, bool), 0).fit(x[:500], y[:500])
    assert roc_auc_score(y[500:], linear.predict_proba(x[500:])[:, 1]) < 0.65
    target = np.abs(x[:, 0]) + 0.1 * rng.normal(size=800)
    fitted = RandomFeaturesRegressor(random_state=0).fit(x[:500], target[:500])
    residual = target[500:] - fitted.predict(x[500:])
    assert 1 - residual.var() / target[500:].var() > 0.8


def test_random_features_follow_the_childs_shape_and_handle_categories_and_missing_values():
    factories, skipped = resolve_methods(["random_features"])
    assert not skipped
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(size=90), rng.integers(0, 4, 90)]).astype(float)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.arange(90) % 3
    model = factories["random_features"](np.array([False, True]), 0).fit(x[:60], y[:60])
    config = mn.load_pretrained().config
    assert (model.layers, model.width) == (config.child_hidden_layers, config.child_hidden_size)
    assert model.predict_proba(x[60:]).shape == (30, 3)


@pytest.mark.slow  # the map end to end; the controls' own tests above and test_bench_levers.py stay in the default run
def test_the_levers_map_runs_the_controls_beside_a_setting(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    two_datasets(data)
    out = tmp_path / "map"
    levers.main(["--data", str(data), "--out", str(out), "--settings", "untrained", "random_features",
                 "logistic_regression", "hist_gradient_boosting"])  # fmt: skip
    records = levers.read_records(out / "splits.jsonl")
    assert {(r["dataset"], r["method"]) for r in records if r["status"] == "ok"} == {
        (d, m) for d in ("tiny-binary", "tiny-multiclass")
        for m in ("untrained", "random_features", "logistic_regression", "hist_gradient_boosting")
    }  # fmt: skip
    table = (out / "levers.md").read_text()
    assert "| untrained |" in table and "| random_features |" in table


@pytest.mark.slow  # the map end to end: test_bench_regression_levers.py runs it in the default run, the controls are tested above
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_regression_map_runs_the_controls(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    names = ["lin-a", "lin-b", "lin-c"]
    for i, name in enumerate(names):
        write_regression(data, name, *linear_data(60 + 10 * i, seed=i))
    out = tmp_path / "map"
    regression_levers.main(["--data", str(data), "--out", str(out), "--settings", "untrained", "random_features",
                            "--splits", "1"])  # fmt: skip
    records = [json.loads(line) for line in (out / "splits.jsonl").read_text().splitlines()]
    validation = {n for n in names if regression_split(n) == "validation"}
    assert {(r["dataset"], r["method"]) for r in records if r["status"] == "ok"} == {
        (d, m) for d in validation for m in ("untrained", "random_features")
    }
    assert all(r["r2"] > 0.5 for r in records), [(r["method"], r["r2"]) for r in records]
