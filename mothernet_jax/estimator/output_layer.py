"""The children's read-out refitted at fit time on every training row (`output_layer="refit"`).

A generated child is a small MLP: its hidden layers are a feature map the hypernetwork chose for the
dataset, its output layer a linear read-out of them. With `output_layer="refit"`, fit keeps each
member's generated (and fine-tuned) hidden layers and replaces the read-out by a linear model of
the child's last hidden layer and of its standardised input columns (the child's `skip` read-out),
fitted on every training row (a member reads at most `max_train_rows` rows as context; the read-out
sees them all), each member on its own:

- a regressor's member (`ridge_output_layers`): ridge regression of the member-standardised target,
  an unpenalised intercept, the penalty chosen per member by generalised cross-validation (GCV,
  Golub, Heath and Wahba 1979) over `RELATIVE_PENALTIES` times the largest eigenvalue of the
  features' covariance. The statistics (Gram matrix, products with the target) are summed in blocks
  of `ROW_BLOCK` rows: memory does not grow with the rows, and one eigendecomposition gives every
  penalty's solution.
- a classifier's member (`logistic_output_layers`): L2-penalised multinomial logistic regression
  (C = `LOGISTIC_C`) of **every class**, whatever the class group the member was generated for
  (more than 10 classes: the hypernetwork reads groups of them, the read-out tells them all apart),
  so that its cost per row grows with the classes only in the read-out's products. Up to
  `MAX_LOGISTIC_ROWS` rows: scikit-learn's `LogisticRegression` on the rows in memory. Beyond: the
  same problem solved over every row by `streaming_logistic` (L-BFGS whose loss and gradient are
  summed over row blocks, the features held in float32 or recomputed a block at a time),
  started from scikit-learn's solution on the member's own stratified subsample of
  `MAX_LOGISTIC_ROWS` rows (every class in it). The logits are scaled by the predictor's
  temperature so that softmax(logits / temperature) is the fitted model.

The hidden features are divided by one scale per member (their standard deviation over every
training row) so that one penalty treats them and the standardised inputs alike. NumPy (and
scikit-learn, SciPy), float64 but for the held feature blocks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from mothernet_jax.estimator.plan import stratified_rows
from mothernet_jax.runtime.child import Child, hidden_features, numpy_layers, standardise_rows

ROW_BLOCK = 8192
# the GCV grid, relative to the largest eigenvalue of the centred features' Gram matrix
RELATIVE_PENALTIES = np.logspace(-5, 2, 15)
LOGISTIC_C = 1.0  # chosen on the validation datasets (1 against 0.1 and 10: docs/FAST_DEFAULTS.md)
LOGISTIC_TOL = 1e-3
LOGISTIC_MAX_ITER = 50
MAX_LOGISTIC_ROWS = 20_000  # beyond: the streaming solver over every row, from a subsample's solution
STREAM_MAX_ITER = 20  # L-BFGS iterations of the streaming solver from that start
MAX_HELD_BYTES = 1 << 29  # a member's float32 features up to this size are held, else recomputed per pass
ABSENT_LOGIT = -30.0  # the logit of a class with no row to fit


class RidgeFit(NamedTuple):
    """w (F,), b: the read-out; penalty: the chosen ridge penalty; gcv: its GCV score."""

    w: np.ndarray
    b: float
    penalty: float
    gcv: float


def _features(child: Child, x: np.ndarray, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """(hidden (n, P), standardised inputs z (n, d)) of raw rows x, in `dtype`."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z = standardise_rows(np.asarray(x, np.float32), child.mean, child.std, np).astype(dtype)
    return hidden_features(numpy_layers(child.layers, dtype), z, np), z


