"""The classifier's refitted read-out (`output_layer="refit"`, `estimator.output_layer`): scikit-learn's
logistic regression on [hidden / scale, standardised inputs] over every training row, the child's
skip read-out in JAX, NumPy and the exported file, and what it changes."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mothernet_jax.estimator import output_layer
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.estimator.output_layer import (
    FeatureBlocks,
    hidden_scale,
    logistic_output_layers,
    logistic_read_out,
    read_out_features,
    streaming_logistic,
)
from mothernet_jax.model.child import child_logits
from mothernet_jax.runtime.child import Child, numpy_logits, numpy_predict_proba
from mothernet_jax.runtime.predictor import FORMAT_VERSION, load_predictor


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


@pytest.mark.parametrize("k", [2, pytest.param(4, marks=pytest.mark.slow)])  # 4: also the 13-class test below
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
    flat = np.ones((200, 6)) * [1, 0, 2, 0, 0, 5]  # no column varies (dead units, constant inputs)
    wf, bf = logistic_read_out(flat, groups, k + 1)
    frequency = np.bincount(groups, minlength=k + 1) / 200
    np.testing.assert_allclose(softmax(flat @ wf + bf), np.broadcast_to(frequency, (200, k + 1)), atol=1e-12)


def test_one_refitted_member_predicts_the_logistic_regression_of_its_features(tiny_weights, monkeypatch):
    exact(monkeypatch)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.3 * rng.normal(size=300) > 0.5).astype(int)
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=1, max_train_rows=100, random_state=0, output_layer="refit").fit(X, y)
    generated = MotherNetClassifier(
        weights=tiny_weights, n_estimators=1, max_train_rows=100, random_state=0, output_layer="generated"
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


def test_the_skip_read_out_is_the_same_in_jax_numpy_and_the_exported_file(tiny_weights, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(240, 4))
    X[3, 1] = np.nan
    y = np.digitize(X[:, 0] + X[:, 2], [-0.7, 0.0, 0.7])  # 4 classes
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=2, multiclass="native", output_layer="refit").fit(X, y)
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
from mothernet_jax import load_predictor
X = np.load({str(tmp_path / "X.npy")!r})
np.save({str(tmp_path / "p.npy")!r}, load_predictor({str(path)!r}).predict_proba(X))
assert "jax" not in sys.modules
"""
    np.save(tmp_path / "X.npy", X)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), clf.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert FORMAT_VERSION == 3 and load_predictor(path).children[0].skip.shape == child.skip.shape


def test_the_refit_lifts_random_weights_and_reads_every_row_beyond_its_in_memory_limit(tiny_weights, monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 6))
    y = (X @ rng.normal(size=6) > 0).astype(int)
    train, test = slice(0, 400), slice(400, None)

    def auc(**kw):
        clf = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0, **kw).fit(X[train], y[train])
        return roc_auc_score(y[test], clf.predict_proba(X[test])[:, 1])

    assert auc(output_layer="refit") > 0.97 and auc(output_layer="refit") > auc(output_layer="generated") + 0.05
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=1, random_state=0, output_layer="generated").fit(
        X[train], y[train]
    )
    p = clf.predictor_
    encoded, codes = p.encode(X[train]), y[train]
    exact(monkeypatch)
    monkeypatch.setattr(output_layer, "STREAM_MAX_ITER", 10_000)
    kwargs = dict(temperature=0.8)
    streamed = logistic_output_layers(p.children, encoded, p.columns, codes, 2, rng=np.random.default_rng(0), max_rows=50, row_block=64, **kwargs)
    again = logistic_output_layers(p.children, encoded, p.columns, codes, 2, rng=np.random.default_rng(0), max_rows=50, row_block=64, **kwargs)
    in_memory = logistic_output_layers(p.children, encoded, p.columns, codes, 2, rng=np.random.default_rng(0), **kwargs)
    np.testing.assert_array_equal(streamed[0].skip, again[0].skip)  # seeded
    # beyond 50 rows the subsample only starts the solver: the read-out is the one of all 400 rows
    x = encoded[:, p.columns[0]]
    np.testing.assert_allclose(numpy_logits(streamed[0], x), numpy_logits(in_memory[0], x), atol=2e-3)


# -- every class, many rows -------------------------------------------------------------------------


def blocks_of(F, size):
    return [(slice(s, min(s + size, len(F))), F[s : s + size]) for s in range(0, len(F), size)]


