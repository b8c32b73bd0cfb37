"""The child's read-out fitted in closed form, in JAX: the one solve of the training loss and `generate`.

A generated child is a feature map (its hidden layers) and a linear read-out. `fit_read_out` keeps the
feature map and solves the read-out on a task's training rows, as the estimators' refit does
(`estimator.output_layer`), but in closed form and differentiably, so that the meta-training loss can
score the child with the read-out it is used with (R2-D2: Bertinetto, Henriques, Torr and Vedaldi,
"Meta-learning with differentiable closed-form solvers", ICLR 2019):

- features F = [hidden / s, z] (n, P + d): the child's last hidden layer (`runtime.child.hidden_features`)
  over one scale s (its standard deviation over the training rows' entries) and the standardised
  inputs z, the columns the refit reads;
- targets: the one-hot classes (classification) or the standardised target (regression);
- ridge regression with an unpenalised intercept (F and the targets centred over the training rows),
  W = argmin |Yc - Fc W|^2 + lambda |W - W0|^2 = (Fc^T Fc + lambda I)^-1 (Fc^T Yc + lambda W0),
  solved by Cholesky; padding rows carry no weight;
- the penalty lambda = r * n (n training rows; the features have unit scale, so r is the penalty per
  row) is the best of `RELATIVE_PENALTIES` by the closed-form leave-one-out error
  sum_i |e_i / (1 - h_ii)|^2 (h the hat matrix's diagonal, the intercept's 1 / n included), chosen
  outside the gradient; the solve at the chosen penalty is differentiated, through the Cholesky
  factor, into the hidden layers;
- the prior W0 (`prior=True`): the generated read-out, so that a task with few rows keeps what the
  hypernetwork emitted and one with many rows what its data say. For regression it is the generated
  output layer as it is (it predicts the standardised target); for classification its logits are
  mapped to the one-hot scale by the least-squares factor c >= 0 of the centred targets on the
  centred generated logits (c = 0, the zero prior, when they are unrelated, as for an untrained
  hypernetwork). With `prior=False`, W0 = 0 (plain ridge);
- classification logits: the ridge outputs times one factor alpha per task, the best of
  `LOGIT_SCALES` by the cross-entropy of the training rows' leave-one-out outputs against labels
  smoothed by Laplace's rule (so that softmax(alpha * outputs) is calibrated without a held-out set
  and stays finite where the rows are separable); classes absent from the training rows get no
  probability (logit `ABSENT_LOGIT`).

Everything is a pure function of one task; vmap it over tasks (the training step does).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mothernet_jax.runtime.child import Child, hidden_features, standardise_rows

RELATIVE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # lambda / n, chosen per task by leave-one-out
LOGIT_SCALES = tuple(float(a) for a in np.geomspace(0.5, 100.0, 16))  # alpha, chosen per task
ABSENT_LOGIT = -30.0  # a class with no training row
LOGISTIC_PENALTY = 1.0  # lambda of the logistic read-out: scikit-learn's C = 1, as the estimators' refit
NEWTON_STEPS = 10  # Newton steps of the logistic read-out (float32: ~1e-4 of the optimum from 8 on)
MAX_LOGIT_STEP = 4.0  # the largest change of a training row's logit in one Newton step
INTERCEPT_PENALTY = 1e-3  # the logistic intercept's: next to nothing, but a class absent from the
# rows keeps a finite intercept (and the damped steps bound it)
SOLVERS = ("ridge", "logistic")
_EPS = 1e-6


class ReadOut(NamedTuple):
    """A fitted read-out of one task: outputs = (F - f_mean) @ w + y_mean, F = [hidden / scale, z];
    classification logits alpha * outputs, absent classes `ABSENT_LOGIT`.

    w (P + d, k), intercept (k,) (y_mean - f_mean @ w), scale () the hidden layer's divisor,
    penalty () lambda, alpha () the logit scale (1 for regression), present (k,) bool.
    """

    w: jax.Array
    intercept: jax.Array
    scale: jax.Array
    penalty: jax.Array
    alpha: jax.Array
    present: jax.Array


def _masked_mean(a, mask):
    """Mean over the rows (axis -2) where mask (n,) is True."""
    weights = mask.astype(a.dtype)[:, None]
    return jnp.sum(a * weights, axis=-2) / jnp.maximum(jnp.sum(weights), 1.0)


def hidden_scale(hidden, mask):
    """The standard deviation of the hidden layer's entries over the rows `mask` (1 where none varies):
    the refit's one divisor, so that one penalty treats hidden units and inputs alike."""
    mean = jnp.sum(jnp.where(mask[:, None], hidden, 0.0)) / jnp.maximum(jnp.sum(mask) * hidden.shape[-1], 1.0)
    var = jnp.sum(jnp.where(mask[:, None], (hidden - mean) ** 2, 0.0)) / jnp.maximum(
        jnp.sum(mask) * hidden.shape[-1], 1.0
    )
    varies = var > 1e-12
    return jnp.where(varies, jnp.sqrt(jnp.where(varies, var, 1.0)), 1.0)


