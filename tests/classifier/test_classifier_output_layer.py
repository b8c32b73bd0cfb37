"""The classifier's refitted read-out (`output_layer="refit"`, `estimator.output_layer`): scikit-learn's
logistic regression on [hidden / scale, standardised inputs] over every training row, the child's
skip read-out in JAX, NumPy and the exported file, and what it changes."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from estimator_helpers import random_weights
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import mothernet_jax as mn
from mothernet_jax.child import Child, child_logits, numpy_logits
from mothernet_jax.classifier import MotherNetClassifier
from mothernet_jax.estimator import output_layer
from mothernet_jax.estimator.output_layer import (
    logistic_output_layers,
    logistic_read_out,
    read_out_features,
)
from mothernet_jax.predictor import FORMAT_VERSION, load_predictor

CONFIG = mn.preset("tiny")


@pytest.fixture(scope="module")
def weights():
    return random_weights(CONFIG, 1)


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def optimum(F, groups):
    """The probabilities at the optimum of the read-out's problem: L2 logistic regression (C = 1),
    solved to a tight tolerance."""
    return LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(F, groups).predict_proba(F)


def exact(monkeypatch):
    """The read-out solved to a tight tolerance (the default, 1e-3, stops a little short)."""
    monkeypatch.setattr(output_layer, "LOGISTIC_TOL", 1e-10)
    monkeypatch.setattr(output_layer, "LOGISTIC_MAX_ITER", 10_000)


@pytest.mark.parametrize("k", [2, 4])
def test_the_read_out_is_scikit_learns_logistic_regression(k, monkeypatch):
    rng = np.random.default_rng(k)
    F = rng.normal(size=(200, 6)) * [1, 3, 0.3, 1, 2, 1] + 3
    z = (F - F.mean(axis=0)) / F.std(axis=0)
    groups = np.argmax(z[:, :k] + rng.normal(size=(200, k)), axis=1)
    assert len(np.unique(groups)) == k
    reference = optimum(F, groups)
    w, b = logistic_read_out(F, groups, k + 1)  # one more output group than the rows hold
    proba = softmax(F @ w + b)
    assert np.abs(proba[:, :k] - reference).max() < 2e-2  # at the default budget (100 iterations, tol 1e-3)
    assert np.abs(proba[:, :k] - reference).mean() < 2e-3
    assert np.all(proba[:, k] < 1e-12)  # the absent group
    exact(monkeypatch)
    w, b = logistic_read_out(F, groups, k + 1)
    np.testing.assert_allclose(softmax(F @ w + b)[:, :k], reference, atol=1e-5)
    w1, b1 = logistic_read_out(F, np.zeros(200, int), 2)  # one group: certain
    np.testing.assert_allclose(softmax(F @ w1 + b1)[:, 0], 1.0)


def test_one_refitted_member_predicts_the_logistic_regression_of_its_features(weights, monkeypatch):
    exact(monkeypatch)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.3 * rng.normal(size=300) > 0.5).astype(int)
    clf = MotherNetClassifier(weights=weights, n_estimators=1, max_train_rows=100, random_state=0, output_layer="refit").fit(X, y)
    generated = MotherNetClassifier(
        weights=weights, n_estimators=1, max_train_rows=100, random_state=0, output_layer="generated"
    ).fit(X, y)
    child, columns = clf.predictor_.children[0], clf.predictor_.columns[0]
    kept = generated.predictor_.children[0]
    for (w, b), (w0, b0) in zip(child.layers[:-1], kept.layers[:-1], strict=True):  # hidden layers kept
        np.testing.assert_array_equal(w[0] if isinstance(w, tuple) else w, w0[0] if isinstance(w0, tuple) else w0)
        np.testing.assert_array_equal(b, b0)
    assert child.skip.shape == (len(columns), 2) and kept.skip is None
    # all 300 rows, not the member's 100: the read-out is LogisticRegression on the full table
    encoded = clf.predictor_.encode(X)[:, columns]
    F, _ = read_out_features(kept, encoded)
    np.testing.assert_allclose(clf.predict_proba(X), optimum(F, y), atol=1e-5)


def test_the_skip_read_out_is_the_same_in_jax_numpy_and_the_exported_file(weights, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(240, 4))
    X[3, 1] = np.nan
    y = np.digitize(X[:, 0] + X[:, 2], [-0.7, 0.0, 0.7])  # 4 classes
    clf = MotherNetClassifier(weights=weights, n_estimators=2, multiclass="native", output_layer="refit").fit(X, y)
    child = clf.predictor_.children[0]
    x = clf.predictor_.encode(X)[:, clf.predictor_.columns[0]]
    jax_child = Child(*jax.tree_util.tree_map(np.asarray, tuple(child)))
    np.testing.assert_allclose(np.asarray(child_logits(jax_child, x)), numpy_logits(child, x), rtol=1e-4, atol=1e-4)
    no_skip = child._replace(skip=None)
    np.testing.assert_allclose(numpy_logits(child, x) - numpy_logits(no_skip, x), np.nan_to_num(
        (x - child.mean) / child.std) @ child.skip, rtol=1e-4, atol=1e-4)  # fmt: skip
    path = tmp_path / "refit.npz"
    clf.export(path)
    script = f"""
import sys, numpy as np
from mothernet_jax.predictor import load_predictor
X = np.load({str(tmp_path / "X.npy")!r})
np.save({str(tmp_path / "p.npy")!r}, load_predictor({str(path)!r}).predict_proba(X))
assert "jax" not in sys.modules
"""
    np.save(tmp_path / "X.npy", X)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), clf.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert FORMAT_VERSION == 3 and load_predictor(path).children[0].skip.shape == child.skip.shape


def test_the_refit_lifts_random_weights_and_subsamples_beyond_its_row_limit(weights):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 6))
    y = (X @ rng.normal(size=6) > 0).astype(int)
    train, test = slice(0, 400), slice(400, None)

    def auc(**kw):
        clf = MotherNetClassifier(weights=weights, n_estimators=2, random_state=0, **kw).fit(X[train], y[train])
        return roc_auc_score(y[test], clf.predict_proba(X[test])[:, 1])

    assert auc(output_layer="refit") > 0.97 and auc(output_layer="refit") > auc(output_layer="generated") + 0.05
    clf = MotherNetClassifier(weights=weights, n_estimators=1, random_state=0, output_layer="generated").fit(
        X[train], y[train]
    )
    p = clf.predictor_
    encoded, codes = p.encode(X[train]), y[train]
    kwargs = dict(temperature=0.8)
    few = logistic_output_layers(p.children, encoded, p.columns, p.groups, codes, rng=np.random.default_rng(0), max_rows=50, **kwargs)
    again = logistic_output_layers(p.children, encoded, p.columns, p.groups, codes, rng=np.random.default_rng(0), max_rows=50, **kwargs)
    every = logistic_output_layers(p.children, encoded, p.columns, p.groups, codes, rng=np.random.default_rng(0), **kwargs)
    np.testing.assert_array_equal(few[0].skip, again[0].skip)  # seeded
    assert not np.allclose(few[0].skip, every[0].skip)  # 50 rows are not 400
