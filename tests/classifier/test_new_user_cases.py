"""What a new user and a careful reader tripped over (issue 31), one test a case: weights of the other
task, a child asked for the other task's prediction, NumPy numbers and scipy.stats distributions as
settings, a constant regression target, settings that contradict each other, a column whose kind
changed after fit, a regressor file that spoke of classes, and scikit-learn's checks at the
defaults."""


import numpy as np
import pandas as pd
import pytest
import scipy.stats
from estimator_helpers import random_weights, sklearn_checks
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import RandomizedSearchCV

import mothernet_jax as mn
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.estimator.compile_cache import default_cache_updates
from mothernet_jax.estimator.regressor import MotherNetRegressor
from mothernet_jax.pretrained import WeightFileError, save_pretrained, shipped_path, update_info
from mothernet_jax.runtime import child as child_module
from mothernet_jax.runtime.predictor import PredictorFileError, load_predictor


@pytest.fixture(scope="module")
def classification():
    """A random `tiny` classifier model."""
    return random_weights(mn.preset("tiny"), 3)


@pytest.fixture(scope="module")
def regression():
    """A random `tiny-regression` model."""
    return random_weights(mn.preset("tiny-regression"), 3)


def table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int), X @ np.array([1.0, -2.0, 0.5, 0.0])


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# -- weights of the other task -----------------------------------------------------------------------


def test_regression_weights_given_to_the_classifier_say_to_use_the_regressor(regression, tmp_path):
    X, y, _ = table()
    exported = tmp_path / "tiny-regression.msgpack"
    save_pretrained(exported, regression.params, regression.config, dtype="float32")
    for weights in (shipped_path("small-regression"), "small-regression", str(exported)):
        with pytest.raises(ValueError, match="are a regression model") as error:
            MotherNetClassifier(weights=weights, n_estimators=1).fit(X, y)
        assert one_line(error) == (
            f"weights {str(weights)!r} are a regression model (ModelConfig.task='regression'): use "
            "MotherNetRegressor with them"
        )
    with pytest.raises(ValueError, match="^the given weights are a regression model"):
        MotherNetClassifier(weights=regression, n_estimators=1).fit(X, y)


def test_a_child_refuses_the_other_tasks_prediction(classification, regression):
    X, y, target = table(60)
    classifier_child = child_module.to_numpy(mn.generate(classification.params, X, y))
    regression_child = child_module.to_numpy(mn.generate(regression.params, X, target))
    for predict in (mn.predict_regression, child_module.numpy_predict_regression):
        with pytest.raises(ValueError) as error:
            predict(classifier_child, X)
        assert one_line(error) == (
            "this child has 2 outputs, a classifier's (one per class): use predict_proba, not predict_regression"
        )
    for predict in (mn.predict_proba, child_module.numpy_predict_proba):
        with pytest.raises(ValueError) as error:
            predict(regression_child, X)
        assert one_line(error).startswith("this child has 1 output unit, a regressor's")
    assert np.asarray(mn.predict_proba(classifier_child, X)).shape == (60, 2)
    assert np.asarray(mn.predict_regression(regression_child, X)).shape == (60,)


# -- settings as scikit-learn's searches pass them ---------------------------------------------------


def test_randomized_search_over_scipy_distributions_fits_both_estimators(classification, regression):
    """scipy.stats draws NumPy numbers (np.int64, np.float64); every numbers.Integral / numbers.Real
    is taken, as scikit-learn's own parameter validation does, and settings_ holds Python's."""
    X, y, target = table(120)
    for estimator, third, labels in [
        (MotherNetClassifier(weights=classification, random_state=0), ("temperature", (0.5, 1.0)), y),
        (MotherNetRegressor(weights=regression, random_state=0), ("finetune_holdout", (0.0, 0.5)), target),
    ]:
        distributions = {
            "n_estimators": scipy.stats.randint(1, 4),
            "max_train_rows": scipy.stats.randint(30, 80),
            third[0]: scipy.stats.uniform(*third[1]),
        }
        search = RandomizedSearchCV(estimator, distributions, n_iter=2, cv=2, random_state=0, error_score="raise")
        chosen = search.fit(X, labels).best_estimator_.settings_
        assert type(chosen["n_estimators"]) is int and type(chosen["max_train_rows"]) is int
    clf = MotherNetClassifier(
        weights=classification,
        n_estimators=np.int64(2),
        temperature=np.float32(0.8),
        max_train_rows=np.int32(50),
    ).fit(X, y)
    assert (
        clf.settings_["n_estimators"] == 2
        and len(clf.ensemble_) == 2
        and clf.predictor_.temperature == pytest.approx(0.8)
    )
    with pytest.raises(
        ValueError, match=r"^n_estimators must be an integer >= 1 or 'auto', got np.float64\(2.0\)$"
    ):
        MotherNetClassifier(weights=classification, n_estimators=np.float64(2.0)).fit(X, y)
    with pytest.raises(
        ValueError, match=r"^max_train_rows must be an integer >= 1 or None or 'auto', got True$"
    ):
        MotherNetClassifier(weights=classification, max_train_rows=True).fit(X, y)
    with pytest.raises(ValueError, match=r"^temperature must be a positive number, got np.float32\(nan\)$"):
        MotherNetClassifier(weights=classification, temperature=np.float32("nan")).fit(X, y)