def standardise_columns(x, mask):
    """x (n, d) standardised over the rows `mask` (mean, std with ddof 1); a column that does not vary
    there (padding columns too) becomes 0; non-finite entries 0."""
    x = jnp.where(jnp.isfinite(x), x, 0.0)
    mean = _masked_mean(x, mask)
    count = jnp.sum(mask)
    var = jnp.sum(jnp.where(mask[:, None], (x - mean[None]) ** 2, 0.0), axis=0) / jnp.maximum(count - 1.0, 1.0)
    varies = var > 1e-12
    std = jnp.where(varies, jnp.sqrt(jnp.where(varies, var, 1.0)), 1.0)
    return jnp.where(varies[None], (x - mean[None]) / std[None], 0.0)


def _centred(features, targets, mask):
    f_mean, y_mean = _masked_mean(features, mask), _masked_mean(targets, mask)
    weight = mask.astype(features.dtype)[:, None]
    return (features - f_mean[None]) * weight, (targets - y_mean[None]) * weight, f_mean, y_mean


def _solve(fc, yc, w0, penalty):
    """(W, hat diagonal without the intercept) of the ridge toward w0 at one penalty."""
    p = fc.shape[-1]
    gram = fc.T @ fc + penalty * jnp.eye(p, dtype=fc.dtype)
    factor = jax.scipy.linalg.cho_factor(gram, lower=True)
    w = jax.scipy.linalg.cho_solve(factor, fc.T @ yc + penalty * w0)
    v = jax.scipy.linalg.solve_triangular(factor[0], fc.T, lower=True)  # (p, n)
    return w, jnp.sum(v * v, axis=0)


def loo_residuals(fc, yc, w0, penalty, mask):
    """Leave-one-out residuals (n, k) of the ridge toward w0 (0 on rows outside `mask`) and W."""
    w, hat = _solve(fc, yc, w0, penalty)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    leverage = jnp.clip(hat + 1.0 / count, 0.0, 1.0 - 1e-3)
    residual = (yc - fc @ w) / (1.0 - leverage)[:, None]
    return jnp.where(mask[:, None], residual, 0.0), w


def ridge(features, targets, mask, *, w0=None, penalties=RELATIVE_PENALTIES):
    """The ridge read-out of `targets` (n, k) on `features` (n, p) over the rows `mask` (n,) bool,
    toward `w0` (p, k) (None: 0), its penalty the leave-one-out best of `penalties` times n.

    Returns (w (p, k), intercept (k,), penalty (), loo (n, k) the leave-one-out residuals at the
    chosen penalty, rows outside mask 0). Differentiable in features and w0 (the choice of the
    penalty is not: it is a selection)."""
    fc, yc, f_mean, y_mean = _centred(features, targets, mask)
    w0 = jnp.zeros((features.shape[-1], targets.shape[-1]), features.dtype) if w0 is None else w0
    count = jnp.maximum(jnp.sum(mask).astype(features.dtype), 1.0)
    grid = jnp.asarray(penalties, features.dtype) * count
    stopped = jax.lax.stop_gradient((fc, yc, w0))
    scores = jax.vmap(lambda lam: jnp.sum(loo_residuals(*stopped, lam, mask)[0] ** 2))(grid)
    penalty = jax.lax.stop_gradient(grid[jnp.argmin(scores)])
    loo, w = loo_residuals(fc, yc, w0, penalty, mask)
    return w, y_mean - f_mean @ w, penalty, loo