def read_out_features(child: Child, x: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """What the refitted read-out reads, [hidden / scale, z] (n, P + d), and the scale: given, or
    (None) the hidden features' standard deviation over the rows x (1 if none vary)."""
    hidden, z = _features(child, x)
    if scale is None:
        scale = _scale(float(hidden.std()))
    return np.concatenate([hidden / scale, z], axis=1), scale


def _scale(spread: float) -> float:
    return spread if spread > 0 else 1.0


def hidden_scale(child: Child, x: np.ndarray, row_block: int = ROW_BLOCK) -> float:
    """The hidden features' standard deviation over every row of x (n, d) (1 if none vary), summed
    block by block in float32 features: the same whatever the rows' order and the block size."""
    return FeatureBlocks(child, x, row_block).scale


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

    def residual(self, w0: np.ndarray) -> Moments:
        """The moments of H and t - H @ w0, from these."""
        out = Moments(len(w0))
        out.n, out.h, out.hh = self.n, self.h, self.hh
        out.ht = self.ht - self.hh @ w0
        out.t = self.t - float(self.h @ w0)
        out.tt = self.tt - 2 * float(w0 @ self.ht) + float(w0 @ self.hh @ w0)
        return out

    def scaled(self, factors: np.ndarray) -> Moments:
        """The moments of H * factors (each column times its factor), from these."""
        out = Moments(len(factors))
        out.n, out.t, out.tt = self.n, self.t, self.tt
        out.h, out.ht = self.h * factors, self.ht * factors
        out.hh = self.hh * np.outer(factors, factors)
        return out


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
    prior: bool = False,
) -> tuple[list[Child], np.ndarray]:
    """(children, noise): the regressor's children with their read-out refitted by `ridge_gcv` on
    every row of `encoded` (n, n_columns), member m reading `encoded[:, columns[m]]` and predicting
    (y - target_mean[m]) / target_std[m] (the hidden layers, mean and std kept), and noise (members,)
    each member's estimated prediction error in y's units: sqrt(GCV) (an estimate of the
    leave-one-out mean squared error) times target_std[m].

    One pass over the rows a member: the moments of the unscaled features [hidden, z], from which
    the hidden scale (their standard deviation over every row) and the moments of
    [hidden / scale, z] follow, so that the fit depends on the rows, not on their order.

    prior (`output_layer="refit_prior"`): the penalty pulls the read-out toward the generated one
    (the child's output layer over the hidden features, 0 on the inputs) instead of toward zero:
    the ridge of the residual t - H w0, plus w0, so that GCV chooses how far to trust it."""
    y = np.asarray(y, np.float64)
    refitted, noise = [], []
    for m, (child, cols) in enumerate(zip(children, columns, strict=True)):
        width = _hidden_width(child)
        moments = Moments(width + len(child.mean))
        for start in range(0, len(y), row_block):
            rows = slice(start, start + row_block)
            hidden, z = _features(child, encoded[rows][:, cols])
            moments.add(np.concatenate([hidden, z], axis=1), (y[rows] - target_mean[m]) / target_std[m])
        entries = moments.n * width  # the hidden scale: their std over every entry, as hidden.std()
        mean = moments.h[:width].sum() / entries
        scale = _scale(float(np.sqrt(max(np.diag(moments.hh)[:width].sum() / entries - mean**2, 0.0))))
        factors = np.concatenate([np.full(width, 1.0 / scale), np.ones(len(child.mean))])
        scaled = moments.scaled(factors)
        if prior:
            weight = np.asarray(child.layers[-1][0], np.float64)[:, 0]
            w0 = np.concatenate([weight * scale, np.zeros(len(child.mean))])  # in the standardised target's units
            fit = ridge_gcv(scaled.residual(w0))
            fit = fit._replace(w=fit.w + w0)
        else:
            fit = ridge_gcv(scaled)
        refitted.append(with_read_out(child, fit.w[:, None], np.array([fit.b]), scale))
        spread = max(scaled.tt - scaled.t**2 / scaled.n, 0.0) / scaled.n  # no feature varies: y's
        noise.append(np.sqrt(fit.gcv if np.isfinite(fit.gcv) else spread) * target_std[m])
    return refitted, np.array(noise)


# -- where fine-tuning starts ---------------------------------------------------------------------


