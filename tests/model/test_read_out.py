"""The closed-form read-out (`read_out.py`): the ridge it solves is scikit-learn's on the same features,
its leave-one-out residuals are refits without the row, gradients flow through the solve, and the
training step that scores children with it lowers the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from model_helpers import assert_directional_derivatives
from sklearn.linear_model import Ridge

import mothernet_jax as mn
import priors
from mothernet_jax.model import read_out
from mothernet_jax.model.mothernet import init_params
from mothernet_jax.runtime.child import hidden_features
from mothernet_jax.train.config import tiny
from mothernet_jax.train.step import task_losses

# the real prior at 128 rows, narrowed so that the step compiles fast (tests/train's TEST_PRIOR)
TEST_PRIOR = priors.preset("tiny").replace(max_features=10, max_hidden=32, width_buckets=(32,), max_layers=4)


def _problem(seed=0, n=60, p=9, k=3, real=45):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, p)).astype(np.float32)
    targets = (features[:, :k] @ rng.normal(size=(k, k)) + 0.5 * rng.normal(size=(n, k))).astype(np.float32)
    features[real:] = 1e3  # padding rows: whatever they hold, they carry no weight
    return features, targets, np.arange(n) < real


def test_the_ridge_is_scikit_learns_ridge_at_the_chosen_penalty(highest_precision):
    features, targets, mask = _problem()
    w, intercept, penalty, _ = read_out.ridge(jnp.asarray(features), jnp.asarray(targets), jnp.asarray(mask))
    assert min(abs(float(penalty) / mask.sum() / r - 1) for r in read_out.RELATIVE_PENALTIES) < 1e-5
    reference = Ridge(alpha=float(penalty)).fit(features[mask].astype(np.float64), targets[mask])
    np.testing.assert_allclose(np.asarray(w), reference.coef_.T, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(intercept), reference.intercept_, rtol=2e-4, atol=2e-5)


def test_the_ridge_toward_a_prior_is_the_ridge_of_the_residual_target(highest_precision):
    features, targets, mask = _problem(seed=1)
    w0 = np.random.default_rng(2).normal(size=(features.shape[1], targets.shape[1])).astype(np.float32)
    w, intercept, penalty, _ = read_out.ridge(
        jnp.asarray(features), jnp.asarray(targets), jnp.asarray(mask), w0=jnp.asarray(w0)
    )
    # argmin |Y - b - F W|^2 + lam |W - W0|^2 is W0 + ridge(Y - F W0 on F)
    f, t = features[mask].astype(np.float64), targets[mask].astype(np.float64)
    reference = Ridge(alpha=float(penalty)).fit(f, t - f @ w0)
    np.testing.assert_allclose(np.asarray(w), w0 + reference.coef_.T, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(intercept), reference.intercept_, rtol=2e-4, atol=5e-5)


def test_leave_one_out_residuals_are_refits_without_the_row_and_choose_the_penalty(highest_precision):
    features, targets, mask = _problem(seed=3, n=40, real=30)
    f, t = features[mask].astype(np.float64), targets[mask].astype(np.float64)
    args = jnp.asarray(features), jnp.asarray(targets), jnp.asarray(mask)
    fc, yc, _, _ = read_out._centred(*args)
    scores = []
    for relative in read_out.RELATIVE_PENALTIES:
        lam = relative * mask.sum()
        loo, _ = read_out.loo_residuals(fc, yc, jnp.zeros((9, 3)), lam, args[2])
        brute = np.stack([
            t[i] - Ridge(alpha=lam).fit(np.delete(f, i, 0), np.delete(t, i, 0)).predict(f[i : i + 1])[0]
            for i in range(len(t))
        ])  # fmt: skip
        np.testing.assert_allclose(np.asarray(loo)[mask], brute, rtol=1e-3, atol=1e-4)
        assert not np.any(np.asarray(loo)[~mask])
        scores.append(np.sum(brute**2))
    _, _, penalty, _ = read_out.ridge(*args)
    assert float(penalty) == pytest.approx(read_out.RELATIVE_PENALTIES[int(np.argmin(scores))] * mask.sum())


def test_the_gradient_through_the_solve_matches_finite_differences(highest_precision):
    rng = np.random.default_rng(4)
    hidden = rng.normal(size=(50, 6)).astype(np.float32)
    z = rng.normal(size=(50, 3)).astype(np.float32)
    labels = (hidden[:, 0] + z[:, 0] > 0).astype(np.int32) + (hidden[:, 1] > 1).astype(np.int32)
    train = np.arange(50) < 35
    w_gen = rng.normal(size=(6, 3)).astype(np.float32)

    def test_loss(hidden, solver, prior):
        fitted = read_out.fit_read_out(hidden, z, w_gen, labels, train, prior=prior, solver=solver)
        logits = read_out.read_out_outputs(fitted, hidden, z)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return jnp.sum(jnp.where(train, 0.0, losses)) / np.sum(~train)

    for solver, prior in (("ridge", False), ("ridge", True), ("logistic", False)):
        loss = jax.jit(lambda h, s=solver, p=prior: test_loss(h, s, p))
        grad = jax.jit(jax.grad(lambda h, s=solver, p=prior: test_loss(h, s, p)))(hidden)
        assert np.all(np.isfinite(grad)) and np.any(grad[train])  # the training rows shape the solve
        assert_directional_derivatives(loss, grad, hidden, rng, eps=1e-3, rtol=3e-2, atol=3e-4)


def test_the_logistic_read_out_is_scikit_learns_logistic_regression(highest_precision):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(8)
    features = rng.normal(size=(120, 7)).astype(np.float32)
    labels = np.argmax(features[:, :3] @ rng.normal(size=(3, 3)) + rng.gumbel(size=(120, 3)), axis=1)
    mask = np.arange(120) < 100
    args = jnp.asarray(features), jnp.asarray(labels), jnp.asarray(mask)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
    binary = (labels == 1).astype(int)
    w, b = read_out.logistic(args[0], jnp.asarray(binary), args[2], 2)
    fit = reference.fit(features[mask], binary[mask])
    # two classes: +-half the binary logit
    np.testing.assert_allclose(np.asarray(w[:, 1] - w[:, 0]), fit.coef_[0], rtol=2e-3, atol=5e-4)
    np.testing.assert_allclose(float(b[1] - b[0]), fit.intercept_[0], rtol=2e-3, atol=1e-3)
    # more classes: one binary model per class against the others
    w, b = read_out.logistic(*args, 3)
    for k in range(3):
        fit = reference.fit(features[mask], (labels[mask] == k).astype(int))
        np.testing.assert_allclose(np.asarray(w[:, k]), fit.coef_[0], rtol=2e-3, atol=5e-4)
        np.testing.assert_allclose(float(b[k]), fit.intercept_[0], rtol=2e-3, atol=1e-3)


def test_the_logistic_read_out_is_the_same_jitted_and_batched():
    # guards XLA's CPU backend (jax 0.10), which computes garbage for a product with a constant zero
    # matrix under jit: the batched, jitted solve must be the eager one
    rng = np.random.default_rng(9)
    features = rng.normal(size=(3, 200, 30)).astype(np.float32)
    labels = rng.integers(0, 4, size=(3, 200))
    mask = jnp.arange(200) < 150
    eager = [read_out.logistic(jnp.asarray(features[i]), jnp.asarray(labels[i]), mask, 10) for i in range(3)]
    batched = jax.jit(jax.vmap(lambda f, y: read_out.logistic(f, y, mask, 10)))(features, labels)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(batched[0][i]), np.asarray(eager[i][0]), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(batched[1][i]), np.asarray(eager[i][1]), rtol=1e-4, atol=1e-4)
    assert np.all(np.asarray(eager[0][1])[4:] < -3)  # the absent classes: finite and unlikely


def test_the_logit_scale_stays_finite_on_separable_rows():
    outputs = np.array([[1.0, 0.0], [0.0, 1.0]] * 10, np.float32)  # every row right, by a margin of 1
    labels = np.array([0, 1] * 10)
    alpha = read_out.logit_scale(jnp.asarray(outputs), jnp.asarray(labels), jnp.ones(20, bool), jnp.ones(2, bool))
    assert 1.0 < float(alpha) < max(read_out.LOGIT_SCALES)  # confident, not unbounded (Laplace's rule)


@pytest.fixture(scope="module")
def shipped():
    return mn.load_pretrained()


def test_generate_fits_the_ridge_read_out_on_the_hidden_layer_and_inputs_it_is_applied_to(shipped):
    params, _ = shipped
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int32) + 2 * (X[:, 2] > 1)
    generated = mn.generate(params, X[:200], y[:200], read_out="generated")
    fitted = mn.generate(params, X[:200], y[:200], read_out="ridge")
    assert fitted.skip.shape == (4, 4) and generated.skip is None
    np.testing.assert_array_equal(fitted.layers[0][0], generated.layers[0][0])  # hidden layers kept
    # the logits on the training rows are, up to one scale (alpha times the temperature), the ridge
    # of the one-hot classes on [hidden / its std, z] at one penalty of the grid
    z = (X[:200] - np.asarray(fitted.mean)[None]) / np.asarray(fitted.std)[None]
    hidden = np.asarray(hidden_features(generated.layers, jnp.asarray(z), jnp), np.float64)
    features = np.concatenate([hidden / hidden.std(), z], axis=1)
    logits = np.asarray(mn.child_logits(fitted, X[:200]), np.float64)
    errors = []
    for relative in read_out.RELATIVE_PENALTIES:
        outputs = Ridge(alpha=relative * 200).fit(features, np.eye(4)[y[:200]]).predict(features)
        scale = np.sum(logits * outputs) / np.sum(outputs * outputs)
        errors.append(np.abs(logits - scale * outputs).max() / np.abs(logits).max())
    assert min(errors) < 1e-3, errors
    proba = np.asarray(mn.predict_proba(fitted, X[200:]))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow  # test_generate.py's jit, vmap and gradient tests run generate at its default read-out (logistic)
def test_generate_with_the_fitted_read_out_under_jit_vmap_and_grad(shipped):
    params, _ = shipped
    rng = np.random.default_rng(6)
    X = rng.normal(size=(2, 120, 5)).astype(np.float32)
    y = (X[..., 0] + 0.3 * rng.normal(size=(2, 120)) > 0).astype(np.int32)
    eager = [mn.generate(params, X[i], y[i], n_classes=2) for i in range(2)]
    jitted = jax.jit(lambda X, y: mn.generate(params, X, y, n_classes=2))
    batched = jax.jit(jax.vmap(lambda X, y: mn.generate(params, X, y, n_classes=2)))(X, y)
    for i in range(2):
        one = jax.tree.map(lambda a, i=i: a[i], batched)
        for child in (jitted(X[i], y[i]), one):
            np.testing.assert_allclose(mn.predict_proba(child, X[1 - i]), mn.predict_proba(eager[i], X[1 - i]), atol=2e-4)

    def loss(X_train):
        logits = mn.child_logits(mn.generate(params, X_train, y[0], n_classes=2), X[1])
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(120), y[1]])

    grad = jax.jit(jax.grad(loss))(X[0])
    assert grad.shape == X[0].shape and np.all(np.isfinite(grad)) and np.any(grad)
    # and with respect to the hypernetwork's parameters, through the solve
    grads = jax.jit(jax.grad(lambda p: -jnp.mean(jax.nn.log_softmax(
        mn.child_logits(mn.generate(p, X[0], y[0], n_classes=2), X[1]))[jnp.arange(120), y[1]])))(params)  # fmt: skip
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert np.any(grads["weight_head"]["output"]["kernel"])


def test_the_fitted_read_out_beats_the_generated_one_where_the_inputs_decide(shipped):
    params, _ = shipped
    rng = np.random.default_rng(7)
    X = rng.normal(size=(600, 6)).astype(np.float32)
    y = (X @ rng.normal(size=6) > 0).astype(np.int32) + 2 * (X[:, 0] * X[:, 1] > 0)  # 4 classes
    scores = {}
    for name in ("generated", "ridge", "logistic"):
        proba = np.asarray(mn.predict_proba(mn.generate(params, X[:300], y[:300], read_out=name), X[300:]))
        scores[name] = np.mean(np.argmax(proba, axis=1) == y[300:])
    assert min(scores["ridge"], scores["logistic"]) > scores["generated"] + 0.1, scores


def test_the_training_loss_with_the_fitted_read_out_descends_along_its_gradient():
    """The training loss that scores children with their read-out solved on each task's training
    rows (read_out="ridge") has a finite, nonzero gradient through the solve, and a small step
    against it lowers the loss: the first-order form of tests/train/test_train_recipe.py's slow test
    of 30 steps, on four tasks made here (3-class blobs in 5 of 10 columns, 64 training rows of 128)
    and one gradient."""
    rng = np.random.default_rng(3)
    y = np.tile(np.arange(128) % 3, (4, 1)).astype(np.int32)
    x = np.zeros((4, 128, 10), np.float32)
    x[..., :5] = rng.normal(size=(4, 3, 5))[np.arange(4)[:, None], y] + rng.normal(size=(4, 128, 5))
    x[..., :5] = (x[..., :5] - x[..., :5].mean(axis=1, keepdims=True)) / x[..., :5].std(axis=1, keepdims=True)
    tasks = priors.Task(x=jnp.asarray(x), y=jnp.asarray(y), valid=jnp.ones(4, bool), n_features=jnp.full(4, 5),
                        n_classes=jnp.full(4, 3), categorical=jnp.zeros((4, 10), bool))  # fmt: skip
    config = tiny().replace(prior=TEST_PRIOR, read_out="ridge")

    def loss(params):
        per_dataset, valid = task_losses(params, tasks, jnp.int32(64), model=config.model, bucket=128, floor=0,
                                         read_out="ridge")  # fmt: skip
        return jnp.sum(jnp.where(valid, per_dataset, 0.0)) / jnp.maximum(jnp.sum(valid), 1)

    params = init_params(jax.random.key(0), config.model)
    value_and_grad = jax.jit(jax.value_and_grad(loss)).lower(params).compile(
        compiler_options={"xla_backend_optimization_level": 0}
    )
    value, grads = value_and_grad(params)
    norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree_util.tree_leaves(grads))))
    assert np.isfinite(float(value)) and np.isfinite(norm) and norm > 0
    stepped, _ = value_and_grad(jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g / norm, params, grads))
    # a step of length 1e-3 against the gradient lowers the loss by about 1e-3 * |gradient|
    assert float(value) - float(stepped) > 0.5e-3 * norm, (float(stepped), float(value), norm)