def logit_scale(outputs, labels, mask, present, scales=LOGIT_SCALES):
    """alpha: the best of `scales` by the mean cross-entropy of softmax(alpha * outputs) (absent
    classes masked) over the rows `mask`, against the labels smoothed by Laplace's rule (a share
    1 / (n + 1) spread over the present classes): separable leave-one-out outputs would otherwise
    ask for an unbounded alpha, overconfident on new rows. outputs (n, k), labels (n,) int."""
    logits = jnp.asarray(scales)[:, None, None] * outputs[None]
    logits = jnp.where(present[None, None], logits, ABSENT_LOGIT)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_p, labels[None, :, None], axis=-1)[..., 0]
    spread = jnp.sum(jnp.where(present[None, None], log_p, 0.0), axis=-1) / jnp.maximum(jnp.sum(present), 1)
    smoothing = 1.0 / (jnp.sum(mask) + 1.0)
    per_row = (1.0 - smoothing) * picked + smoothing * spread
    losses = -jnp.sum(jnp.where(mask[None], per_row, 0.0), axis=1)
    return jnp.asarray(scales)[jnp.argmin(losses)]


def binary_logistic(features, targets, mask, *, penalty=LOGISTIC_PENALTY, steps=NEWTON_STEPS, w0=None):
    """L2 logistic regressions of each column of targets (n, m) in {0, 1} on features (n, p) over
    the rows `mask`: per column, argmin sum_i log(1 + exp(-s_i (f_i w + b))) + penalty / 2
    |w - w0|^2, the intercept b barely penalised (`INTERCEPT_PENALTY`); `steps` damped Newton steps
    from the intercept-only model (differentiable: the steps are unrolled). The m problems are
    batched explicitly (one (m, p + 1, p + 1) solve a step). w0: (p, m) or None.
    Returns (w (p, m), b (m,))."""
    n, p = features.shape
    m = targets.shape[-1]
    dtype = features.dtype
    augmented = jnp.concatenate([features, jnp.ones((n, 1), dtype)], axis=-1)  # (n, p + 1)
    weights = mask.astype(dtype)[:, None]
    diagonal = jnp.concatenate([jnp.full((p,), penalty, dtype), jnp.full((1,), INTERCEPT_PENALTY, dtype)])
    count = jnp.maximum(jnp.sum(weights), 1.0)
    rate = jnp.clip(jnp.sum(targets * weights, axis=0) / count, 1e-3, 1 - 1e-3)
    if w0 is None:  # no product with a constant zero matrix: XLA's CPU backend (jax 0.10) computes
        # garbage for one under jit (`tests/model/test_read_out.py` guards it)
        centre = jnp.zeros((p + 1, m), dtype)
        offset = jnp.zeros((m,), dtype)
    else:
        centre = jnp.concatenate([w0, jnp.zeros((1, m), dtype)])
        offset = jnp.sum(weights * (features @ w0), axis=0) / count  # the prior's mean logit
    start = centre.at[p].set(jnp.log(rate / (1 - rate)) - offset)
    eye = jnp.eye(p + 1, dtype=dtype)

    def newton(_, w):
        logits = augmented @ w  # (n, m)
        q = jax.nn.sigmoid(logits)
        gradient = augmented.T @ ((q - targets) * weights) + diagonal[:, None] * (w - centre)  # (p + 1, m)
        curvature = q * (1 - q) * weights  # (n, m)
        hessian = jnp.einsum("nk,ni,nj->kij", curvature, augmented, augmented) + jnp.diag(diagonal)[None]
        hessian = hessian + 1e-6 * jnp.trace(hessian, axis1=1, axis2=2)[:, None, None] / (p + 1) * eye[None]
        factor = jax.scipy.linalg.cho_factor(hessian, lower=True)
        step = jax.scipy.linalg.cho_solve(factor, gradient.T[..., None])[..., 0].T  # (p + 1, m)
        # damped: no training row's logit moves by more than MAX_LOGIT_STEP in one step (a full
        # Newton step from a flat start overshoots on separable rows); near the optimum, full steps
        moved = jnp.max(jnp.where(weights > 0, jnp.abs(augmented @ step), 0.0), axis=0)
        return w - step * jnp.minimum(1.0, MAX_LOGIT_STEP / jnp.maximum(moved, _EPS))[None]

    w = jax.lax.fori_loop(0, steps, newton, start)
    return w[:p], w[p]