def start_output_layers(layers, mean, std, X, labels, n_rows, n_groups, *, temperature: float, regression: bool):
    """Where fine-tuning starts when the read-out is refitted after it: each child of a chunk whose
    generated read-out does worse on the rows it is about to be fine-tuned on than the best
    constant guess (the groups' shares; a regressor's target mean) gets in its place the read-out
    of its last hidden layer alone (divided by its std) fitted on those rows; the others keep
    theirs.

    Why: a generated read-out can be far from any fit (the shipped weights' children of three
    classes start at a cross-entropy of 9 to 10 nats, against ln 3 = 1.1 for a guess), and
    fine-tuning from there bends the hidden layers to repair its scale, which the refit then cannot
    undo: on the map (`benchmarks.scale --map`) such fine-tuned members scored below the untuned
    ones. Where the generated read-out is better than a guess (binary children, the regressor's),
    starting from it gave the larger gains (make_friedman1, 2,000 rows: R² 0.945 against 0.779 from
    the fitted read-out, whose optimum the first Adam steps leave and early stopping then ends).

    layers, mean, std: as `member_generation.member_layers` returns them (leading B); X: (B, T, F)
    rows, labels: (B, T) int groups (regression: the member-standardised float target), n_rows,
    n_groups: (B,). Classification: `logistic_read_out` of the groups, its logits times
    `temperature` (the fine-tuning's loss divides); regression: `ridge_gcv`. Returns the layers,
    NumPy float32, and (B,) bool: which children got the fitted read-out."""
    layers = [(tuple(np.array(f, np.float32) for f in w) if isinstance(w, tuple) else np.array(w, np.float32),
               np.array(b, np.float32)) for w, b in layers]  # fmt: skip
    weight, bias = layers[-1]
    mean, std, X = np.asarray(mean), np.asarray(std), np.asarray(X)
    replaced = np.zeros(len(n_rows), bool)
    for m in range(len(n_rows)):
        n, g = int(n_rows[m]), int(n_groups[m])
        member = [(tuple(f[m] for f in w) if isinstance(w, tuple) else w[m], b[m]) for w, b in layers]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            z = standardise_rows(X[m, :n], mean[m], std[m], np).astype(np.float64)
        hidden = hidden_features(numpy_layers(member, np.float64), z, np)
        outputs = hidden @ np.asarray(member[-1][0], np.float64) + member[-1][1]
        target = np.asarray(labels[m, :n])
        if regression:
            worse = np.mean((outputs[:, 0] - target) ** 2) > np.var(target)
        else:
            logits = outputs[:, :g] / temperature
            top = logits.max(axis=1, keepdims=True)
            loss = np.mean(np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0] - logits[np.arange(n), target])
            shares = np.bincount(target, minlength=g)[target] / n
            worse = loss > -np.mean(np.log(shares))
        if not worse:
            continue
        replaced[m] = True
        scale = _scale(float(hidden.std()))
        if regression:
            moments = Moments(hidden.shape[1])
            moments.add(hidden / scale, target.astype(np.float64))
            fit = ridge_gcv(moments)
            weight[m, :, 0], bias[m, 0] = fit.w / scale, fit.b
        else:
            w, b = logistic_read_out(hidden / scale, target, g)
            weight[m, :, :g], bias[m, :g] = w / scale * temperature, b * temperature
    layers[-1] = (weight, bias)
    return tuple(layers), replaced


# -- classification: L2 logistic regression of every class ----------------------------------------