# -- a constant target ---------------------------------------------------------------------------------


@pytest.mark.parametrize("output_layer", ["refit", "generated"])
def test_a_constant_target_is_predicted_exactly_as_scikit_learns_regressors_do(
    regression, tmp_path, output_layer
):
    """A cross-validation fold can hold one target value: the regressor predicts it, for any row."""
    X, _, _ = table(300)
    reg = MotherNetRegressor(weights=regression, random_state=0, output_layer=output_layer).fit(
        X, np.full(300, 7.5)
    )
    new = np.random.default_rng(9).normal(scale=5.0, size=(50, 4))
    np.testing.assert_array_equal(reg.predict(new), np.full(50, 7.5))
    if output_layer == "refit":
        np.testing.assert_array_equal(reg.predict(new, return_std=True)[1], np.zeros(50))
    reg.export(tmp_path / "constant.npz")
    np.testing.assert_array_equal(load_predictor(tmp_path / "constant.npz").predict(new), np.full(50, 7.5))


# -- a child with no hidden layer, refitted -------------------------------------------------------------


def test_a_child_without_hidden_layers_refits_its_read_out_on_the_inputs_it_applies_it_to():
    """child_hidden_layers=0 with output_layer="refit": the read-out is fitted on what the forward
    pass applies it to (the standardised inputs, not their relu): on y = 3 relu(x0) + noise the
    refitted children are linear models of their members' inputs (raw, or quantile-transformed), as
    good as the least-squares line within 10%, and the GCV error estimate is their actual error
    (before: RMSE 2.32 against a claimed 0.010)."""
    config = mn.preset("tiny-regression").replace(child_hidden_layers=0)
    weights = random_weights(config, 0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1600, 3))
    y = 3 * np.maximum(X[:, 0], 0) + 0.1 * rng.normal(size=1600)
    train, test = slice(0, 800), slice(800, None)
    reg = MotherNetRegressor(weights=weights, n_estimators=2, random_state=0).fit(X[train], y[train])
    assert reg.settings_["output_layer"] == "refit"
    mean, std = reg.predict(X[test], return_std=True)
    rmse = np.sqrt(np.mean((y[test] - mean) ** 2))
    line = LinearRegression().fit(X[train], y[train]).predict(X[test])
    best_linear = np.sqrt(np.mean((y[test] - line) ** 2))  # about 0.9 (3 x 0.30 + the noise)
    assert rmse < 1.1 * best_linear and 0.8 * rmse < std[0] < 1.25 * rmse, (rmse, best_linear, std[0])


def test_a_classifier_child_without_hidden_layers_reads_its_standardised_inputs_fitted_and_applied(
    monkeypatch,
):
    """child_hidden_layers=0 with output_layer="refit", the classifier: `runtime.child.hidden_features` of a
    child without hidden layers is z, the standardised inputs, not relu(z), in the refit and in the
    forward pass alike, so each member predicts the logistic regression (C = 1) of its rows on
    [z / std(z), z], z computed here from the member's mean and std. Fine-tuning such a child
    (its one layer, the read-out the refit replaces) changes nothing the refit keeps."""
    from sklearn.linear_model import LogisticRegression

    from mothernet_jax.estimator import output_layer

    monkeypatch.setattr(output_layer, "LOGISTIC_TOL", 1e-10)  # the read-out solved to its optimum
    monkeypatch.setattr(output_layer, "LOGISTIC_MAX_ITER", 10_000)
    weights = random_weights(mn.preset("tiny").replace(child_hidden_layers=0), 0)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=300) < -0.3).astype(int)  # the negative side
    clf = MotherNetClassifier(weights=weights, n_estimators=1, random_state=0).fit(X, y)
    assert clf.settings_["output_layer"] == "refit"
    child, columns = clf.predictor_.children[0], clf.predictor_.columns[0]
    assert len(child.layers) == 1
    x = clf.predictor_.encode(X)[:, columns]
    z = child_module.standardise_rows(np.asarray(x, np.float32), child.mean, child.std, np).astype(np.float64)
    assert np.any(z < 0)
    np.testing.assert_array_equal(child_module.hidden_features(child.layers, z, np), z)
    F = np.concatenate([z / z.std(), z], axis=1)
    expected = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(F, y).predict_proba(F)
    np.testing.assert_allclose(clf.predict_proba(X), expected, atol=1e-5)
    tuned = MotherNetClassifier(weights=weights, n_estimators=1, random_state=0, finetune_steps=3).fit(X, y)
    assert tuned.finetune_steps_ == 3
    np.testing.assert_allclose(tuned.predict_proba(X), expected, atol=1e-5)