def logistic(features, labels, mask, k: int, *, penalty=LOGISTIC_PENALTY, steps=NEWTON_STEPS, w0=None):
    """The logistic read-out of labels (n,) in 0..k-1: logits (F w + b) whose softmax is the model.

    Two classes: one binary L2 logistic regression, the logits +-half its logit. More: one binary
    model per class against the others (one-vs-rest); where only two classes are present the
    logits are halved, so that a binary task gets the binary model whatever k is. w0 (p, k): a
    prior (see `binary_logistic`; for two classes, its class-1 column minus its class-0 column).
    Returns (w (p, k), b (k,))."""
    if k == 2:
        prior = None if w0 is None else (w0[:, 1] - w0[:, 0])[:, None]
        target = (labels == 1).astype(features.dtype)[:, None]
        w, b = binary_logistic(features, target, mask, penalty=penalty, steps=steps, w0=prior)
        return jnp.concatenate([-w / 2, w / 2], axis=-1), jnp.concatenate([-b / 2, b / 2])
    targets = (labels[:, None] == jnp.arange(k)[None, :]).astype(features.dtype)  # (n, k)
    w, b = binary_logistic(features, targets, mask, penalty=penalty, steps=steps, w0=w0)
    present = jnp.sum(jnp.any(mask[:, None] & (targets > 0), axis=0))
    halve = jnp.where(present == 2, 0.5, 1.0)
    return w * halve, b * halve


def prior_weights(hidden_part, w_out, targets_c, features_c, regression: bool):
    """W0 over [hidden / s, z]: the generated output layer (P, k) on the hidden part (times s), 0 on
    z; for classification scaled by the least-squares factor c >= 0 of the centred one-hot targets
    on the centred generated outputs (module docstring)."""
    width = hidden_part
    w0 = jnp.zeros((features_c.shape[-1], w_out.shape[-1]), features_c.dtype).at[:width].set(w_out)
    if regression:
        return w0
    generated = features_c @ w0
    c = jnp.sum(targets_c * generated) / (jnp.sum(generated * generated) + _EPS)
    return w0 * jnp.maximum(c, 0.0)


def dense(weight):
    """A layer's weight as one matrix (a low-rank pair (A, S) multiplied out)."""
    return weight[0] @ weight[1] if isinstance(weight, tuple) else weight


def fit_read_out(
    hidden,
    z,
    w_gen,
    targets,
    mask,
    *,
    regression: bool = False,
    prior: bool = False,
    solver: str = "ridge",
    penalties=RELATIVE_PENALTIES,
) -> ReadOut:
    """The read-out of one task, fitted on its training rows (module docstring).

    hidden: (n, P) the child's last hidden layer (`runtime.child.hidden_features`); z: (n, d) the
    standardised inputs (padding columns 0); w_gen: (P, k) the generated output layer (its k
    outputs are the read-out's); targets: (n,) int labels 0..k-1 (classification) or the
    standardised target (regression, k = 1); mask: (n,) bool, the training rows.
    solver: "ridge" (the closed form, leave-one-out penalty and logit scale) or, for
    classification, "logistic" (`logistic`: L2 logistic regression, `NEWTON_STEPS` Newton steps,
    penalty `LOGISTIC_PENALTY`).
    """
    scale = hidden_scale(hidden, mask)
    features = jnp.concatenate([hidden / scale, z], axis=-1)
    if regression:
        y = targets.astype(features.dtype)[:, None]
        present = jnp.ones((1,), bool)
    else:
        y = jax.nn.one_hot(targets, w_gen.shape[-1], dtype=features.dtype)
        present = jnp.any(mask[:, None] & (y > 0), axis=0)
    w0 = None
    if prior:
        fc, yc, _, _ = _centred(features, y, mask)
        w0 = prior_weights(hidden.shape[-1], w_gen * scale, yc, fc, regression or solver == "logistic")
    if solver == "logistic" and not regression:
        w, intercept = logistic(features, targets, mask, w_gen.shape[-1], w0=w0)
        one = jnp.ones((), features.dtype)
        return ReadOut(w, intercept, scale, LOGISTIC_PENALTY * one, one, present)
    w, intercept, penalty, loo = ridge(features, y, mask, w0=w0, penalties=penalties)
    if regression:
        alpha = jnp.ones((), features.dtype)
    else:
        loo_outputs = jax.lax.stop_gradient(y - loo)  # rows outside mask are ignored
        alpha = logit_scale(loo_outputs, targets, mask, present)
    return ReadOut(w, intercept, scale, penalty, alpha, present)