def logistic_read_out(features: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(w (F, n_groups), b (n_groups,)): the logits of scikit-learn's L2 logistic regression
    (C = LOGISTIC_C; L-BFGS, at most LOGISTIC_MAX_ITER iterations to tolerance LOGISTIC_TOL) of
    `groups` (the classes, or any labels 0..n_groups-1) on `features` (centred for the solver,
    mapped back); two groups as +-half the binary logit, so that softmax gives the binary model's
    probabilities. A group absent from the rows gets logit ABSENT_LOGIT.

    The solver's budget was measured on the 53 validation datasets (4 native members of 256 rows):
    mean AUC 0.8166 solved to scikit-learn's default tolerance (1e-4: Newton-Cholesky for two
    groups, up to 200 L-BFGS iterations for more), 0.8166 at 1e-3 and 100 L-BFGS iterations, 0.8164
    at 1e-3 and 50; for 6-10 groups of 1,000 rows, 100 iterations cost 40-70 ms a member, 50 cost
    20-55 ms (5-10 ms for two groups), and the read-out is most of a many-class fit. Standardising every
    column first converges in fewer iterations but scored 0.8150: the hidden units' generated
    scales carry information that one common scale keeps.

    Columns constant over the rows (dead relu units: about half of a shipped child's hidden layer
    on a task) are left out of the solver: their weight is 0 at the optimum and on every L-BFGS
    iterate from zero (their gradient is their penalty's, 0 at 0), so the fit is the same at about
    half the cost."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(groups)
    w = np.zeros((features.shape[1], n_groups))
    b = np.full(n_groups, ABSENT_LOGIT)
    if len(present) == 1:  # one group in the rows: it is certain
        b[present[0]] = 0.0
        return w, b
    centre = features.mean(axis=0)
    live = np.flatnonzero(np.ptp(features, axis=0) > 0)
    if live.size == 0:  # nothing varies over the rows: the intercepts alone, the groups' log-frequencies
        log_frequency = np.log(np.bincount(groups, minlength=n_groups)[present] / len(groups))
        if len(present) == 2:
            half = (log_frequency[1] - log_frequency[0]) / 2
            b[present[0]], b[present[1]] = -half, half
        else:
            b[present] = log_frequency
        return w, b
    model = LogisticRegression(C=LOGISTIC_C, tol=LOGISTIC_TOL, max_iter=LOGISTIC_MAX_ITER)
    with warnings.catch_warnings():  # the iteration budget is deliberate (see above)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features[:, live] - centre[live], groups)
    coef = np.zeros((features.shape[1], model.coef_.shape[0]))
    coef[live] = model.coef_.T
    intercept = model.intercept_ - centre @ coef
    if len(present) == 2:
        w[:, present[0]], w[:, present[1]] = -coef[:, 0] / 2, coef[:, 0] / 2
        b[present[0]], b[present[1]] = -intercept[0] / 2, intercept[0] / 2
    else:
        w[:, present], b[present] = coef, intercept
    return w, b


def streaming_logistic(
    blocks,
    labels: np.ndarray,
    n_classes: int,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    centre: np.ndarray | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    prior: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(w (F, n_classes), b (n_classes,)) as `logistic_read_out` returns them, the same problem
    (C = LOGISTIC_C: mean cross-entropy + ||w||^2 / (2 C n), the intercept unpenalised, two classes
    as one binary logit as scikit-learn solves them) solved by SciPy's L-BFGS with the loss and its
    gradient summed over row blocks, so that memory holds one block's products at a time.

    blocks: re-iterable, yields (rows slice, features (rows, F)) covering labels' rows in order
    (float32 blocks are multiplied in float32 and summed in float64); labels: (n,) int in
    0..n_classes-1, every class present; start: (w, b) in this function's form (default zero);
    centre: (F,) subtracted from the features inside the solver (default: none), which leaves the
    optimum where it is and conditions the intercept; max_iter, tol: L-BFGS's budget (tol on the
    largest gradient entry, as scikit-learn's; None: STREAM_MAX_ITER, LOGISTIC_TOL); prior: (w0, b0)
    in this function's form: the penalty is ||w - w0||^2 (two classes: on the difference of the two
    columns, the binary logit's weights) instead of ||w||^2 (`output_layer="refit_prior"`)."""
    from scipy.optimize import minimize

    max_iter = STREAM_MAX_ITER if max_iter is None else max_iter
    tol = LOGISTIC_TOL if tol is None else tol
    labels = np.asarray(labels)
    n = len(labels)
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(f"streaming_logistic needs at least 2 classes in the rows, got {len(present)}")
    binary = len(present) == 2
    width = len(start[0]) if start is not None else len(centre) if centre is not None else next(iter(blocks))[1].shape[1]
    centre = np.zeros(width) if centre is None else np.asarray(centre, np.float64)
    outputs = 1 if binary else n_classes
    positive = present[-1]
    penalty = 1.0 / (LOGISTIC_C * n)

    def pack(w, b):  # this function's (w, b) -> the solver's vector over centred features
        w = np.asarray(w, np.float64).reshape(width, -1)
        b = np.asarray(b, np.float64).reshape(-1)
        if binary:
            w, b = w[:, [positive]] - w[:, [present[0]]], b[[positive]] - b[[present[0]]]
        return np.concatenate([w.ravel(), b + centre @ w])

    def loss_and_gradient(theta):
        w = theta[: width * outputs].reshape(width, outputs)
        b = theta[width * outputs :] - centre @ w  # the intercept over raw features
        loss, grad_w, grad_b = 0.0, np.zeros((width, outputs)), np.zeros(outputs)
        for rows, block in blocks:
            scores = block @ w.astype(block.dtype) + b
            y = labels[rows]
            if binary:
                s, t = scores[:, 0].astype(np.float64), (y == positive).astype(np.float64)
                loss += float(np.sum(np.logaddexp(0.0, s) - t * s))
                residual = (1.0 / (1.0 + np.exp(-s)) - t)[:, None]
            else:
                scores = scores.astype(np.float64)
                top = scores.max(axis=1, keepdims=True)
                shifted = np.exp(scores - top)
                total = shifted.sum(axis=1, keepdims=True)
                loss += float(np.sum(np.log(total[:, 0]) + top[:, 0] - scores[np.arange(len(y)), y]))
                residual = shifted / total
                residual[np.arange(len(y)), y] -= 1.0
            grad_w += block.T @ residual.astype(block.dtype)
            grad_b += residual.sum(axis=0)
        grad_w -= np.outer(centre, grad_b)  # the gradient over centred features
        value = loss / n + 0.5 * penalty * float(np.sum((w - anchor) ** 2))
        return value, np.concatenate([(grad_w / n + penalty * (w - anchor)).ravel(), grad_b / n])

    if start is None:
        theta = np.zeros(width * outputs + outputs)
    else:
        theta = pack(*start)
    anchor = np.zeros((width, outputs)) if prior is None else pack(*prior)[: width * outputs].reshape(width, outputs)
    result = minimize(
        loss_and_gradient, theta, jac=True, method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps, "maxls": 50},
    )  # fmt: skip
    w_c = result.x[: width * outputs].reshape(width, outputs)
    b_raw = result.x[width * outputs :] - centre @ w_c
    w, b = np.zeros((width, n_classes)), np.full(n_classes, ABSENT_LOGIT)
    if binary:
        w[:, present[0]], w[:, positive] = -w_c[:, 0] / 2, w_c[:, 0] / 2
        b[present[0]], b[positive] = -b_raw[0] / 2, b_raw[0] / 2
    else:
        w, b = w_c.copy(), b_raw.copy()
    return w, b


class FeatureBlocks:
    """A member's read-out features over every row of x (n, d), `row_block` rows at a time, in
    float32: iterating yields (rows slice, [hidden / scale, z]) any number of times; `take(rows)`
    gives some rows' in float64. `scale` is the hidden features' standard deviation over every row
    (`hidden_scale`). The features are computed once and held where they fit `MAX_HELD_BYTES`,
    else recomputed block by block on every pass (memory flat in the rows)."""

    def __init__(self, child: Child, x: np.ndarray, row_block: int = ROW_BLOCK):
        self.child, self.x, self.row_block = child, x, row_block
        self.hidden_width = _hidden_width(child)
        width = self.hidden_width + len(child.mean)
        self.held = np.empty((len(x), width), np.float32) if len(x) * width * 4 <= MAX_HELD_BYTES else None
        total = squares = 0.0
        for rows, block in self._raw_blocks():
            hidden = block[:, : self.hidden_width].astype(np.float64)
            total += float(hidden.sum())
            squares += float(np.square(hidden).sum())
            if self.held is not None:
                self.held[rows] = block
        entries = len(x) * self.hidden_width
        mean = total / entries if entries else 0.0
        self.scale = _scale(float(np.sqrt(max(squares / entries - mean**2, 0.0)))) if entries else 1.0
        if self.held is not None:
            self.held[:, : self.hidden_width] /= np.float32(self.scale)

    def _raw_blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for start in range(0, len(self.x), self.row_block):
            rows = slice(start, min(start + self.row_block, len(self.x)))
            hidden, z = _features(self.child, self.x[rows], np.float32)
            yield rows, np.concatenate([hidden, z], axis=1)

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray]]:
        if self.held is not None:
            for start in range(0, len(self.x), self.row_block):
                rows = slice(start, min(start + self.row_block, len(self.x)))
                yield rows, self.held[rows]
            return
        for rows, block in self._raw_blocks():
            block[:, : self.hidden_width] /= np.float32(self.scale)
            yield rows, block

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The features of the rows `rows` (m,) int, (m, P + d) float64."""
        if self.held is not None:
            return self.held[rows].astype(np.float64)
        hidden, z = _features(self.child, self.x[rows], np.float32)
        return np.concatenate([hidden / np.float32(self.scale), z], axis=1).astype(np.float64)


def logistic_output_layers(
    children: list[Child],
    encoded: np.ndarray,
    columns: list[np.ndarray],
    y: np.ndarray,
    n_classes: int,
    *,
    temperature: float,
    rng: np.random.Generator,
    max_rows: int | None = None,
    row_block: int = ROW_BLOCK,
    prior_groups: list[np.ndarray] | None = None,
) -> list[Child]:
    """The classifier's children with their read-out refitted to every class, member m reading
    `encoded[:, columns[m]]` (n, d_m) and predicting the class code y (n,) in 0..n_classes-1 with
    n_classes outputs in class order (whatever groups it was generated for). The hidden layers,
    mean and std are kept; the logits are stored times `temperature` (the predictor divides).

    Up to max_rows rows (None: MAX_LOGISTIC_ROWS): `logistic_read_out` on them. Beyond: each
    member's own stratified subsample of max_rows rows (`plan.stratified_rows`: every class kept,
    drawn by `rng`) gives the start, then `streaming_logistic` fits every row (`FeatureBlocks` of
    row_block rows).

    prior_groups (`output_layer="refit_prior"`): per member, the class -> output unit map (k,) of
    its generated read-out; the penalty pulls the read-out toward that generated one
    (`generated_read_out`) instead of toward zero, solved by `streaming_logistic` started there."""
    y = np.asarray(y)
    max_rows = MAX_LOGISTIC_ROWS if max_rows is None else max_rows
    use_prior = prior_groups is not None and len(np.unique(y)) >= 2  # one class: certain, no solve
    refitted = []
    for m, (child, cols) in enumerate(zip(children, columns, strict=True)):
        x = encoded[:, cols]
        if len(y) <= max_rows:
            features, scale = read_out_features(child, x)
            if not use_prior:
                w, b = logistic_read_out(features, y, n_classes)
            else:
                prior = generated_read_out(child, prior_groups[m], scale, temperature)
                rows = [(slice(0, len(y)), features)]
                w, b = streaming_logistic(rows, y, n_classes, prior, centre=features.mean(axis=0),
                                          max_iter=LOGISTIC_MAX_ITER, prior=prior)  # fmt: skip
        else:
            blocks = FeatureBlocks(child, x, row_block)
            sample = stratified_rows(y, max_rows, rng)
            features, scale = blocks.take(sample), blocks.scale
            prior = generated_read_out(child, prior_groups[m], scale, temperature) if use_prior else None
            if prior is None:
                start = logistic_read_out(features, y[sample], n_classes)
            else:
                start = streaming_logistic([(slice(0, len(sample)), features)], y[sample], n_classes, prior,
                                           centre=features.mean(axis=0), max_iter=LOGISTIC_MAX_ITER, prior=prior)  # fmt: skip
            w, b = streaming_logistic(blocks, y, n_classes, start, centre=features.mean(axis=0), prior=prior)
        refitted.append(with_read_out(child, w * temperature, b * temperature, scale))
    return refitted


def generated_read_out(child: Child, groups: np.ndarray, scale: float, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(w (P + d, k), b (k,)): a classifier child's generated read-out as a read-out of
    [hidden / scale, z] (the inputs' weights 0) predicting each of the k classes with the logit of
    its output unit (`groups` (k,) int, the class -> unit map of the member's plan), in the refit's
    units (the predictor divides the stored logits by `temperature`)."""
    weight, bias = (np.asarray(a, np.float64) for a in child.layers[-1])
    groups = np.asarray(groups)
    w = np.concatenate([weight[:, groups] * scale, np.zeros((len(child.mean), len(groups)))]) / temperature
    return w, bias[groups] / temperature


def _hidden_width(child: Child) -> int:
    weight = child.layers[-1][0]
    return (weight[0] if isinstance(weight, tuple) else weight).shape[0]
