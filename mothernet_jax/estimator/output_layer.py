"""The children's read-out refitted at fit time on every training row (`output_layer="refit"`).

A generated child is a small MLP: its hidden layers are a feature map the hypernetwork chose for the
dataset, its output layer a linear read-out of them. With `output_layer="refit"`, fit keeps each
member's generated (and fine-tuned) hidden layers and replaces the read-out by a linear model of
the child's last hidden layer and of its standardised input columns (the child's `skip` read-out),
fitted on every training row (a member reads at most `max_train_rows` rows as context; the read-out
sees them all), each member on its own target:

- a regressor's member (`ridge_output_layers`): ridge regression of the member-standardised target,
  an unpenalised intercept, the penalty chosen per member by generalised cross-validation (GCV,
  Golub, Heath and Wahba 1979) over `RELATIVE_PENALTIES` times the largest eigenvalue of the
  features' covariance. The statistics (Gram matrix, products with the target) are summed in blocks
  of `ROW_BLOCK` rows: memory does not grow with the rows, and one eigendecomposition gives every
  penalty's solution.
- a classifier's member (`logistic_output_layers`): L2-penalised logistic regression (scikit-learn's
  `LogisticRegression`, C = `LOGISTIC_C`, multinomial over the member's output groups) of its
  groups, on at most `MAX_LOGISTIC_ROWS` rows (a seeded random subset beyond), its logits scaled by
  the predictor's temperature so that softmax(logits / temperature) is the fitted model.

The hidden features are divided by one scale per member (their overall standard deviation) so that
one penalty treats them and the standardised inputs alike. NumPy (and scikit-learn), float64.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from mothernet_jax.child import Child, hidden_features, numpy_layers, standardise_rows

ROW_BLOCK = 8192
# the GCV grid, relative to the largest eigenvalue of the centred features' Gram matrix
RELATIVE_PENALTIES = np.logspace(-5, 2, 15)
LOGISTIC_C = 1.0  # chosen on the validation datasets (1 against 0.1 and 10: docs/FAST_DEFAULTS.md)
LOGISTIC_TOL = 1e-3
LOGISTIC_MAX_ITER = 50
MAX_LOGISTIC_ROWS = 20_000


class RidgeFit(NamedTuple):
    """w (F,), b: the read-out; penalty: the chosen ridge penalty; gcv: its GCV score."""

    w: np.ndarray
    b: float
    penalty: float
    gcv: float


def _features(child: Child, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hidden (n, P), standardised inputs z (n, d)) of raw rows x, float64."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z = standardise_rows(np.asarray(x, np.float32), child.mean, child.std, np).astype(np.float64)
    return hidden_features(numpy_layers(child.layers, np.float64), z, np), z


def read_out_features(child: Child, x: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """What the refitted read-out reads, [hidden / scale, z] (n, P + d), and the scale: given, or
    (None) the hidden features' standard deviation over the rows x (1 if none vary)."""
    hidden, z = _features(child, x)
    if scale is None:
        spread = float(hidden.std())
        scale = spread if spread > 0 else 1.0
    return np.concatenate([hidden / scale, z], axis=1), scale


def with_read_out(child: Child, w: np.ndarray, b: np.ndarray, scale: float) -> Child:
    """The child with its read-out replaced: w (P + d, k) over [hidden / scale, z], b (k,)."""
    width = _hidden_width(child)
    output = ((w[:width] / scale).astype(np.float32), np.asarray(b, np.float32))
    return Child((*child.layers[:-1], output), child.mean, child.std, w[width:].astype(np.float32))


# -- regression: ridge with GCV -------------------------------------------------------------------


class Moments:
    """Sums over rows of a feature matrix H (n, F) and a target t (n,): n, sum H, H^T H, H^T t,
    sum t, sum t^2; added block by block."""

    def __init__(self, width: int):
        self.n = 0
        self.h = np.zeros(width)
        self.hh = np.zeros((width, width))
        self.ht = np.zeros(width)
        self.t = 0.0
        self.tt = 0.0

    def add(self, features: np.ndarray, target: np.ndarray) -> None:
        self.n += len(target)
        self.h += features.sum(axis=0)
        self.hh += features.T @ features
        self.ht += features.T @ target
        self.t += float(target.sum())
        self.tt += float(target @ target)


def ridge_gcv(moments: Moments, penalties: np.ndarray | None = None) -> RidgeFit:
    """The ridge regression of t on H with an intercept, its penalty the GCV-best of `penalties`
    (default: `RELATIVE_PENALTIES` times the largest eigenvalue of the centred Gram matrix).

    GCV(a) = (RSS(a) / n) / (1 - (df(a) + 1) / n)^2 with df(a) = sum l / (l + a) over the centred
    Gram matrix's eigenvalues l (the intercept counts one); penalties whose df leave no residual
    degree of freedom are skipped (the largest is taken when none is left). Features that never
    vary (dead relu units) get weight 0."""
    n = moments.n
    mean_h = moments.h / n
    gram = moments.hh - n * np.outer(mean_h, mean_h)
    cross = moments.ht - mean_h * moments.t
    total = max(moments.tt - moments.t**2 / n, 0.0)
    eigenvalues, vectors = np.linalg.eigh((gram + gram.T) / 2)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    top = float(eigenvalues.max(initial=0.0))
    if top <= 0.0:  # no feature varies: the intercept alone
        return RidgeFit(np.zeros(len(mean_h)), moments.t / n, np.inf, np.nan)
    penalties = RELATIVE_PENALTIES * top if penalties is None else np.asarray(penalties, np.float64)
    projected = vectors.T @ cross
    best = None
    for penalty in penalties:
        shrink = eigenvalues + penalty
        rss = max(total - float(np.sum(projected**2 * (eigenvalues + 2 * penalty) / shrink**2)), 0.0)
        left = 1.0 - (float(np.sum(eigenvalues / shrink)) + 1.0) / n
        score = (rss / n) / left**2 if left > 0 else np.inf
        if best is None or score < best[0] or (not np.isfinite(best[0]) and penalty > best[1]):
            best = (score, float(penalty))
    score, penalty = best
    w = vectors @ (projected / (eigenvalues + penalty))
    return RidgeFit(w, float(moments.t / n - mean_h @ w), penalty, score)