# -- settings that contradict each other ---------------------------------------------------------------


def test_fine_tuning_the_read_out_that_the_refit_replaces_is_refused_in_one_line(
    classification, regression, tmp_path
):
    X, y, target = table()
    message = (
        "finetune_layers='output' with output_layer='refit': the refit replaces the read-out that the "
        "fine-tuning changed; fine-tune finetune_layers='all' or keep output_layer='generated'"
    )
    for estimator, labels in (
        (MotherNetClassifier(weights=classification), y),
        (MotherNetRegressor(weights=regression), target),
    ):
        with pytest.raises(ValueError) as error:
            clone(estimator).set_params(finetune_steps=5, finetune_layers="output").fit(X, labels)
        assert one_line(error) == message
        clone(estimator).set_params(finetune_steps=5, finetune_layers="output", output_layer="generated").fit(
            X, labels
        )
    path = tmp_path / "tiny.msgpack"
    save_pretrained(path, classification.params, classification.config, dtype="float32")
    with pytest.raises(
        WeightFileError, match="the manifest recommends finetune_layers='output' with output_layer='refit'"
    ):
        update_info(path, {"finetune_steps": 5, "finetune_layers": "output"})


def test_the_temperature_changes_nothing_with_the_refit_as_its_docstring_says(classification):
    X, y, _ = table()
    proba = [
        MotherNetClassifier(weights=classification, random_state=0, temperature=t).fit(X, y).predict_proba(X)
        for t in (0.5, 2.0)
    ]
    np.testing.assert_allclose(proba[0], proba[1], atol=1e-6)
    generated = [
        MotherNetClassifier(weights=classification, random_state=0, temperature=t, output_layer="generated")
        .fit(X, y)
        .predict_proba(X)
        for t in (0.5, 2.0)
    ]
    assert np.abs(generated[0] - generated[1]).max() > 1e-3  # the docstring says so: tests/documents


# -- a column whose kind changed after fit ---------------------------------------------------------------


def test_a_column_of_dates_at_fit_and_text_at_predict_is_named_with_what_it_held(classification, tmp_path):
    frame = pd.DataFrame(
        {
            "amount": np.linspace(0.0, 1.0, 60),
            "when": pd.date_range("2024-01-01", periods=60, freq="D"),
        }
    )
    y = np.arange(60) % 2
    clf = MotherNetClassifier(weights=classification, n_estimators=1).fit(frame, y)
    clf.export(tmp_path / "dates.npz")
    later = frame.iloc[:3].copy()
    later["when"] = ["2024-03-01", "2024-03-02", "2024-03-03"]
    expected = (
        "column 'when' (index 1) held dates and times at fit; now it holds non-numeric values ('2024-03-01' "
        "is not a number): give it dates and times as at fit, or declare it in categorical_features and fit again"
    )
    for predict in (clf.predict_proba, load_predictor(tmp_path / "dates.npz").predict_proba):
        with pytest.raises(ValueError) as error:
            predict(later)
        assert one_line(error) == expected


# -- the compilation cache -------------------------------------------------------------------------------