@pytest.mark.parametrize("k", [2, pytest.param(5, marks=pytest.mark.slow)])  # 5 classes: the same solver, slower
def test_the_row_streaming_solver_equals_the_in_memory_one(k):
    """`streaming_logistic` over blocks of 7 rows (float64, and float32 as fit holds them) reaches
    scikit-learn's optimum on all the rows, from zero and from another subsample's solution."""
    rng = np.random.default_rng(k)
    F = rng.normal(size=(300, 6)) * [1, 3, 0.3, 1, 2, 1] + 3
    z = (F - F.mean(axis=0)) / F.std(axis=0)
    groups = np.argmax(z[:, :k] + rng.normal(size=(300, k)), axis=1)
    reference = optimum(F, groups)
    for start in (None, logistic_read_out(F[:60], groups[:60], k)):
        w, b = streaming_logistic(blocks_of(F, 7), groups, k, start, centre=F.mean(axis=0), max_iter=10_000, tol=1e-9)
        np.testing.assert_allclose(softmax(F @ w + b), reference, atol=1e-5)
    w, b = streaming_logistic(blocks_of(F.astype(np.float32), 7), groups, k, centre=F.mean(axis=0), max_iter=10_000, tol=1e-6)
    np.testing.assert_allclose(softmax(F @ w + b), reference, atol=1e-3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        streaming_logistic(blocks_of(F, 7), np.zeros(300, int), k)


def test_feature_blocks_hold_or_recompute_the_same_features(tiny_weights, monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=1, random_state=0, output_layer="generated").fit(X, X[:, 0] > 0)
    child, x = clf.predictor_.children[0], clf.predictor_.encode(X)[:, clf.predictor_.columns[0]]
    whole, scale = read_out_features(child, x)
    assert hidden_scale(child, x, row_block=16) == pytest.approx(scale, rel=1e-6)  # every row, any block size
    for held in (True, False):
        monkeypatch.setattr(output_layer, "MAX_HELD_BYTES", 1 << 30 if held else 0)
        blocks = FeatureBlocks(child, x, row_block=16)
        assert blocks.scale == pytest.approx(scale, rel=1e-6)
        for _ in range(2):  # a second pass: the held blocks, or computed again
            got = np.concatenate([block for _, block in blocks])
            np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(blocks.take(np.array([3, 140, 7])), whole[[3, 140, 7]], rtol=1e-5, atol=1e-5)
        assert (blocks.held is not None) == held


def test_a_rare_class_beyond_the_row_limit_is_predicted_on_its_own_rows(tiny_weights, monkeypatch):
    """Issue 31: beyond the read-out's row limit a random subsample could miss a rare class, which
    then got logit -30 on its own rows. Each member draws its own stratified subsample (every
    class in it) and the solver then reads every row."""
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(300, int), np.ones(294, int), np.full(6, 2)]
    X = rng.normal(size=(600, 3)) + 2.0 * np.eye(3)[y]
    drawn = []
    stratified = output_layer.stratified_rows

    def record(labels, n_rows, generator):
        rows = stratified(labels, n_rows, generator)
        drawn.append(rows)
        return rows

    monkeypatch.setattr(output_layer, "MAX_LOGISTIC_ROWS", 40)
    monkeypatch.setattr(output_layer, "stratified_rows", record)
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=3, random_state=0).fit(X, y)
    assert len(drawn) == 3 and all(np.isin(2, y[rows]) for rows in drawn)  # every class, each member its own
    assert not np.array_equal(drawn[0], drawn[1])
    proba = clf.predict_proba(X)
    assert proba[y == 2, 2].min() > 0.05, proba[y == 2, 2]
    assert np.mean(clf.predict(X[y == 2]) == 2) >= 0.5


def test_the_all_class_read_out_is_a_logistic_regression_of_every_class(tiny_weights, monkeypatch):
    """More than 10 classes: members are generated for groups of classes, but each member's
    read-out predicts all 13, as a logistic regression of them on the member's features at its
    optimum; the probabilities sum to one, also as exported."""
    exact(monkeypatch)
    rng = np.random.default_rng(5)
    y = np.arange(390) % 13
    X = rng.normal(size=(390, 4)) + 0.7 * rng.normal(size=(13, 4))[y]
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0).fit(X, y)
    assert [m["n_groups"] for m in clf.ensemble_] == [10, 9]  # generated for groups of classes
    generated = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0, output_layer="generated").fit(X, y)
    p = clf.predictor_
    encoded = p.encode(X)
    members = []
    for child, kept, columns, groups in zip(p.children, generated.predictor_.children, p.columns, p.groups, strict=True):
        assert child.layers[-1][1].shape == (13,) and groups.tolist() == list(range(13))
        F, _ = read_out_features(kept, encoded[:, columns])
        members.append(optimum(F, y))
        np.testing.assert_allclose(numpy_predict_proba(child, encoded[:, columns], 0.8), members[-1], atol=1e-5)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba, np.mean(members, axis=0), atol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.mean(clf.predict(X) == y) > np.mean(generated.predict(X) == y)


# -- the generated read-out as the refit's prior (output_layer="refit_prior") ----------------------