def read_out_outputs(read_out: ReadOut, hidden, z):
    """The fitted read-out's outputs on rows (hidden (n, P), z (n, d)): logits (classification:
    alpha times the ridge outputs, absent classes `ABSENT_LOGIT`) or the standardised prediction
    (regression)."""
    features = jnp.concatenate([hidden / read_out.scale, z], axis=-1)
    outputs = read_out.alpha * (features @ read_out.w + read_out.intercept[None])
    return jnp.where(read_out.present[None], outputs, ABSENT_LOGIT)


def child_with_read_out(child: Child, read_out: ReadOut, *, logit_factor: float = 1.0) -> Child:
    """`child` with its output layer replaced by the fitted read-out (and the skip read-out of its
    inputs): its logits are `logit_factor` times the read-out's (the estimator's convention: logits
    times the temperature that `predict_proba` divides by)."""
    width = dense(child.layers[-1][0]).shape[0]
    factor = read_out.alpha * logit_factor
    w_out = read_out.w[:width] / read_out.scale * factor
    b_out = jnp.where(read_out.present, read_out.intercept * factor, ABSENT_LOGIT * logit_factor)
    skip = read_out.w[width:] * factor
    return Child((*child.layers[:-1], (w_out, b_out)), child.mean, child.std, skip)


def fit_child(child: Child, X, y, *, n_rows=None, n_features=None, regression: bool = False,
              prior: bool = False, solver: str = "ridge", logit_factor: float = 1.0) -> Child:  # fmt: skip
    """`child` (as `generate` returns it: raw rows in, its classes' outputs) with its read-out fitted
    on the training set X (n, d) raw, y (n,) (labels 0..k-1, or the raw regression target), of which
    the first n_rows rows and n_features columns are real (None: all). Pure JAX: jit, vmap and grad.

    Regression: the target is standardised over the training rows for the solve and the output layer
    mapped back to y's units (as `generate` does)."""
    X = jnp.asarray(X, jnp.float32)
    n, d = X.shape
    rows = jnp.arange(n) < (n if n_rows is None else n_rows)
    columns = jnp.arange(d) < (d if n_features is None else n_features)
    observed = rows[:, None] & columns[None, :] & ~jnp.isnan(X)  # NaN never enters the arithmetic
    z = standardise_rows(jnp.where(observed, X, child.mean[None]), child.mean, child.std, jnp)
    z = jnp.where(observed, z, 0.0)  # missing entries and padding read as 0, as the child reads NaN
    if regression:
        y = jnp.where(rows, jnp.asarray(y, jnp.float32), 0.0)
        mean = jnp.sum(y) / jnp.maximum(jnp.sum(rows), 1)
        var = jnp.sum(jnp.where(rows, (y - mean) ** 2, 0.0)) / jnp.maximum(jnp.sum(rows) - 1, 1)
        spread = var > 0
        std = jnp.where(spread, jnp.sqrt(jnp.where(spread, var, 1.0)), 1.0)
        w_out, b_out = child.layers[-1]  # in y's units: back to the standardised target's
        standard = Child((*child.layers[:-1], (w_out / std, (b_out - mean) / std)), child.mean, child.std)
        hidden = hidden_features(standard.layers, z, jnp)
        w_gen = dense(standard.layers[-1][0])
        fitted = fit_read_out(hidden, z, w_gen, (y - mean) / std, rows, regression=True, prior=prior)
        out = child_with_read_out(standard, fitted)
        w_out, b_out = out.layers[-1]
        return Child((*out.layers[:-1], (w_out * std, b_out * std + mean)), out.mean, out.std, out.skip * std)
    labels = jnp.where(rows, jnp.asarray(y).astype(jnp.int32), 0)
    hidden = hidden_features(child.layers, z, jnp)
    fitted = fit_read_out(hidden, z, dense(child.layers[-1][0]), labels, rows, prior=prior, solver=solver)
    return child_with_read_out(child, fitted, logit_factor=logit_factor)
