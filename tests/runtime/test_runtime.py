"""The NumPy-only runtime (`mothernet_jax.runtime`): the child's forward pass, the column encoding,
the exported predictors and their file format, the value checks. This module imports NumPy and
the runtime alone: `test_without_jax.py` runs it again in a process where JAX cannot be imported."""

import datetime

import numpy as np
import pytest

from mothernet_jax.runtime.checks import reject_beyond_float32, reject_infinite
from mothernet_jax.runtime.child import (
    Child,
    hidden_features,
    numpy_layers,
    numpy_logits,
    numpy_predict_proba,
    numpy_predict_regression,
    to_numpy,
)
from mothernet_jax.runtime.encoding import FeatureEncoder
from mothernet_jax.runtime.npz import PredictorFileError, atomic_write, check_predictor_file
from mothernet_jax.runtime.predictor import (
    ClassificationPredictor,
    Predictor,
    RegressionPredictor,
    load_predictor,
)


def random_child(rng, d: int, k: int, hidden: int = 8, rank: int = 3, skip: bool = True) -> Child:
    """A child of one factored and one dense hidden layer, with a skip read-out (float32)."""
    layers = (
        ((rng.normal(size=(d, rank)), rng.normal(size=(rank, hidden))), rng.normal(size=hidden)),
        (rng.normal(size=(hidden, hidden)) / 3, rng.normal(size=hidden)),
        (rng.normal(size=(hidden, k)), rng.normal(size=k)),
    )
    mean, std = rng.normal(size=d).astype(np.float32), rng.uniform(0.5, 2.0, size=d).astype(np.float32)
    return Child(numpy_layers(layers), mean, std, rng.normal(size=(d, k)).astype(np.float32) if skip else None)