def ridge_output_layers(
    children: list[Child],
    encoded: np.ndarray,
    columns: list[np.ndarray],
    y: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
    *,
    row_block: int = ROW_BLOCK,
) -> tuple[list[Child], np.ndarray]:
    """(children, noise): the regressor's children with their read-out refitted by `ridge_gcv` on
    every row of `encoded` (n, n_columns), member m reading `encoded[:, columns[m]]` and predicting
    (y - target_mean[m]) / target_std[m] (the hidden layers, mean and std kept), and noise (members,)
    each member's estimated prediction error in y's units: sqrt(GCV) (an estimate of the
    leave-one-out mean squared error) times target_std[m]."""
    y = np.asarray(y, np.float64)
    refitted, noise = [], []
    for m, (child, cols) in enumerate(zip(children, columns, strict=True)):
        scale = read_out_features(child, encoded[:ROW_BLOCK][:, cols])[1]  # whatever the block size
        moments = Moments(_hidden_width(child) + len(child.mean))
        for start in range(0, len(y), row_block):
            rows = slice(start, start + row_block)
            features, _ = read_out_features(child, encoded[rows][:, cols], scale)
            moments.add(features, (y[rows] - target_mean[m]) / target_std[m])
        fit = ridge_gcv(moments)
        refitted.append(with_read_out(child, fit.w[:, None], np.array([fit.b]), scale))
        spread = max(moments.tt - moments.t**2 / moments.n, 0.0) / moments.n  # no feature varies: y's
        noise.append(np.sqrt(fit.gcv if np.isfinite(fit.gcv) else spread) * target_std[m])
    return refitted, np.array(noise)


# -- classification: L2 logistic regression --------------------------------------------------------


def logistic_read_out(features: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(w (F, n_groups), b (n_groups,)): the logits of scikit-learn's L2 logistic regression
    (C = LOGISTIC_C; L-BFGS, at most LOGISTIC_MAX_ITER iterations to tolerance LOGISTIC_TOL) of
    `groups` on `features` (centred for the solver, mapped back); two groups as +-half the binary
    logit, so that softmax gives the binary model's probabilities. A group absent from the rows gets
    logit -30.

    The solver's budget was measured on the 53 validation datasets (4 native members of 256 rows):
    mean AUC 0.8166 solved to scikit-learn's default tolerance (1e-4: Newton-Cholesky for two
    groups, up to 200 L-BFGS iterations for more), 0.8166 at 1e-3 and 100 L-BFGS iterations, 0.8164
    at 1e-3 and 50; for 6-10 groups of 1,000 rows, 100 iterations cost 40-70 ms a member, 50 cost
    20-55 ms (5-10 ms for two groups), and the read-out is most of a many-class fit. Standardising every
    column first converges in fewer iterations but scored 0.8150: the hidden units' generated
    scales carry information that one common scale keeps."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(groups)
    w = np.zeros((features.shape[1], n_groups))
    b = np.full(n_groups, -30.0)
    if len(present) == 1:  # one group in the rows: it is certain
        b[present[0]] = 0.0
        return w, b
    centre = features.mean(axis=0)
    model = LogisticRegression(C=LOGISTIC_C, tol=LOGISTIC_TOL, max_iter=LOGISTIC_MAX_ITER)
    with warnings.catch_warnings():  # the iteration budget is deliberate (see above)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features - centre, groups)
    coef, intercept = model.coef_.T, model.intercept_ - centre @ model.coef_.T
    if len(present) == 2:
        w[:, present[0]], w[:, present[1]] = -coef[:, 0] / 2, coef[:, 0] / 2
        b[present[0]], b[present[1]] = -intercept[0] / 2, intercept[0] / 2
    else:
        w[:, present], b[present] = coef, intercept
    return w, b


def logistic_output_layers(
    children: list[Child],
    encoded: np.ndarray,
    columns: list[np.ndarray],
    groups: list[np.ndarray],
    y: np.ndarray,
    *,
    temperature: float,
    rng: np.random.Generator,
    max_rows: int = MAX_LOGISTIC_ROWS,
) -> list[Child]:
    """The classifier's children with their read-out refitted by `logistic_read_out` on the rows of
    `encoded` (at most `max_rows`, drawn by `rng` beyond), member m reading `encoded[:, columns[m]]`
    and predicting the output group `groups[m][y]` of each row's class code y. The hidden layers,
    mean and std are kept; the logits are stored times `temperature` (the predictor divides)."""
    y = np.asarray(y)
    rows = np.arange(len(y)) if len(y) <= max_rows else np.sort(rng.choice(len(y), max_rows, replace=False))
    refitted = []
    for child, cols, member_groups in zip(children, columns, groups, strict=True):
        features, scale = read_out_features(child, encoded[rows][:, cols])
        n_groups = child.layers[-1][1].shape[-1]
        w, b = logistic_read_out(features, member_groups[y[rows]], n_groups)
        refitted.append(with_read_out(child, w * temperature, b * temperature, scale))
    return refitted


def _hidden_width(child: Child) -> int:
    weight = child.layers[-1][0]
    return (weight[0] if isinstance(weight, tuple) else weight).shape[0]