def test_the_compilation_cache_leaves_a_users_settings_alone():
    """The first fit sets JAX's cache folder and minimum compile time only where the user set
    neither, and nothing at all where the user chose a cache or opted out."""
    home = {"XDG_CACHE_HOME": "/cache"}
    folder = {"jax_compilation_cache_dir": "/cache/mothernet_jax/xla"}
    both = {**folder, "jax_persistent_cache_min_compile_time_secs": 0.2}
    assert default_cache_updates(None, 1.0, home) == both
    assert default_cache_updates("/mine", 1.0, home) == {}
    assert default_cache_updates(None, 1.0, {**home, "JAX_COMPILATION_CACHE_DIR": "/mine"}) == {}
    assert default_cache_updates(None, 1.0, {**home, "MOTHERNET_JAX_COMPILATION_CACHE": "0"}) == {}
    assert default_cache_updates(None, 5.0, home) == folder  # a minimum compile time of the user's
    assert (
        default_cache_updates(None, 1.0, {**home, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1"})
        == folder
    )
    # the estimators' docstrings and README say how to turn it off: tests/documents


class RecordedJaxConfig:
    """JAX's two cache settings as `compile_cache.use_default_cache` reads them, and its updates."""

    def __init__(self, cache_dir, min_compile_seconds):
        self.jax_compilation_cache_dir = cache_dir
        self.jax_persistent_cache_min_compile_time_secs = min_compile_seconds
        self.updates = {}

    def update(self, name, value):
        self.updates[name] = value
        setattr(self, name, value)


def test_the_first_fit_turns_the_cache_on_once_and_only_where_the_user_chose_none(
    classification, monkeypatch, tmp_path
):
    """What `use_default_cache` (called by every fit) does to JAX's settings: nothing where the user
    chose a cache or opted out; else the folder and the minimum compile time, once a process; and
    README says how to turn it off."""
    from types import SimpleNamespace

    from mothernet_jax.estimator import compile_cache, fitting

    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MOTHERNET_JAX_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def first_fit(cache_dir, min_compile_seconds):
        config = RecordedJaxConfig(cache_dir, min_compile_seconds)
        monkeypatch.setattr(compile_cache, "jax", SimpleNamespace(config=config))
        monkeypatch.setattr(compile_cache, "_done", False)
        return compile_cache.use_default_cache(), config

    in_use, config = first_fit("/mine", 1.0)
    assert in_use == "/mine" and config.updates == {}
    folder = tmp_path / "mothernet_jax" / "xla"
    in_use, config = first_fit(None, 1.0)
    assert in_use == str(folder) and folder.is_dir()
    assert config.updates == {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.2,
    }
    config.jax_compilation_cache_dir = None  # set again by the user after the first fit: left alone
    assert compile_cache.use_default_cache() is None and len(config.updates) == 2
    monkeypatch.setenv("MOTHERNET_JAX_COMPILATION_CACHE", "0")
    in_use, config = first_fit(None, 1.0)
    assert in_use is None and config.updates == {}
    calls = []
    monkeypatch.setattr(fitting, "use_default_cache", lambda: calls.append(1))
    X, y, _ = table(40)
    MotherNetClassifier(weights=classification, n_estimators=1).fit(X, y)
    assert calls == [1]  # every fit asks; the first of a process acts


# -- wording ---------------------------------------------------------------------------------------------


def test_messages_use_plain_values_python_words_and_the_right_noun(classification, regression, tmp_path):
    X, _, target = table(40)
    with pytest.raises(ValueError) as error:
        MotherNetClassifier(weights=classification).fit(X, np.zeros(40, np.int64))
    assert one_line(error) == "MotherNetClassifier needs at least 2 classes; y has 1 class (0)"
    with pytest.raises(ValueError) as error:
        MotherNetClassifier(weights=classification).fit(X, np.array(["a"] * 40))
    assert one_line(error).endswith("y has 1 class ('a')")
    with pytest.raises(ValueError) as error:
        MotherNetRegressor(weights=regression, max_train_rows=0).fit(X, target)
    assert one_line(error) == "max_train_rows must be an integer >= 1 or None or 'auto', got 0"
    reg = MotherNetRegressor(weights=regression, n_estimators=1).fit(X, target)
    assert not hasattr(reg.predictor_, "classes") and not hasattr(reg.predictor_, "temperature")
    path = tmp_path / "regressor.npz"
    reg.export(path)
    assert not hasattr(load_predictor(path), "classes")
    with np.load(path) as data:
        assert "classes" not in data.files and "member0/groups" not in data.files
        arrays = {name: data[name] for name in data.files if name != "member0/mean.npy"}
    np.savez(tmp_path / "damaged.npz", **{k: v for k, v in arrays.items() if k != "member0/mean"})
    with pytest.raises(PredictorFileError) as error:
        load_predictor(tmp_path / "damaged.npz")
    assert "is a damaged or truncated exported regressor (KeyError" in one_line(error)
    with pytest.raises(WeightFileError) as error:
        MotherNetRegressor(weights=path).fit(X, target)
    assert one_line(error).startswith(f"{path} is an exported regressor (a .npz archive), not a weight file")


# -- scikit-learn's checks at the defaults (the shipped weights and their settings) ----------------------

# check name -> why it cannot pass; empty: every check passes at the defaults
EXPECTED_FAILED_AT_DEFAULTS: dict[str, str] = {}


@pytest.mark.slow  # both: about 35 s on a loaded 2-core machine, compilations cached
@sklearn_checks(MotherNetClassifier(), EXPECTED_FAILED_AT_DEFAULTS)
def test_the_classifier_passes_scikit_learns_checks_at_its_defaults(estimator, check):
    check(clone(estimator))


@pytest.mark.slow
@sklearn_checks(MotherNetRegressor(), EXPECTED_FAILED_AT_DEFAULTS)
def test_the_regressor_passes_scikit_learns_checks_at_its_defaults(estimator, check):
    check(clone(estimator))