def mixed_table(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A raw table of a number (NaN among them), a text level and a date, as object columns."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=n)
    numbers[::7] = np.nan
    levels = rng.choice(np.array(["red", "green", "blue"], dtype=object), n)
    dates = [datetime.datetime(2024, 1, 1) + datetime.timedelta(days=int(d)) for d in rng.integers(0, 400, n)]
    return np.column_stack([numbers, levels, np.array(dates, dtype=object)]).astype(object), np.array(
        [False, True, False]
    )


# -- the forward pass ------------------------------------------------------------------------------


def test_the_forward_pass_is_the_mlp_on_standardised_rows_plus_the_skip_read_out():
    rng = np.random.default_rng(0)
    child = random_child(rng, d=4, k=3)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    x[0, 1] = np.nan  # missing: 0 after standardisation
    z = np.nan_to_num(np.clip((x - child.mean) / child.std, -100, 100)).astype(np.float64)
    (a, s), b1 = child.layers[0]
    h = np.maximum(z @ a @ s + b1, 0)
    h = np.maximum(h @ child.layers[1][0] + child.layers[1][1], 0)
    expected = h @ child.layers[2][0] + child.layers[2][1] + z @ child.skip
    np.testing.assert_allclose(numpy_logits(child, x), expected, rtol=1e-4, atol=1e-4)
    proba = numpy_predict_proba(child, x, temperature=0.5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(proba.argmax(axis=1), expected.argmax(axis=1))
    with pytest.raises(ValueError, match="this child expects 4 columns"):
        numpy_logits(child, x[:, :3])
    with pytest.raises(ValueError, match="use predict_proba, not predict_regression"):
        numpy_predict_regression(child, x)


def test_a_child_without_hidden_layers_reads_its_inputs():
    z = np.random.default_rng(1).normal(size=(5, 3))
    assert hidden_features(((np.ones((3, 2)), np.zeros(2)),), z, np) is z


def test_to_numpy_gives_float32_arrays():
    child = to_numpy(Child(((np.ones((3, 2)), np.zeros(2)),), np.zeros(3), np.ones(3), np.ones((3, 2))))
    assert {a.dtype for a in (*child.layers[0], child.mean, child.std, child.skip)} == {np.dtype(np.float32)}


# -- the exported predictors -------------------------------------------------------------------------


def encoded_members(rng, encoder: FeatureEncoder, k: int, members: int = 3) -> tuple[list[Child], list[np.ndarray]]:
    width = encoder.n_columns
    columns = [rng.permutation(width)[: max(2, width - m)] for m in range(members)]
    return [random_child(rng, len(c), k, skip=m % 2 == 0) for m, c in enumerate(columns)], columns


def test_a_classifier_round_trips_through_its_file(tmp_path):
    rng = np.random.default_rng(2)
    X, categorical = mixed_table()
    encoder = FeatureEncoder.fit(X, categorical, ["x", "colour", "day"])
    children, columns = encoded_members(rng, encoder, k=3)
    children[2] = random_child(rng, len(columns[2]), 2)  # two groups: classes a and b share the first
    groups = [np.array([0, 1, 2]), np.array([2, 0, 1]), np.array([0, 0, 1])]  # as generated, rotated, shared
    predictor = ClassificationPredictor(
        children, classes=np.array(["a", "b", "c"]), temperature=0.7, encoder=encoder, columns=columns,
        groups=groups, feature_names=["x", "colour", "day"],
    )  # fmt: skip
    proba = predictor.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    predictor.save(tmp_path / "classifier.npz")
    loaded = load_predictor(tmp_path / "classifier.npz")
    assert type(loaded) is ClassificationPredictor and isinstance(loaded, Predictor)
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
    np.testing.assert_array_equal(loaded.predict(X), np.array(["a", "b", "c"])[proba.argmax(axis=1)])
    assert not hasattr(loaded, "target_mean")
    with pytest.raises(PredictorFileError, match="is an exported classifier, not a RegressionPredictor"):
        RegressionPredictor.load(tmp_path / "classifier.npz")


def test_a_regressor_round_trips_through_its_file(tmp_path):
    rng = np.random.default_rng(3)
    X, categorical = mixed_table()
    encoder = FeatureEncoder.fit(X, categorical)
    children, columns = encoded_members(rng, encoder, k=1)
    mean, std = rng.normal(size=3) * 100, rng.uniform(1, 5, size=3)
    predictor = RegressionPredictor(children, target_mean=mean, target_std=std, encoder=encoder, columns=columns)
    prediction = predictor.predict(X)
    members = predictor.member_predictions(predictor.encode(X))
    np.testing.assert_array_equal(prediction, members.mean(axis=0))
    np.testing.assert_allclose(members[0], numpy_logits(children[0], predictor.encode(X)[:, columns[0]])[:, 0]
                               * std[0] + mean[0], rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="return_std needs the ensemble's error estimate"):
        predictor.predict(X, return_std=True)
    predictor.predictive_std = 2.5
    predictor.save(tmp_path / "regressor.npz")
    loaded = load_predictor(tmp_path / "regressor.npz")
    assert type(loaded) is RegressionPredictor
    assert not hasattr(loaded, "classes") and not hasattr(loaded, "predict_proba")  # no classes, no temperature
    np.testing.assert_array_equal(loaded.target_mean, mean)  # float64 kept
    y, spread = loaded.predict(X, return_std=True)
    np.testing.assert_array_equal(y, prediction)
    np.testing.assert_array_equal(spread, np.full(len(X), 2.5))
    with pytest.raises(PredictorFileError, match="is an exported regressor, not a ClassificationPredictor"):
        ClassificationPredictor.load(tmp_path / "regressor.npz")
    with pytest.raises(ValueError, match="one output unit and one target mean and std per member"):
        RegressionPredictor([random_child(rng, 3, 2)], target_mean=[0.0], target_std=[1.0])


# -- files and values ----------------------------------------------------------------------------------


def test_what_is_not_an_export_is_refused_naming_the_path(tmp_path):
    with pytest.raises(PredictorFileError, match="is a folder, not an exported classifier or regressor"):
        check_predictor_file(tmp_path)
    text = tmp_path / "notes.npz"
    atomic_write(text, lambda f: f.write(b"hello"))
    with pytest.raises(PredictorFileError, match=r"notes.npz is not an exported classifier or regressor \(not a .npz"):
        load_predictor(text)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_predictor(tmp_path / "missing.npz")


def test_infinite_and_out_of_range_values_are_named_by_column():
    with pytest.raises(ValueError, match="infinite values in column 1"):
        reject_infinite(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="beyond float32's range in column 'size'"):
        reject_beyond_float32(np.array([1e39]), column="size")
    reject_beyond_float32(np.array([[np.nan, 3e38]]))  # NaN is missing, 3e38 fits float32