def objective_gradient(F, labels, w, b, w0, C):
    """The gradient of mean cross-entropy + ||w - w0||^2 / (2 C n) over (w (F, k), b (k,)), k >= 3."""
    n = len(labels)
    logits = F @ w + b
    p = softmax(logits)
    p[np.arange(n), labels] -= 1.0
    return F.T @ p / n + (w - w0) / (C * n), p.sum(axis=0) / n


def test_the_prior_read_out_is_the_optimum_of_the_penalty_toward_the_prior():
    rng = np.random.default_rng(3)
    F = rng.normal(size=(120, 5))
    labels = np.argmax(F[:, :3] + rng.normal(size=(120, 3)), axis=1)
    w0, b0 = rng.normal(size=(5, 3)), np.zeros(3)
    w, b = streaming_logistic([(slice(0, 120), F)], labels, 3, centre=F.mean(axis=0), max_iter=10_000, tol=1e-10,
                              prior=(w0, b0))  # fmt: skip
    grad_w, grad_b = objective_gradient(F, labels, w, b, w0, 1.0)
    assert np.abs(grad_w).max() < 1e-8 and np.abs(grad_b).max() < 1e-8
    zero, _ = streaming_logistic([(slice(0, 120), F)], labels, 3, max_iter=10_000, tol=1e-10)
    assert np.linalg.norm(w - w0) < np.linalg.norm(zero - w0)  # pulled toward the prior
    # few rows trust the prior, many the data: the pull shrinks as the rows grow
    big = rng.normal(size=(4000, 5))
    big_labels = np.argmax(big[:, :3] + rng.normal(size=(4000, 3)), axis=1)
    with_prior, _ = streaming_logistic([(slice(0, 4000), big)], big_labels, 3, max_iter=10_000, tol=1e-10, prior=(w0, b0))
    without, _ = streaming_logistic([(slice(0, 4000), big)], big_labels, 3, max_iter=10_000, tol=1e-10)
    def identified(v):  # softmax ignores a shift common to the classes; the penalties place it apart
        return v - v.mean(axis=1, keepdims=True)

    assert np.abs(identified(with_prior - without)).max() < 0.2 * np.abs(identified(w - zero)).max()


@pytest.mark.parametrize("n_classes", [2, 4])
def test_refit_prior_under_an_overwhelming_penalty_keeps_the_generated_read_out(tiny_weights, monkeypatch, n_classes):
    """C -> 0: the read-out's weights are the generated ones (up to a shift common to every class,
    which softmax ignores), whatever the hidden scale, the temperature and the class order."""
    monkeypatch.setattr(output_layer, "LOGISTIC_C", 1e-9)
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(200, 4))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], np.linspace(-1, 1, n_classes - 1))
    kwargs = dict(weights=tiny_weights, n_estimators=2, max_train_rows=64, random_state=0, temperature=0.7)
    prior = MotherNetClassifier(**kwargs, output_layer="refit_prior").fit(X, y)
    generated = MotherNetClassifier(**kwargs, output_layer="generated").fit(X, y)
    for m, (child, kept) in enumerate(zip(prior.predictor_.children, generated.predictor_.children, strict=True)):
        w, w_gen = np.asarray(child.layers[-1][0], np.float64), np.asarray(kept.layers[-1][0], np.float64)
        w_gen = w_gen[:, generated.predictor_.groups[m]]  # the generated unit of each class
        np.testing.assert_allclose(w - w[:, :1], w_gen - w_gen[:, :1], atol=1e-5 * np.abs(w_gen).max())
        assert np.abs(child.skip).max() < 1e-6  # the inputs' prior weight is 0
    refit = MotherNetClassifier(**kwargs, output_layer="refit").fit(X, y)
    assert np.abs(refit.predictor_.children[0].layers[-1][0]).max() < 1e-6  # the zero prior: toward 0


def test_refit_prior_fits_many_classes_and_scores_like_the_refit(tiny_weights):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 6))
    y = np.digitize(X[:, 0] + X[:, 1], np.linspace(-2, 2, 11))  # 12 classes: members see class groups
    kwargs = dict(weights=tiny_weights, n_estimators=3, random_state=0)
    prior = MotherNetClassifier(**kwargs, output_layer="refit_prior").fit(X[:400], y[:400])
    refit = MotherNetClassifier(**kwargs, output_layer="refit").fit(X[:400], y[:400])
    proba = prior.predict_proba(X[400:])
    assert proba.shape == (200, len(prior.classes_)) and np.allclose(proba.sum(axis=1), 1.0)
    assert prior.settings_["output_layer"] == "refit_prior"
    assert abs(np.mean(prior.predict(X[400:]) == y[400:]) - np.mean(refit.predict(X[400:]) == y[400:])) < 0.1
